package postgres

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var embedded embed.FS

// Migrate applies the migrations the database has not had yet. Processes
// that migrate at once take turns: each holds a PostgreSQL advisory lock
// (goose's session locker) while it migrates, so the second finds the
// schema up to date.
func Migrate(ctx context.Context, databaseURL string) error {
	db, err := openSQL(databaseURL)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	defer db.Close()
	provider, err := newProvider(db)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if _, err := provider.Up(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// newProvider is goose with the embedded migrations, taking an advisory
// lock (retried every second for up to 5 minutes) while it migrates.
func newProvider(db *sql.DB) (*goose.Provider, error) {
	migrations, err := fs.Sub(embedded, "migrations")
	if err != nil {
		return nil, err
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(goose.DialectPostgres, db, migrations, goose.WithSessionLocker(locker))
}

// SchemaVersion is the highest migration the database has had.
func SchemaVersion(ctx context.Context, databaseURL string) (int64, error) {
	db, err := openSQL(databaseURL)
	if err != nil {
		return 0, fmt.Errorf("postgres: schema version: %w", err)
	}
	defer db.Close()
	var v int64
	err = db.QueryRowContext(ctx, `SELECT COALESCE(max(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("postgres: schema version: %w", err)
	}
	return v, nil
}

// openSQL opens databaseURL as a database/sql handle for goose. The URL is
// the one the Store's pool takes: pgxpool's own parameters (pool_max_conns,
// …) are taken out, as pgxpool does, rather than sent to the server as
// settings it would refuse.
func openSQL(databaseURL string) (*sql.DB, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, err
	}
	return stdlib.OpenDB(*cfg.ConnConfig), nil
}
