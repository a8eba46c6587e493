// Package stacktest gives integration tests real services: one PostgreSQL
// cluster and one versitygw S3 server per test binary, started on first
// use (package stack) and stopped by Main, and a fresh database or bucket
// per call. Nothing is mocked and nothing is skipped: when a service cannot
// start, the test fails with the reason.
//
// A package using it declares
//
//	func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }
//
// and its tests call
//
//	url := stacktest.Postgres(t) // an empty database, dropped when t ends
//	env := stacktest.S3(t)       // an empty bucket and how to reach it
//
// To use servers that already run instead, set TEST_DATABASE_URL (a URL
// allowed to create databases) and TEST_S3_ENDPOINT with
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optionally AWS_REGION.
package stacktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/local/stack"
)

// setupTimeout bounds creating or dropping one database or bucket.
const setupTimeout = 30 * time.Second

var (
	mu    sync.Mutex
	dir   string   // the services' temporary folder, once made
	stops []func() // stops the services started, in start order

	pgOnce  sync.Once
	pgAdmin string // the cluster's admin URL
	pgErr   error

	s3Once sync.Once
	s3srv  *stack.S3Server
	s3Err  error
)

// Main runs the tests, then stops the services they started and removes
// their data. It returns m.Run's exit code, for os.Exit. Should the test
// binary die before, the services die with it (parent-death signal).
func Main(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
	stops = nil
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(os.Stderr, "stacktest: remove %s: %v\n", dir, err)
		}
		dir = ""
	}
	return code
}

// onStop registers f to run in Main after the tests.
func onStop(f func()) {
	mu.Lock()
	defer mu.Unlock()
	stops = append(stops, f)
}

// tempDir returns the folder name inside the services' temporary folder.
// That folder is world-traversable (0755): as root, PostgreSQL runs as the
// postgres user, which must reach its cluster.
func tempDir(name string) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if dir == "" {
		d, err := os.MkdirTemp("", "moc-stacktest-")
		if err != nil {
			return "", err
		}
		if err := os.Chmod(d, 0o755); err != nil {
			os.RemoveAll(d)
			return "", err
		}
		dir = d
	}
	return filepath.Join(dir, name), nil
}

// randomName is prefix and 12 random lowercase hex digits: a valid
// database and bucket name.
func randomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// startPostgres starts the binary's cluster, or picks TEST_DATABASE_URL.
func startPostgres() (string, error) {
	if url := os.Getenv("TEST_DATABASE_URL"); url != "" {
		return url, nil
	}
	d, err := tempDir("pg")
	if err != nil {
		return "", err
	}
	pg, err := stack.StartPostgres(context.Background(), stack.PostgresOptions{DataDir: d, Fast: true})
	if err != nil {
		return "", err
	}
	onStop(func() {
		if err := pg.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stacktest:", err)
		}
	})
	return pg.URL, nil
}

// Postgres returns the URL of a new, empty database on the test cluster,
// dropped (with its sessions ended) when t and its subtests end. The first
// call in the test binary starts the cluster (a second or two) unless
// TEST_DATABASE_URL is set. Safe for parallel tests.
func Postgres(t testing.TB) string {
	t.Helper()
	pgOnce.Do(func() { pgAdmin, pgErr = startPostgres() })
	if pgErr != nil {
		t.Fatalf("stacktest: start PostgreSQL: %v", pgErr)
	}
	name := randomName("test_")
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	url, err := stack.CreateDatabase(ctx, pgAdmin, name)
	if err != nil {
		t.Fatalf("stacktest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if err := stack.DropDatabase(ctx, pgAdmin, name); err != nil {
			t.Errorf("stacktest: %v", err)
		}
	})
	return url
}

// S3Env is an S3 bucket and how to reach it: path-style addressing at
// Endpoint, signed with the static AccessKey and SecretKey.
type S3Env struct {
	Endpoint  string
	AccessKey string
	SecretKey string
	Region    string
	Bucket    string
}

// startS3 starts the binary's versitygw, or picks TEST_S3_ENDPOINT.
func startS3() (*stack.S3Server, error) {
	if ep := os.Getenv("TEST_S3_ENDPOINT"); ep != "" {
		region := os.Getenv("AWS_REGION")
		if region == "" {
			region = stack.DevRegion
		}
		return &stack.S3Server{Endpoint: ep, AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"),
			SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"), Region: region}, nil
	}
	d, err := tempDir("s3")
	if err != nil {
		return nil, err
	}
	srv, err := stack.StartS3(context.Background(), d, 0, nil)
	if err != nil {
		return nil, err
	}
	onStop(func() {
		if err := srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stacktest:", err)
		}
	})
	return srv, nil
}

// S3 returns a new, empty bucket on the test S3 server. The first call in
// the test binary starts versitygw (building it first if .bin/versitygw is
// missing) unless TEST_S3_ENDPOINT is set. Buckets are not deleted; those
// on the started server vanish with its temporary folder. Safe for
// parallel tests.
func S3(t testing.TB) S3Env {
	t.Helper()
	s3Once.Do(func() { s3srv, s3Err = startS3() })
	if s3Err != nil {
		t.Fatalf("stacktest: start the S3 server: %v", s3Err)
	}
	env := S3Env{
		Endpoint:  s3srv.Endpoint,
		AccessKey: s3srv.AccessKey,
		SecretKey: s3srv.SecretKey,
		Region:    s3srv.Region,
		Bucket:    randomName("test-"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := stack.EnsureBucket(ctx, env.Endpoint, env.AccessKey, env.SecretKey, env.Region, env.Bucket); err != nil {
		t.Fatalf("stacktest: %v", err)
	}
	return env
}
