package postgres

import (
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Bounded waits. A request must never wait on the database longer than
// its own deadline, nor hold a connection (of a pool of a few) for long:
//
//   - connect_timeout bounds opening a connection (a server that accepts
//     and never answers, a black-holed address);
//   - statement_timeout bounds each statement on the server, lock waits
//     included, so lock_timeout below it is the reason a lock wait ends;
//   - lock_timeout bounds waiting for a row lock another request holds;
//   - idle_in_transaction_session_timeout ends a transaction whose client
//     went silent (a Lambda killed at its timeout), releasing its locks.
//
// A frozen server (one that accepts bytes and never answers) is bounded by
// the caller's context: package httpapi gives every request a deadline
// before the Lambda's own. Each default applies only when DATABASE_URL
// does not set the parameter (e.g. ?statement_timeout=30000 in
// milliseconds, or ?connect_timeout=10 in seconds).
const (
	DefaultConnectTimeout           = 5 * time.Second
	DefaultStatementTimeout         = 15 * time.Second
	DefaultLockTimeout              = 10 * time.Second
	DefaultIdleInTransactionTimeout = 60 * time.Second
)

// rollbackTimeout bounds the rollback of a transaction whose work failed:
// it runs without the caller's cancellation (the connection must go back
// clean) but must not wait forever on a frozen server.
const rollbackTimeout = 5 * time.Second

// applyTimeouts sets the defaults above on cfg where the URL set none.
func applyTimeouts(cfg *pgxpool.Config) {
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	params := cfg.ConnConfig.RuntimeParams
	for name, d := range map[string]time.Duration{
		"statement_timeout":                   DefaultStatementTimeout,
		"lock_timeout":                        DefaultLockTimeout,
		"idle_in_transaction_session_timeout": DefaultIdleInTransactionTimeout,
	} {
		if _, set := params[name]; !set {
			params[name] = millis(d)
		}
	}
}

// millis is d as PostgreSQL reads a time setting without a unit.
func millis(d time.Duration) string {
	return strconv.FormatInt(d.Milliseconds(), 10)
}
