package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// defaultMaxConns is the pool size unless the URL sets pool_max_conns.
const defaultMaxConns = 4

// Store is the database: a pgx connection pool.
type Store struct {
	pool *pgxpool.Pool
}

var _ upload.Store = (*Store)(nil)

// Option configures Open.
type Option func(*pgxpool.Config)

// WithTracer gives every connection of the pool the tracer t, which pgx
// calls around each query, batch, COPY, prepare and connect; when t is
// also a pgxpool.AcquireTracer (otelpgx.NewTracer() is), around each
// acquisition of a connection from the pool too. The tracer gets the
// caller's context: with OpenTelemetry, a query's span is a child of the
// span in the context of the call that made it.
func WithTracer(t pgx.QueryTracer) Option {
	return func(c *pgxpool.Config) { c.ConnConfig.Tracer = t }
}

// Open connects to the database at databaseURL (see Configuration in the
// package doc) and checks that it answers.
func Open(ctx context.Context, databaseURL string, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// The error may quote the URL, password included.
		return nil, errors.New("postgres: open: invalid database URL")
	}
	if !setsMaxConns(databaseURL) {
		cfg.MaxConns = defaultMaxConns
	}
	applyTimeouts(cfg)
	for _, opt := range opts {
		opt(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	return &Store{pool: pool}, nil
}

// setsMaxConns reports whether the URL (or key=value string) sets
// pool_max_conns.
func setsMaxConns(databaseURL string) bool {
	if u, err := url.Parse(databaseURL); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		return u.Query().Has("pool_max_conns")
	}
	return strings.Contains(databaseURL, "pool_max_conns=")
}

// Close closes the pool's connections, waiting for those in use.
func (s *Store) Close() { s.pool.Close() }

// Pool is the connection pool, for tools and tests.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// InTx runs fn in a transaction and commits it, or rolls it back when fn
// returns an error (which InTx returns unchanged) or panics.
func (s *Store) InTx(ctx context.Context, fn func(upload.Tx) error) error {
	ptx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", unavailableErr(err))
	}
	// A no-op once committed. Without cancel: a cancelled ctx must still
	// give the connection back clean; but bounded: on a frozen server it
	// would wait forever (pgx then closes the connection).
	defer func() {
		// Not past the request's deadline either: the request must still
		// answer (in Lambda, before the invocation ends).
		timeout := rollbackTimeout
		if d, ok := ctx.Deadline(); ok {
			timeout = max(min(timeout, time.Until(d)), 0)
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		_ = ptx.Rollback(rctx)
	}()
	if err := fn(&tx{tx: ptx}); err != nil {
		return err
	}
	if err := ptx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit: %w", unavailableErr(err))
	}
	return nil
}

// SQLSTATE codes this package translates.
const (
	uniqueViolation           = "23505"
	foreignKeyViolation       = "23503"
	invalidTextRepresentation = "22P02"
)

// fail wraps err with what was being done ("get session", id) and, when
// it is one the domain can act on, its sentinel: no row, a malformed UUID
// or a missing referenced row wrap upload.ErrNotFound, a unique violation
// wraps upload.ErrConflict. The driver's error stays in the chain.
func fail(op, id string, err error) error {
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		err = upload.ErrNotFound
	case !errors.As(err, &pgErr):
	case pgErr.Code == uniqueViolation:
		err = fmt.Errorf("%w: %s: %w", upload.ErrConflict, pgErr.ConstraintName, err)
	case pgErr.Code == foreignKeyViolation:
		err = fmt.Errorf("%w: %s: %w", upload.ErrNotFound, pgErr.ConstraintName, err)
	case pgErr.Code == invalidTextRepresentation:
		err = fmt.Errorf("%w: %w", upload.ErrNotFound, err)
	}
	return fmt.Errorf("postgres: %s %s: %w", op, id, unavailableErr(err))
}

// notFound is the error of a lookup that found nothing.
func notFound(op, id string) error {
	return fmt.Errorf("postgres: %s %s: %w", op, id, upload.ErrNotFound)
}

// isUUID reports whether s is a UUID in the canonical 36-character form.
// Lookups answer "not found" for any other id without asking the database,
// whose syntax error would abort the transaction.
func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

// utc returns t in UTC.
func utc(t time.Time) time.Time { return t.UTC() }

// utcPtr returns *t in UTC, or nil.
func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// nullIfEmpty stores "" as NULL.
func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// deref reads NULL as "".
func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
