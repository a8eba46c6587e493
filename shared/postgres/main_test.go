package postgres

import (
	"os"
	"testing"

	"github.com/mocbuilders/moc-upload/local/stacktest"
)

// The tests run against a real PostgreSQL: stacktest starts one for the
// test binary (or uses TEST_DATABASE_URL) and gives each test a fresh
// database.
func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

func postgresURL(t *testing.T) string { return stacktest.Postgres(t) }
