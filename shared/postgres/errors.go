package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// SQLSTATE codes that mean the database could not answer now, though it
// may later: a retry is the remedy, not a fix of the request.
var retryableStates = map[string]bool{
	"53300": true, // too_many_connections
	"53000": true, // insufficient_resources
	"53100": true, // disk_full
	"53200": true, // out_of_memory
	"57P01": true, // admin_shutdown: the server is stopping
	"57P02": true, // crash_shutdown
	"57P03": true, // cannot_connect_now: starting up or in recovery
	"57014": true, // query_canceled: statement_timeout ran out
	"55P03": true, // lock_not_available: lock_timeout ran out
	"25P03": true, // idle_in_transaction_session_timeout
	"40001": true, // serialization_failure
	"40P01": true, // deadlock_detected
}

// unavailable reports whether err, from pgx, means the database could not
// be reached or could not answer in time rather than that the request was
// wrong: no connection (refused, reset, closed, TLS or authentication
// never finished), a deadline that ran out while waiting for it, the
// server shutting down, out of connections, or a statement or lock
// timeout. Only errors that come out of pgx are given to it: a deadline
// that ran out elsewhere (S3) is not the database's.
func unavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08: connection exception.
		return retryableStates[pgErr.Code] || len(pgErr.Code) == 5 && pgErr.Code[:2] == "08"
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return false // the caller gave up: nothing to say about the database
	case errors.As(err, &connectErr),
		errors.As(err, &netErr),
		errors.Is(err, context.DeadlineExceeded),
		pgconn.Timeout(err),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		pgconn.SafeToRetry(err):
		return true
	}
	return false
}

// unavailableErr adds upload.ErrDatabaseUnavailable to a pgx error that
// means the database could not answer (see unavailable), so the domain
// answers the retryable 503 DATABASE_UNAVAILABLE; any other error is
// returned as it is.
func unavailableErr(err error) error {
	if err == nil || errors.Is(err, upload.ErrDatabaseUnavailable) || !unavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", upload.ErrDatabaseUnavailable, err)
}
