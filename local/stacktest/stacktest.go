// Package stacktest gives integration tests real services: one PostgreSQL
// and one versitygw per test binary, started on first use and stopped by
// Main, and a fresh database or bucket per test. With TEST_DATABASE_URL or
// TEST_S3_ENDPOINT set, those servers are used instead.
//
//	func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }
//
//	url := stacktest.Postgres(t) // an empty database, dropped after t
//	env := stacktest.S3(t)       // an empty bucket
package stacktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mocbuilders/moc-upload/local/stack"
)

var (
	mu      sync.Mutex
	dir     string
	stops   []func()
	pgAdmin string
	pgErr   error
	pgOnce  sync.Once
	s3srv   *stack.S3Server
	s3Err   error
	s3Once  sync.Once
)

// Main runs the tests, then stops the services they started.
func Main(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
	if dir != "" {
		os.RemoveAll(dir)
	}
	return code
}

func tempDir(name string) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if dir == "" {
		d, err := os.MkdirTemp("", "moc-test-")
		if err != nil {
			return "", err
		}
		// The postgres user must be able to enter it.
		if err := os.Chmod(d, 0o755); err != nil {
			return "", err
		}
		dir = d
	}
	return filepath.Join(dir, name), nil
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Postgres returns the URL of a new, empty database, dropped when t ends.
func Postgres(t testing.TB) string {
	t.Helper()
	pgOnce.Do(func() {
		if url := os.Getenv("TEST_DATABASE_URL"); url != "" {
			pgAdmin = url
			return
		}
		port, err := stack.FreePort()
		if err != nil {
			pgErr = err
			return
		}
		d, err := tempDir("pg")
		if err != nil {
			pgErr = err
			return
		}
		pg, err := stack.StartPostgres(context.Background(), stack.PostgresOptions{DataDir: d, Port: port, Fast: true})
		if err != nil {
			pgErr = err
			return
		}
		mu.Lock()
		stops = append(stops, func() { _ = pg.Stop() })
		mu.Unlock()
		pgAdmin = pg.URL
	})
	if pgErr != nil {
		t.Fatalf("start PostgreSQL: %v", pgErr)
	}
	name := randomName("test_")
	url, err := stack.CreateDatabase(context.Background(), pgAdmin, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stack.DropDatabase(context.Background(), pgAdmin, name); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	return url
}

// S3Env is a bucket on a running S3-compatible server.
type S3Env struct {
	Endpoint, AccessKey, SecretKey, Region, Bucket string
}

// S3 returns a new, empty bucket.
func S3(t testing.TB) S3Env {
	t.Helper()
	s3Once.Do(func() {
		if ep := os.Getenv("TEST_S3_ENDPOINT"); ep != "" {
			s3srv = &stack.S3Server{Endpoint: ep, AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"),
				SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"), Region: stack.DevRegion}
			return
		}
		port, err := stack.FreePort()
		if err != nil {
			s3Err = err
			return
		}
		d, err := tempDir("s3")
		if err != nil {
			s3Err = err
			return
		}
		srv, err := stack.StartS3(context.Background(), d, port, nil)
		if err != nil {
			s3Err = err
			return
		}
		mu.Lock()
		stops = append(stops, func() { _ = srv.Stop() })
		mu.Unlock()
		s3srv = srv
	})
	if s3Err != nil {
		t.Fatalf("start the S3 server: %v", s3Err)
	}
	env := S3Env{Endpoint: s3srv.Endpoint, AccessKey: s3srv.AccessKey, SecretKey: s3srv.SecretKey,
		Region: s3srv.Region, Bucket: strings.ReplaceAll(randomName("test-"), "_", "-")}
	if err := stack.EnsureBucket(context.Background(), env.Endpoint, env.AccessKey, env.SecretKey, env.Region, env.Bucket); err != nil {
		t.Fatalf("create bucket %s: %v", env.Bucket, err)
	}
	return env
}
