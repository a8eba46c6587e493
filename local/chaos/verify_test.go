package chaos

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mocbuilders/moc-upload/local/stacktest"
	"github.com/mocbuilders/moc-upload/shared/postgres"
)

// migrated is a fresh, migrated database.
func migrated(t *testing.T) *pgxpool.Pool {
	t.Helper()
	url := stacktest.Postgres(t)
	ctx := context.Background()
	if err := postgres.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	db, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

func exec(t *testing.T, db *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// The orphan queries find what they name, and nothing in a consistent
// database: a MOC with its files and the session that points back to it.
func TestOrphansFound(t *testing.T) {
	ctx := context.Background()
	db := migrated(t)
	session, moc := uuid.New(), uuid.New()
	exec(t, db, `INSERT INTO upload_sessions (id, user_id, status, part_size_bytes, expires_at) VALUES ($1, 'u1', 'active', 5242880, now() + interval '1 hour')`, session)
	exec(t, db, `INSERT INTO moc_instructions (id, user_id, title, slug, upload_session_id) VALUES ($1, 'u1', 'Good', 'good', $2)`, moc, session)
	exec(t, db, `INSERT INTO moc_files (id, moc_id, file_type, file_url, s3_key, original_filename, mime_type, size)
		VALUES ($1, $2, 'instruction', 'url', $3, 'a.pdf', 'application/pdf', 10)`, uuid.New(), moc, fmt.Sprintf("chaos/moc-instructions/u1/%s/instruction/f.pdf", session))
	exec(t, db, `UPDATE upload_sessions SET status = 'completed', moc_instruction_id = $2 WHERE id = $1`, session, moc)
	if got, err := Orphans(ctx, db); err != nil || len(got) != 0 {
		t.Fatalf("a consistent database has orphans: %v, %v", got, err)
	}

	// A session completed without a MOC; a MOC without files whose session
	// does not point back; a MOC file under another user's prefix.
	lone, bare, stray := uuid.New(), uuid.New(), uuid.New()
	exec(t, db, `INSERT INTO upload_sessions (id, user_id, status, part_size_bytes, expires_at) VALUES ($1, 'u2', 'completed', 5242880, now())`, lone)
	exec(t, db, `INSERT INTO moc_instructions (id, user_id, title, slug, upload_session_id) VALUES ($1, 'u2', 'Bare', 'bare', $2)`, bare, lone)
	exec(t, db, `INSERT INTO moc_files (id, moc_id, file_type, file_url, s3_key, original_filename, mime_type, size)
		VALUES ($1, $2, 'instruction', 'url', $3, 'b.pdf', 'application/pdf', 10)`, stray, moc, fmt.Sprintf("chaos/moc-instructions/u2/%s/instruction/g.pdf", session))
	got, err := Orphans(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"sessions completed without a MOC":                 {lone.String()},
		"MOCs whose session does not point back to them":   {bare.String()},
		"MOCs without files":                               {bare.String()},
		"MOC files of another user's or session's objects": {stray.String()},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("orphans\n got %v\nwant %v", got, want)
	}
}

// checkFileAcks tells bytes S3 holds as sent from bytes it holds otherwise
// or not at all, in a completed object and among an upload's parts.
func TestCheckFileAcks(t *testing.T) {
	ctx := context.Background()
	db := migrated(t)
	env := stacktest.S3(t)
	s3c := s3.New(s3.Options{BaseEndpoint: aws.String(env.Endpoint), Region: env.Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(env.AccessKey, env.SecretKey, "")})
	session := uuid.New()
	exec(t, db, `INSERT INTO upload_sessions (id, user_id, status, part_size_bytes, expires_at) VALUES ($1, 'u1', 'active', 5242880, now() + interval '1 hour')`, session)
	file := func(key string, uploadID *string) string {
		id := uuid.New()
		exec(t, db, `INSERT INTO upload_session_files (id, session_id, category, name, mime_type, extension, size, s3_key, upload_id, status)
			VALUES ($1, $2, 'image', $3, 'image/png', 'png', 10, $3, $4, 'uploading')`, id, session, key, uploadID)
		return id.String()
	}

	// A whole object: the bytes sent, and other bytes.
	whole := file("whole.png", nil)
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: &env.Bucket, Key: aws.String("whole.png"), Body: strings.NewReader("stored bytes")}); err != nil {
		t.Fatal(err)
	}
	if errs := checkFileAcks(ctx, db, s3c, env.Bucket, []Ack{{User: "u1", File: whole, Sent: digest([]byte("stored bytes"))}}); len(errs) != 0 {
		t.Fatalf("the bytes sent: %v", errs)
	}
	if errs := checkFileAcks(ctx, db, s3c, env.Bucket, []Ack{{User: "u1", File: whole, Sent: digest([]byte("stored bytez"))}}); len(errs) != 1 {
		t.Fatalf("other bytes: %v", errs)
	}

	// An upload's parts: part 1 as sent, part 2 other bytes, part 3 missing.
	up, err := s3c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &env.Bucket, Key: aws.String("parts.png")})
	if err != nil {
		t.Fatal(err)
	}
	parts := file("parts.png", up.UploadId)
	for n, body := range map[int32]string{1: "part one", 2: "part two"} {
		if _, err := s3c.UploadPart(ctx, &s3.UploadPartInput{Bucket: &env.Bucket, Key: aws.String("parts.png"), UploadId: up.UploadId,
			PartNumber: aws.Int32(n), Body: strings.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	errs := checkFileAcks(ctx, db, s3c, env.Bucket, []Ack{
		{User: "u1", File: parts, Part: 1, Sent: digest([]byte("part one"))},
		{User: "u1", File: parts, Part: 2, Sent: digest([]byte("part 2"))},
		{User: "u1", File: parts, Part: 3, Sent: digest([]byte("part three"))},
	})
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), "part 2: S3 holds other bytes") || !strings.Contains(errs[1].Error(), "part 3: neither") {
		t.Fatalf("parts: %v", errs)
	}
}

// The run's verdicts on requests: which 5xx break "no 500", which
// requests count against the bound.
func TestResultVerdicts(t *testing.T) {
	start := time.Now()
	recs := []Record{
		{Route: "POST finalize", Status: 500, Code: "INTERNAL_ERROR", Dur: time.Second},
		{Route: "POST finalize", Status: 503, Code: "S3_UNAVAILABLE", RetryAfter: "1", Dur: time.Second},
		{Route: "POST finalize", Status: 503, Code: "DATABASE_UNAVAILABLE", Dur: time.Second},
		{Route: "S3 PUT presigned part", Direct: true, Status: 500, Dur: 40 * time.Second},
		{Route: "GET moc", Status: 200, Dur: 26 * time.Second},
		{Route: "GET moc", Status: 0, Code: "client timeout", Dur: 35 * time.Second},
		{Route: "GET moc", Status: 200, Dur: 25 * time.Second},
	}
	for i := range recs {
		recs[i].Start = start
	}
	r := &Result{Config: Config{Bound: 25 * time.Second, PostgresOnlyBound: 5 * time.Second}, Records: recs,
		Faults: []Injected{{Fault: Fault{Target: TargetS3, Kind: Freeze}, Start: start.Add(-time.Second), End: start.Add(time.Minute)}}}
	var got []string
	for _, rec := range r.ServerErrors() {
		got = append(got, rec.Outcome())
	}
	if want := []string{"500 INTERNAL_ERROR", "503 DATABASE_UNAVAILABLE without Retry-After"}; !slices.Equal(got, want) {
		t.Fatalf("server errors %v, want %v", got, want)
	}
	got = nil
	for _, rec := range r.Slow() {
		got = append(got, rec.Outcome())
	}
	if want := []string{"200", "no answer (client timeout)"}; !slices.Equal(got, want) {
		t.Fatalf("slow %v, want %v", got, want)
	}
	// GET moc calls only PostgreSQL: 25 s of it during an S3 freeze is a
	// request held back by one waiting on S3.
	if held := r.HeldBack(); len(held) != 3 {
		t.Fatalf("held back %v", held)
	}
	if f := r.Findings(); len(f[CheckNo500]) != 2 || len(f[CheckDeadline]) != 2 || len(f[CheckHeldBack]) != 2 || len(f) != 3 {
		t.Fatalf("findings %v", f)
	}
}
