package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// WebSocket connections (table websocket_connections): the clients of the
// WebSocket API that follow a session's progress. Each method is one
// statement on the pool, outside InTx: nothing else has to change with it.
// "Now" is the database's clock, the one every function shares.

// SaveConnection records that connectionID (API Gateway's connection id)
// of userID follows sessionID until expiresAt. Saving an id again replaces
// its row. A session that does not exist, or an id that is not a UUID,
// wraps upload.ErrNotFound.
func (s *Store) SaveConnection(ctx context.Context, connectionID, userID, sessionID string, expiresAt time.Time) error {
	if !isUUID(sessionID) {
		return notFound("save connection: session", sessionID)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO websocket_connections
		(connection_id, user_id, session_id, expires_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (connection_id) DO UPDATE SET user_id = EXCLUDED.user_id,
			session_id = EXCLUDED.session_id, expires_at = EXCLUDED.expires_at, created_at = now()`,
		connectionID, userID, sessionID, expiresAt.UTC())
	if err != nil {
		return fail("save connection", connectionID, err)
	}
	return nil
}

// DeleteConnection forgets a connection; one that is not there is not an
// error ($disconnect may come twice, or after the row expired).
func (s *Store) DeleteConnection(ctx context.Context, connectionID string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM websocket_connections WHERE connection_id = $1`, connectionID); err != nil {
		return fail("delete connection", connectionID, err)
	}
	return nil
}

// DeleteGoneConnection forgets a connection the management API answered
// 410 Gone for, unless it was saved less than minAge ago: API Gateway
// answers 410 for a connection whose $connect has not returned yet, and
// that connection is about to open, not gone. Such a row stays until a
// later 410, its $disconnect or its expiry.
func (s *Store) DeleteGoneConnection(ctx context.Context, connectionID string, minAge time.Duration) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM websocket_connections
		WHERE connection_id = $1 AND created_at <= now() - $2::interval`, connectionID, minAge)
	if err != nil {
		return fail("delete gone connection", connectionID, err)
	}
	return nil
}

// SessionConnections returns the ids of the connections following
// sessionID that have not expired, oldest first. An id that is not a UUID
// has none.
func (s *Store) SessionConnections(ctx context.Context, sessionID string) ([]string, error) {
	if !isUUID(sessionID) {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, `SELECT connection_id FROM websocket_connections
		WHERE session_id = $1 AND expires_at > now() ORDER BY created_at, connection_id`, sessionID)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fail("list connections of session", sessionID, err)
	}
	return ids, nil
}

// DeleteExpiredConnections removes the rows past their expiry (clients
// whose $disconnect never arrived) and says how many it removed.
func (s *Store) DeleteExpiredConnections(ctx context.Context) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM websocket_connections WHERE expires_at <= now()`)
	if err != nil {
		return 0, fmt.Errorf("postgres: delete expired connections: %w", err)
	}
	return tag.RowsAffected(), nil
}
