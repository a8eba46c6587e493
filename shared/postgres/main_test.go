package postgres

import (
	"net/url"
	"os"
	"testing"

	"github.com/mocbuilders/moc-upload/local/stacktest"
)

// The tests run against a real PostgreSQL: stacktest starts one for the
// test binary (or uses TEST_DATABASE_URL) and gives each test a fresh
// database.
func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

func postgresURL(t *testing.T) string { return stacktest.Postgres(t) }

// withQuery is raw with the parameters of query added (replacing any of
// the same name).
func withQuery(t *testing.T, raw, query string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	extra, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range extra {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	return u.String()
}
