package postgres

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/local/faultnet"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// proxied migrates a fresh database and opens a Store on it through a
// proxy that can be cut or frozen; query adds parameters to the URL.
func proxied(t *testing.T, query string) (*Store, *faultnet.Proxy) {
	t.Helper()
	raw := postgresURL(t)
	if err := Migrate(t.Context(), raw); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(withQuery(t, raw, query))
	if err != nil {
		t.Fatal(err)
	}
	p := faultnet.NewProxy(t, u.Host)
	u.Host = p.Addr()
	s, err := Open(t.Context(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, p
}

// wantUnavailable checks that err is the database's unavailability, which
// the domain answers as the retryable 503 DATABASE_UNAVAILABLE.
func wantUnavailable(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, upload.ErrDatabaseUnavailable) {
		t.Fatalf("err = %v, want ErrDatabaseUnavailable", err)
	}
	e, ok := upload.AsError(err)
	if !ok || e.Code != upload.CodeDatabaseUnavailable || e.RetryAfterSeconds <= 0 || e.Details["retryable"] != true {
		t.Fatalf("AsError = %+v, want a retryable DATABASE_UNAVAILABLE with Retry-After", e)
	}
}

// A database that went away: the connections are cut and new ones are
// refused. Every way in (begin, a statement) says so.
func TestDatabaseGone(t *testing.T) {
	t.Parallel()
	s, p := proxied(t, "")
	sess := newSession(t, s, "u1")
	p.Cut()
	err := faultnet.ReturnsWithin(t, time.Minute, func() error {
		return s.InTx(t.Context(), func(tx upload.Tx) error {
			_, err := tx.GetSession(t.Context(), sess.ID, "u1", true)
			return err
		})
	})
	wantUnavailable(t, err)
	// The pool holds no connection now: the next one is refused.
	err = faultnet.ReturnsWithin(t, time.Minute, func() error {
		return s.InTx(t.Context(), func(upload.Tx) error { return nil })
	})
	wantUnavailable(t, err)
}

// A frozen database answers nothing: the caller's deadline ends the wait.
func TestDatabaseFrozen(t *testing.T) {
	t.Parallel()
	s, p := proxied(t, "")
	sess := newSession(t, s, "u1")
	// Cut the frozen connections before the pool closes (cleanups run
	// last first), or closing waits out pgx's 15 s for each.
	t.Cleanup(p.Cut)
	p.Freeze()
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	err := faultnet.ReturnsWithin(t, time.Minute, func() error {
		return s.InTx(ctx, func(tx upload.Tx) error {
			_, err := tx.GetSession(ctx, sess.ID, "u1", false)
			return err
		})
	})
	wantUnavailable(t, err)
}

// A row lock held too long by another transaction ends at lock_timeout,
// as a retryable unavailability, not a 500 and not a wait without end.
func TestLockTimeout(t *testing.T) {
	t.Parallel()
	s, _ := proxied(t, "lock_timeout=200")
	sess := newSession(t, s, "u1")
	locked, release := make(chan struct{}), make(chan struct{})
	holder := make(chan error, 1)
	go func() {
		holder <- s.InTx(t.Context(), func(tx upload.Tx) error {
			if _, err := tx.GetSession(t.Context(), sess.ID, "u1", true); err != nil {
				return err
			}
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked
	err := faultnet.ReturnsWithin(t, time.Minute, func() error {
		return s.InTx(t.Context(), func(tx upload.Tx) error {
			_, err := tx.GetSession(t.Context(), sess.ID, "u1", true)
			return err
		})
	})
	close(release)
	if err := <-holder; err != nil {
		t.Fatal(err)
	}
	wantUnavailable(t, err)
	if sqlState(err) != "55P03" {
		t.Errorf("SQLSTATE %q, want 55P03 (lock_not_available)", sqlState(err))
	}
}

// Open sets statement, lock and idle-in-transaction timeouts and a connect
// timeout unless the URL sets them.
func TestOpenSetsTimeouts(t *testing.T) {
	t.Parallel()
	show := func(s *Store, name string) string {
		var v string
		if err := s.Pool().QueryRow(t.Context(), "SHOW "+name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	s, _ := proxied(t, "")
	for name, want := range map[string]string{
		"statement_timeout": "15s", "lock_timeout": "10s", "idle_in_transaction_session_timeout": "1min",
	} {
		if got := show(s, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if got := s.Pool().Config().ConnConfig.ConnectTimeout; got != DefaultConnectTimeout {
		t.Errorf("connect timeout = %s, want %s", got, DefaultConnectTimeout)
	}
	s, _ = proxied(t, "statement_timeout=1234&lock_timeout=0&connect_timeout=9")
	if got := show(s, "statement_timeout"); got != "1234ms" {
		t.Errorf("statement_timeout = %q, want the URL's 1234ms", got)
	}
	if got := show(s, "lock_timeout"); got != "0" {
		t.Errorf("lock_timeout = %q, want the URL's 0", got)
	}
	if got := s.Pool().Config().ConnConfig.ConnectTimeout; got != 9*time.Second {
		t.Errorf("connect timeout = %s, want the URL's 9s", got)
	}
}

// A statement past statement_timeout is a retryable unavailability.
func TestStatementTimeout(t *testing.T) {
	t.Parallel()
	s, _ := proxied(t, "statement_timeout=100")
	err := s.InTx(t.Context(), func(upload.Tx) error {
		_, err := s.Pool().Exec(t.Context(), "SELECT pg_sleep(5)")
		return fail("sleep", "", err)
	})
	wantUnavailable(t, err)
}

// Errors that are the request's, not the database's, stay what they are.
func TestUnavailableLeavesOtherErrors(t *testing.T) {
	t.Parallel()
	s := open(t)
	err := txErr(t, s, func(tx upload.Tx) error {
		_, err := tx.GetSession(t.Context(), newID(), "u1", false)
		return err
	})
	if !errors.Is(err, upload.ErrNotFound) || errors.Is(err, upload.ErrDatabaseUnavailable) {
		t.Errorf("missing row: %v, want ErrNotFound only", err)
	}
	if unavailable(context.Canceled) || !unavailable(context.DeadlineExceeded) {
		t.Error("a cancelled caller is not an outage; a deadline that ran out is")
	}
}

// When the work of a transaction fails for another reason (S3) while the
// database froze, the rollback does not wait on it forever.
func TestRollbackOnFrozenDatabaseIsBounded(t *testing.T) {
	t.Parallel()
	s, p := proxied(t, "")
	t.Cleanup(p.Cut)
	boom := errors.New("storage failed")
	err := faultnet.ReturnsWithin(t, time.Minute, func() error {
		return s.InTx(context.Background(), func(upload.Tx) error {
			p.Freeze()
			return boom
		})
	})
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want the work's own error", err)
	}
}
