package postgres

import (
	"database/sql"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// later is an expiry the tests' rows do not reach.
func later() time.Time { return time.Now().Add(time.Hour) }

func saveConn(t *testing.T, s *Store, id, userID, sessionID string, expiresAt time.Time) {
	t.Helper()
	if err := s.SaveConnection(t.Context(), id, userID, sessionID, expiresAt); err != nil {
		t.Fatalf("SaveConnection(%s): %v", id, err)
	}
}

func sessionConns(t *testing.T, s *Store, sessionID string) []string {
	t.Helper()
	ids, err := s.SessionConnections(t.Context(), sessionID)
	if err != nil {
		t.Fatalf("SessionConnections: %v", err)
	}
	return ids
}

func TestConnectionsOfSession(t *testing.T) {
	s := open(t)
	a, b := newSession(t, s, "u1"), newSession(t, s, "u2")
	saveConn(t, s, "c1", "u1", a.ID, later())
	saveConn(t, s, "c2", "u1", a.ID, later())
	saveConn(t, s, "c3", "u2", b.ID, later())
	saveConn(t, s, "old", "u1", a.ID, time.Now().Add(-time.Second))

	if got, want := sessionConns(t, s, a.ID), []string{"c1", "c2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("connections of a = %v, want %v (the expired one left out)", got, want)
	}
	if got, want := sessionConns(t, s, b.ID), []string{"c3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("connections of b = %v, want %v", got, want)
	}
	if got := sessionConns(t, s, newID()); len(got) != 0 {
		t.Errorf("connections of an unknown session = %v, want none", got)
	}
	if got := sessionConns(t, s, "not-a-uuid"); len(got) != 0 {
		t.Errorf("connections of a malformed id = %v, want none", got)
	}
}

func TestSaveConnectionAgainReplaces(t *testing.T) {
	s := open(t)
	a, b := newSession(t, s, "u1"), newSession(t, s, "u1")
	saveConn(t, s, "c1", "u1", a.ID, later())
	saveConn(t, s, "c1", "u1", b.ID, later())
	if got := sessionConns(t, s, a.ID); len(got) != 0 {
		t.Errorf("a still has %v", got)
	}
	if got, want := sessionConns(t, s, b.ID), []string{"c1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("connections of b = %v, want %v", got, want)
	}
	// Saving an expired row again with a later expiry makes it live.
	saveConn(t, s, "c2", "u1", a.ID, time.Now().Add(-time.Minute))
	saveConn(t, s, "c2", "u1", a.ID, later())
	if got, want := sessionConns(t, s, a.ID), []string{"c2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("connections of a = %v, want %v", got, want)
	}
}

func TestSaveConnectionUnknownSession(t *testing.T) {
	s := open(t)
	for _, id := range []string{newID(), "not-a-uuid", ""} {
		err := s.SaveConnection(t.Context(), "c1", "u1", id, later())
		if !errors.Is(err, upload.ErrNotFound) {
			t.Errorf("SaveConnection(session %q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestDeleteConnection(t *testing.T) {
	s := open(t)
	a := newSession(t, s, "u1")
	saveConn(t, s, "c1", "u1", a.ID, later())
	saveConn(t, s, "c2", "u1", a.ID, later())
	for range 2 { // the second time there is nothing to delete: not an error
		if err := s.DeleteConnection(t.Context(), "c1"); err != nil {
			t.Fatalf("DeleteConnection: %v", err)
		}
	}
	if got, want := sessionConns(t, s, a.ID), []string{"c2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("connections = %v, want %v", got, want)
	}
}

func TestDeleteGoneConnectionSparesNewRows(t *testing.T) {
	s := open(t)
	a := newSession(t, s, "u1")
	saveConn(t, s, "c1", "u1", a.ID, later())
	if err := s.DeleteGoneConnection(t.Context(), "c1", time.Hour); err != nil {
		t.Fatalf("DeleteGoneConnection: %v", err)
	}
	if got := sessionConns(t, s, a.ID); len(got) != 1 {
		t.Errorf("a row saved just now was deleted as gone: %v", got)
	}
	if err := s.DeleteGoneConnection(t.Context(), "c1", 0); err != nil {
		t.Fatalf("DeleteGoneConnection: %v", err)
	}
	if got := sessionConns(t, s, a.ID); len(got) != 0 {
		t.Errorf("connections = %v, want none", got)
	}
	if err := s.DeleteGoneConnection(t.Context(), "missing", 0); err != nil {
		t.Errorf("DeleteGoneConnection of a missing row: %v", err)
	}
}

func TestDeleteExpiredConnections(t *testing.T) {
	s := open(t)
	a := newSession(t, s, "u1")
	saveConn(t, s, "live", "u1", a.ID, later())
	saveConn(t, s, "old1", "u1", a.ID, time.Now().Add(-time.Minute))
	saveConn(t, s, "old2", "u1", a.ID, time.Now().Add(-time.Hour))
	n, err := s.DeleteExpiredConnections(t.Context())
	if err != nil || n != 2 {
		t.Fatalf("DeleteExpiredConnections = %d, %v; want 2, nil", n, err)
	}
	var left int
	if err := s.Pool().QueryRow(t.Context(), `SELECT count(*) FROM websocket_connections`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 1 {
		t.Errorf("%d rows left, want 1", left)
	}
}

func TestConnectionsGoWithTheirSession(t *testing.T) {
	s := open(t)
	a := newSession(t, s, "u1")
	saveConn(t, s, "c1", "u1", a.ID, later())
	if _, err := s.Pool().Exec(t.Context(), `DELETE FROM upload_sessions WHERE id = $1`, a.ID); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := s.Pool().QueryRow(t.Context(), `SELECT count(*) FROM websocket_connections`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d connection rows outlived their session", left)
	}
}

// Rows 00001 allowed (no session, or a session that is gone) are dropped
// by 00002, which then enforces the reference.
func TestMigrationTiesConnectionsToSessions(t *testing.T) {
	url := postgresURL(t)
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := newProvider(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(t.Context(), 1); err != nil {
		t.Fatalf("UpTo(1): %v", err)
	}
	sessionID := newID()
	for _, q := range []string{
		`INSERT INTO upload_sessions (id, user_id, status, part_size_bytes, expires_at)
			VALUES ('` + sessionID + `', 'u1', 'active', 5242880, now() + interval '1 hour')`,
		`INSERT INTO websocket_connections (connection_id, user_id, session_id, expires_at) VALUES
			('kept', 'u1', '` + sessionID + `', now() + interval '1 hour'),
			('orphan', 'u1', '` + newID() + `', now() + interval '1 hour'),
			('none', 'u1', NULL, now() + interval '1 hour')`,
	} {
		if _, err := db.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := p.Up(t.Context()); err != nil {
		t.Fatalf("Up: %v", err)
	}
	s, err := Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := sessionConns(t, s, sessionID), []string{"kept"}; !reflect.DeepEqual(got, want) {
		t.Errorf("connections after the migration = %v, want %v", got, want)
	}
	var rows int
	if err := s.Pool().QueryRow(t.Context(), `SELECT count(*) FROM websocket_connections`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Errorf("%d rows after the migration, want 1", rows)
	}
	_, err = db.ExecContext(t.Context(), `INSERT INTO websocket_connections (connection_id, user_id, session_id, expires_at)
		VALUES ('x', 'u1', NULL, now())`)
	if err == nil {
		t.Error("a connection without a session was accepted")
	}
}
