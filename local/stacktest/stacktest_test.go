package stacktest_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"

	"github.com/mocbuilders/moc-upload/local/stacktest"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestPostgres(t *testing.T) {
	ctx := testContext(t)
	url := stacktest.Postgres(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var one int
	if err := conn.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE t (n int); INSERT INTO t VALUES (41), (1)`); err != nil {
		t.Fatal(err)
	}
	var sum int
	if err := conn.QueryRow(ctx, `SELECT sum(n) FROM t`).Scan(&sum); err != nil || sum != 42 {
		t.Fatalf("sum = %d, %v", sum, err)
	}
}

func TestPostgresDatabasesAreSeparate(t *testing.T) {
	ctx := testContext(t)
	a, b := stacktest.Postgres(t), stacktest.Postgres(t)
	if a == b {
		t.Fatalf("two calls gave the same database %s", a)
	}
	ca, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close(ctx)
	if _, err := ca.Exec(ctx, `CREATE TABLE only_in_a (n int)`); err != nil {
		t.Fatal(err)
	}
	cb, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close(ctx)
	var n int
	if err := cb.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the second database sees the first one's table: %d, %v", n, err)
	}
}

// The database is dropped after the test even with a session still open.
func TestPostgresDropsDatabaseAfterTest(t *testing.T) {
	ctx := testContext(t)
	var url string
	var leaked *pgx.Conn
	t.Run("user", func(t *testing.T) {
		url = stacktest.Postgres(t)
		var err error
		if leaked, err = pgx.Connect(ctx, url); err != nil {
			t.Fatal(err)
		}
	})
	if leaked == nil {
		return
	}
	defer leaked.Close(ctx)
	if _, err := pgx.Connect(ctx, url); err == nil {
		t.Fatalf("%s still exists after its test", url)
	}
}

func TestPostgresParallel(t *testing.T) {
	for i := range 6 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			conn, err := pgx.Connect(ctx, stacktest.Postgres(t))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE TABLE t%d (n int)`, i)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestS3RoundTrip(t *testing.T) {
	ctx := testContext(t)
	env := stacktest.S3(t)
	c := s3.New(s3.Options{
		BaseEndpoint: aws.String(env.Endpoint),
		Region:       env.Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(env.AccessKey, env.SecretKey, ""),
	})
	want := make([]byte, 300<<10)
	for i := range want {
		want[i] = byte(i * 7)
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &env.Bucket, Key: aws.String("a/b.bin"), Body: bytes.NewReader(want)}); err != nil {
		t.Fatal(err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &env.Bucket, Key: aws.String("a/b.bin")})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	got, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes back, not the %d put", len(got), len(want))
	}

	other := stacktest.S3(t)
	if other.Bucket == env.Bucket {
		t.Fatal("two calls gave the same bucket")
	}
	list, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &other.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Contents) != 0 {
		t.Fatalf("a new bucket holds %d objects", len(list.Contents))
	}
}
