package secrets

import (
	"context"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mocbuilders/moc-upload/local/stacktest"
	"github.com/mocbuilders/moc-upload/shared/postgres"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

// RDS Proxy pins a client's server connection once the client creates a
// named prepared statement. With QueryExecMode, the store's queries (typed
// parameters, a json column, a transaction) leave none on the server;
// with pgx's default mode the same queries do, so the check can fail.
func TestQueryExecModeLeavesNoPreparedStatements(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := stacktest.Postgres(t)
	if err := postgres.Migrate(ctx, base); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mode      string
		wantNamed bool
	}{{QueryExecMode, false}, {"cache_statement", true}} {
		t.Run(c.mode, func(t *testing.T) {
			u, _ := url.Parse(base)
			q := u.Query()
			q.Set("default_query_exec_mode", c.mode)
			q.Set("pool_max_conns", "1") // every query on the one connection checked below
			u.RawQuery = q.Encode()
			store, err := postgres.Open(ctx, u.String())
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			// A few of the store's statements: a timestamp and an
			// interval parameter, a row read back, the outbox's json.
			// Refused (no such session) by the server, after its INSERT ran.
			_ = store.SaveConnection(ctx, "conn-1", "user-1", "00000000-0000-0000-0000-000000000001", time.Now().Add(time.Hour))
			if _, err := store.SessionConnections(ctx, "00000000-0000-0000-0000-000000000001"); err != nil {
				t.Fatal(err)
			}
			if _, err := store.ClaimStaleOutbox(ctx, time.Minute, 10); err != nil {
				t.Fatal(err)
			}
			if _, err := store.DeleteExpiredConnections(ctx); err != nil {
				t.Fatal(err)
			}
			var named int
			err = store.Pool().AcquireFunc(ctx, func(c *pgxpool.Conn) error {
				return c.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements").Scan(&named)
			})
			if err != nil {
				t.Fatal(err)
			}
			if (named > 0) != c.wantNamed {
				t.Errorf("mode %s: %d named prepared statements on the server; want any: %v", c.mode, named, c.wantNamed)
			}
		})
	}
}
