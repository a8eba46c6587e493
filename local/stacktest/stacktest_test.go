package stacktest_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"

	"github.com/mocbuilders/moc-upload/local/stacktest"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

func TestPostgresGivesFreshDatabases(t *testing.T) {
	ctx := context.Background()
	a, b := stacktest.Postgres(t), stacktest.Postgres(t)
	if a == b {
		t.Fatalf("two calls gave the same database %s", a)
	}
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE t (n int); INSERT INTO t VALUES (41), (1)`); err != nil {
		t.Fatal(err)
	}
	var sum int
	if err := conn.QueryRow(ctx, `SELECT sum(n) FROM t`).Scan(&sum); err != nil || sum != 42 {
		t.Fatalf("sum = %d, %v", sum, err)
	}
	other, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	var n int
	if err := other.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 't'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the second database sees the first one's table: %d, %v", n, err)
	}
}

func TestS3RoundTrip(t *testing.T) {
	ctx := context.Background()
	env := stacktest.S3(t)
	c := s3.New(s3.Options{
		BaseEndpoint: aws.String(env.Endpoint), Region: env.Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(env.AccessKey, env.SecretKey, ""),
	})
	want := bytes.Repeat([]byte("moc!"), 1000)
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &env.Bucket, Key: aws.String("a/b.bin"), Body: bytes.NewReader(want)}); err != nil {
		t.Fatal(err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &env.Bucket, Key: aws.String("a/b.bin")})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	got, _ := io.ReadAll(out.Body)
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes back, want %d", len(got), len(want))
	}
	if other := stacktest.S3(t); other.Bucket == env.Bucket {
		t.Fatal("two calls gave the same bucket")
	}
}
