// Package postgres is the PostgreSQL adapter of the upload domain: it
// implements [upload.Store] with pgx and applies the schema's migrations
// with goose.
//
// # Configuration
//
// Both [Open] and [Migrate] take a connection URL, the DATABASE_URL of the
// functions:
//
//	postgres://USER:PASSWORD@HOST:5432/DBNAME?sslmode=require
//
// Any parameter pgx understands may be added to the query, for example
// pool_max_conns=8 (the pool holds at most 4 connections unless told
// otherwise: a Lambda instance serves one request at a time, and many
// instances share the database's connection limit), or connect_timeout=5.
//
// # Schema
//
// The migrations are the SQL files in migrations/, embedded in the binary
// and applied in version order by [Migrate]. They keep the table and column
// names of the service this one replaces; 00003 adds the outbox of the
// work that follows a finalize (outbox.go, package followup), 00004 its
// rows' traceparent. Never edit a released migration: add a new file with
// the next version number.
//
// # Considerations
//
// Every change runs in one transaction ([Store.InTx]). Reads that precede a
// write of the same row take its lock with SELECT … FOR UPDATE (the
// forUpdate argument of GetSession and GetFile): two requests on one session
// (a part upload and a finalize, or two finalizes) would otherwise both read
// the old state and both act on it, so one would overwrite the other's
// change or a session would be finalized twice. With the lock the second
// request waits until the first commits and then reads what it wrote.
// Recording a part (and what a read of the session learnt from S3) takes
// a share lock on the session instead (ShareSession, SELECT … FOR SHARE):
// parts of one session are recorded side by side, each file's row lock
// ordering its own, while an abort or a finalize's commit waits for them.
//
// Errors wrap the domain's sentinels: a missing row, an id that is not a
// UUID (SQLSTATE 22P02) or a reference to a missing row (23503) wraps
// [upload.ErrNotFound]; a unique violation (23505) wraps
// [upload.ErrConflict] and names the constraint; a database that cannot be
// reached or does not answer in time (connection lost, deadline, statement
// or lock timeout, too many connections) wraps [upload.ErrDatabaseUnavailable]
// (errors.go; the timeouts are in timeouts.go). The driver's error stays
// in the chain, for errors.As with *pgconn.PgError. A statement that
// fails aborts the transaction, so after an error the caller must return
// from InTx's function.
package postgres
