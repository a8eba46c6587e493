// Package devstacktest starts the local stack's app (package devstack)
// for tests, over a fresh database and bucket of package stacktest, whose
// Main the test binary must run.
package devstacktest

import (
	"context"
	"testing"

	"github.com/mocbuilders/moc-upload/local/devstack"
	"github.com/mocbuilders/moc-upload/local/stacktest"
)

// Seeded starts the stack over a fresh database and bucket, closed when t
// ends, and seeds the sample rows (`make seed`'s). vars is the whole
// environment it was configured with (DATABASE_URL, S3_*, AWS_*, STAGE),
// for a test that runs the functions themselves against the same rows.
func Seeded(t testing.TB, ctx context.Context) (st *devstack.Stack, vars map[string]string) {
	t.Helper()
	s3 := stacktest.S3(t)
	vars = map[string]string{
		"DATABASE_URL":          stacktest.Postgres(t),
		"S3_ENDPOINT":           s3.Endpoint,
		"S3_BUCKET":             s3.Bucket,
		"AWS_ACCESS_KEY_ID":     s3.AccessKey,
		"AWS_SECRET_ACCESS_KEY": s3.SecretKey,
		"AWS_REGION":            s3.Region,
		"STAGE":                 "dev", // the seed rows' keys start with dev/
	}
	st, err := devstack.Start(ctx, devstack.Options{Getenv: func(k string) string { return vars[k] }})
	if err != nil {
		t.Fatalf("start the stack: %v", err)
	}
	t.Cleanup(st.Close)
	if err := st.Seed(ctx); err != nil {
		t.Fatalf("seed: %v", err)
	}
	return st, vars
}
