package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// Fixtures.

// open migrates a fresh database and opens a Store on it.
func open(t *testing.T) *Store {
	t.Helper()
	url := postgresURL(t)
	if err := Migrate(t.Context(), url); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	s, err := Open(t.Context(), url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// t0 is a timestamp PostgreSQL stores exactly (microseconds).
var t0 = time.Date(2025, 3, 1, 10, 0, 0, 123456000, time.UTC)

func at(minutes int) time.Time     { return t0.Add(time.Duration(minutes) * time.Minute) }
func ptr[T any](v T) *T            { return &v }
func atPtr(minutes int) *time.Time { return ptr(at(minutes)) }

// inTx runs fn in a transaction and fails the test on an error.
func inTx(t *testing.T, s *Store, fn func(tx upload.Tx) error) {
	t.Helper()
	if err := s.InTx(t.Context(), fn); err != nil {
		t.Fatalf("InTx: %v", err)
	}
}

// txErr runs fn in its own transaction and returns its error.
func txErr(t *testing.T, s *Store, fn func(tx upload.Tx) error) error {
	t.Helper()
	return s.InTx(t.Context(), fn)
}

func newSession(t *testing.T, s *Store, userID string) *upload.Session {
	t.Helper()
	sess := &upload.Session{
		ID: newID(), UserID: userID, Status: upload.SessionActive, PartSizeBytes: 5 << 20,
		ExpiresAt: at(15), CreatedAt: at(0), UpdatedAt: at(0),
	}
	inTx(t, s, func(tx upload.Tx) error { return tx.InsertSession(t.Context(), sess) })
	return sess
}

func newFile(t *testing.T, s *Store, sess *upload.Session, name string, created time.Time) *upload.File {
	t.Helper()
	id := newID()
	f := &upload.File{
		ID: id, SessionID: sess.ID, Category: upload.CategoryInstruction, Name: name,
		MimeType: "application/pdf", Ext: "pdf", Size: 1234,
		S3Key:  "dev/moc-instructions/" + sess.UserID + "/" + sess.ID + "/instruction/" + id + ".pdf",
		Status: upload.FilePending, CreatedAt: created, UpdatedAt: created,
	}
	inTx(t, s, func(tx upload.Tx) error { return tx.InsertFile(t.Context(), f) })
	return f
}

func newMoc(userID, sessionID, title, slug string) *upload.Moc {
	return &upload.Moc{
		ID: newID(), UserID: userID, UploadSessionID: sessionID, Title: title, Slug: slug,
		Type: "moc", Status: upload.MocPrivate, Tags: []string{},
		ThumbnailStatus: upload.ThumbnailNone, CreatedAt: at(0), UpdatedAt: at(0),
	}
}

// count returns the number of rows of table.
func count(t *testing.T, s *Store, table string) int {
	t.Helper()
	var n int
	if err := s.Pool().QueryRow(t.Context(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// wantErr fails unless err wraps want and its message names mention.
func wantErr(t *testing.T, err, want error, mention string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want one wrapping %v", err, want)
	}
	if !strings.Contains(err.Error(), mention) {
		t.Errorf("err = %q, want it to mention %q", err, mention)
	}
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// Migrations and Open.

func TestMigrateTwice(t *testing.T) {
	t.Parallel()
	url := postgresURL(t)
	for i := range 2 {
		if err := Migrate(t.Context(), url); err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
	}
	s, err := Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var version int64
	err = s.Pool().QueryRow(t.Context(),
		"SELECT max(version_id) FROM goose_db_version WHERE is_applied").Scan(&version)
	files, _ := fs.Glob(embedded, "migrations/*.sql")
	if want := int64(len(files)); err != nil || version != want || want < 2 {
		t.Errorf("schema version = %d, %v; want %d (one per migration)", version, err, want)
	}
}

// Migrate takes the URL the Store takes, pool parameters included, and
// SchemaVersion reads what it applied.
func TestMigrateWithPoolParameters(t *testing.T) {
	t.Parallel()
	url := withQuery(t, postgresURL(t), "pool_max_conns=2&pool_min_conns=1")
	if err := Migrate(t.Context(), url); err != nil {
		t.Fatal(err)
	}
	version, err := SchemaVersion(t.Context(), url)
	files, _ := fs.Glob(embedded, "migrations/*.sql")
	if err != nil || version != int64(len(files)) {
		t.Errorf("SchemaVersion = %d, %v; want %d", version, err, len(files))
	}
}

func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	url := postgresURL(t)
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- Migrate(t.Context(), url) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("Migrate: %v", err)
		}
	}
}

func TestMigrateDownAndUp(t *testing.T) {
	// Down must undo Up, so a bad release can be rolled back.
	t.Parallel()
	s := open(t)
	tables := func() int {
		var n int
		err := s.Pool().QueryRow(t.Context(), `SELECT count(*) FROM information_schema.tables
			WHERE table_schema = 'public' AND table_name <> 'goose_db_version'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := tables(); n != 8 {
		t.Fatalf("%d tables after Up, want 8", n)
	}
	db := stdlib.OpenDBFromPool(s.Pool())
	defer db.Close()
	p, err := newProvider(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(t.Context(), 0); err != nil {
		t.Fatalf("DownTo(0): %v", err)
	}
	if n := tables(); n != 0 {
		t.Errorf("%d tables after Down, want 0", n)
	}
	if _, err := p.Up(t.Context()); err != nil {
		t.Fatalf("Up again: %v", err)
	}
}

func TestOpenPoolSize(t *testing.T) {
	t.Parallel()
	url := postgresURL(t)
	tests := []struct {
		url  string
		want int32
	}{
		{url, defaultMaxConns},
		{withQuery(t, url, "pool_max_conns=2"), 2},
	}
	for _, tt := range tests {
		s, err := Open(t.Context(), tt.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Pool().Config().MaxConns; got != tt.want {
			t.Errorf("Open(%q): MaxConns = %d, want %d", tt.url, got, tt.want)
		}
		s.Close()
	}
}

func TestOpenBadURLHidesPassword(t *testing.T) {
	t.Parallel()
	_, err := Open(t.Context(), "postgres://u:s3cret@127.0.0.1:1/db?sslmode=bogus")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("err = %v, want an error without the password", err)
	}
}

// Transactions.

func TestInTxRollsBackOnError(t *testing.T) {
	t.Parallel()
	s := open(t)
	boom := errors.New("boom")
	err := s.InTx(t.Context(), func(tx upload.Tx) error {
		ctx := t.Context()
		if ok, err := tx.IncrementDailyUploads(ctx, "u1", t0, 10); !ok || err != nil {
			t.Fatalf("IncrementDailyUploads = %v, %v", ok, err)
		}
		sess := &upload.Session{ID: newID(), UserID: "u1", Status: upload.SessionActive,
			PartSizeBytes: 1, ExpiresAt: at(1), CreatedAt: at(0), UpdatedAt: at(0)}
		if err := tx.InsertSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
		return boom
	})
	if err != boom {
		t.Fatalf("InTx = %v, want fn's error unchanged", err)
	}
	for _, table := range []string{"upload_sessions", "user_daily_uploads"} {
		if n := count(t, s, table); n != 0 {
			t.Errorf("%s has %d rows after rollback, want 0", table, n)
		}
	}
}

func TestInTxRollsBackOnPanic(t *testing.T) {
	t.Parallel()
	s := open(t)
	func() {
		defer func() { _ = recover() }()
		_ = s.InTx(t.Context(), func(tx upload.Tx) error {
			if _, err := tx.IncrementDailyUploads(t.Context(), "u1", t0, 10); err != nil {
				t.Fatal(err)
			}
			panic("boom")
		})
	}()
	if n := count(t, s, "user_daily_uploads"); n != 0 {
		t.Errorf("user_daily_uploads has %d rows after a panic, want 0", n)
	}
	// The pool got its connection back in a usable state.
	inTx(t, s, func(tx upload.Tx) error {
		_, err := tx.IncrementDailyUploads(t.Context(), "u1", t0, 10)
		return err
	})
}

func TestInTxCommitFailsAfterSwallowedError(t *testing.T) {
	// A statement error aborts the transaction: if fn ignores it, the
	// commit must fail rather than pretend the writes were kept.
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	err := s.InTx(t.Context(), func(tx upload.Tx) error {
		_ = tx.InsertSession(t.Context(), sess) // duplicate id
		return nil
	})
	if err == nil {
		t.Fatal("InTx = nil, want the commit's error")
	}
}

// Daily uploads.

func TestIncrementDailyUploads(t *testing.T) {
	t.Parallel()
	s := open(t)
	day1 := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	day2 := day1.AddDate(0, 0, 1)
	// 2025-03-01 23:30 in New York is 2025-03-02 in UTC.
	lateInNY := time.Date(2025, 3, 1, 23, 30, 0, 0, time.FixedZone("EST", -5*3600))
	steps := []struct {
		user  string
		day   time.Time
		limit int
		want  bool
	}{
		{"u1", day1, 2, true},
		{"u1", day1.Add(23 * time.Hour), 2, true},
		{"u1", day1, 2, false}, // limit reached
		{"u1", day1, 2, false}, // and stays so
		{"u2", day1, 2, true},  // per user
		{"u1", day2, 2, true},  // per day
		{"u1", lateInNY, 2, true},
		{"u1", day2, 2, false}, // lateInNY counted on day2
		{"u1", day1, 3, true},  // a higher limit lets one more in
		{"u3", day1, 0, false},
	}
	for i, st := range steps {
		var got bool
		inTx(t, s, func(tx upload.Tx) error {
			var err error
			got, err = tx.IncrementDailyUploads(t.Context(), st.user, st.day, st.limit)
			return err
		})
		if got != st.want {
			t.Errorf("step %d: IncrementDailyUploads(%s, %s, %d) = %v, want %v",
				i, st.user, st.day.Format(time.RFC3339), st.limit, got, st.want)
		}
	}
	rows, err := s.Pool().Query(t.Context(),
		"SELECT user_id, day::text, count FROM user_daily_uploads ORDER BY user_id, day")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var user, day string
		var n int
		if err := rows.Scan(&user, &day, &n); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s %d", user, day, n))
	}
	want := []string{"u1 2025-03-01 3", "u1 2025-03-02 2", "u2 2025-03-01 1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("user_daily_uploads = %q, want %q", got, want)
	}
}

// Sessions.

func TestSessionRoundTrip(t *testing.T) {
	t.Parallel()
	s := open(t)
	moc := newMoc("u1", "", "Castle", "castle")
	inTx(t, s, func(tx upload.Tx) error { return insertMoc(t.Context(), tx, moc) })
	berlin := time.FixedZone("CET", 3600)
	tests := []struct {
		name string
		in   upload.Session
		want upload.Session // zero: same as in
	}{
		{name: "new", in: upload.Session{
			UserID: "u1", Status: upload.SessionActive, PartSizeBytes: 5 << 20,
			ExpiresAt: at(15), CreatedAt: at(0), UpdatedAt: at(0)}},
		{name: "every field", in: upload.Session{
			UserID: "u1", Status: upload.SessionCompleted, PartSizeBytes: 8 << 20,
			ExpiresAt: at(15), FinalizedAt: atPtr(5), FinalizingAt: atPtr(4), MocID: &moc.ID,
			CreatedAt: at(0), UpdatedAt: at(5)}},
		{name: "not UTC", in: upload.Session{
			UserID: "u1", Status: upload.SessionFinalizing, PartSizeBytes: 1,
			ExpiresAt: at(15).In(berlin), FinalizingAt: ptr(at(4).In(berlin)),
			CreatedAt: at(0).In(berlin), UpdatedAt: at(1).In(berlin)},
			want: upload.Session{
				UserID: "u1", Status: upload.SessionFinalizing, PartSizeBytes: 1,
				ExpiresAt: at(15), FinalizingAt: atPtr(4), CreatedAt: at(0), UpdatedAt: at(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.ID = newID()
			want := tt.want
			if reflect.DeepEqual(want, upload.Session{}) {
				want = tt.in
			}
			want.ID = in.ID
			var got *upload.Session
			inTx(t, s, func(tx upload.Tx) error { return tx.InsertSession(t.Context(), &in) })
			for _, lock := range []bool{false, true} {
				inTx(t, s, func(tx upload.Tx) error {
					var err error
					got, err = tx.GetSession(t.Context(), in.ID, "u1", lock)
					return err
				})
				if !reflect.DeepEqual(*got, want) {
					t.Errorf("GetSession(forUpdate=%v) =\n%+v\nwant\n%+v", lock, *got, want)
				}
			}
		})
	}
}

func TestUpdateSession(t *testing.T) {
	t.Parallel()
	s := open(t)
	moc := newMoc("u1", "", "Castle", "castle")
	inTx(t, s, func(tx upload.Tx) error { return insertMoc(t.Context(), tx, moc) })
	sess := newSession(t, s, "u1")
	updates := []upload.Session{
		{Status: upload.SessionFinalizing, PartSizeBytes: 6 << 20, ExpiresAt: at(20),
			FinalizingAt: atPtr(3), UpdatedAt: at(3)},
		{Status: upload.SessionCompleted, PartSizeBytes: 6 << 20, ExpiresAt: at(20),
			FinalizingAt: atPtr(3), FinalizedAt: atPtr(4), MocID: &moc.ID, UpdatedAt: at(4)},
		{Status: upload.SessionCancelled, PartSizeBytes: 6 << 20, ExpiresAt: at(20),
			UpdatedAt: at(5)}, // pointers cleared
	}
	for i, u := range updates {
		u.ID, u.UserID, u.CreatedAt = sess.ID, sess.UserID, sess.CreatedAt
		var got *upload.Session
		inTx(t, s, func(tx upload.Tx) error {
			if err := tx.UpdateSession(t.Context(), &u); err != nil {
				return err
			}
			var err error
			got, err = tx.GetSession(t.Context(), sess.ID, sess.UserID, false)
			return err
		})
		if !reflect.DeepEqual(*got, u) {
			t.Errorf("update %d: got\n%+v\nwant\n%+v", i, *got, u)
		}
	}
	// CreatedAt is not written.
	u := *sess
	u.CreatedAt = at(100)
	inTx(t, s, func(tx upload.Tx) error { return tx.UpdateSession(t.Context(), &u) })
	inTx(t, s, func(tx upload.Tx) error {
		got, err := tx.GetSession(t.Context(), sess.ID, sess.UserID, false)
		if err == nil && !got.CreatedAt.Equal(sess.CreatedAt) {
			t.Errorf("CreatedAt = %v after update, want %v", got.CreatedAt, sess.CreatedAt)
		}
		return err
	})
}

func TestSessionNotFound(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	tests := []struct {
		name       string
		id, userID string
	}{
		{"unknown id", newID(), "u1"},
		{"other user", sess.ID, "u2"},
		{"not a uuid", "not-a-uuid", "u1"},
		{"uuid with a bad digit", strings.Replace(newID(), "-", "x", 1) + "", "u1"},
		{"empty", "", "u1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inTx(t, s, func(tx upload.Tx) error {
				_, err := tx.GetSession(t.Context(), tt.id, tt.userID, true)
				wantErr(t, err, upload.ErrNotFound, "get session")
				// The transaction is still usable.
				_, err = tx.GetSession(t.Context(), sess.ID, "u1", false)
				return err
			})
		})
	}
	u := *sess
	u.UserID = "u2"
	err := txErr(t, s, func(tx upload.Tx) error { return tx.UpdateSession(t.Context(), &u) })
	wantErr(t, err, upload.ErrNotFound, "update session "+sess.ID)
	u = *sess
	u.ID = newID()
	err = txErr(t, s, func(tx upload.Tx) error { return tx.UpdateSession(t.Context(), &u) })
	wantErr(t, err, upload.ErrNotFound, "update session "+u.ID)
}

func TestInsertSessionConflict(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	err := txErr(t, s, func(tx upload.Tx) error { return tx.InsertSession(t.Context(), sess) })
	wantErr(t, err, upload.ErrConflict, "upload_sessions_pkey")
}

// The database's own translation of a malformed UUID, for a path that
// does not check ids first.
func TestInvalidUUIDFromDatabaseIsNotFound(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	f := &upload.File{ID: newID(), SessionID: "not-a-uuid", Category: upload.CategoryImage,
		Name: "a.png", MimeType: "image/png", Ext: "png", Size: 1, S3Key: "k",
		Status: upload.FilePending, CreatedAt: at(0), UpdatedAt: at(0)}
	err := txErr(t, s, func(tx upload.Tx) error { return tx.InsertFile(t.Context(), f) })
	wantErr(t, err, upload.ErrNotFound, "insert file "+f.ID)
	if sqlState(err) != invalidTextRepresentation {
		t.Errorf("err = %v, want SQLSTATE 22P02 kept in the chain", err)
	}
	f.SessionID = newID() // no such session: the foreign key refuses it
	err = txErr(t, s, func(tx upload.Tx) error { return tx.InsertFile(t.Context(), f) })
	wantErr(t, err, upload.ErrNotFound, "upload_session_files_session_fkey")
	_ = sess
}

// Locking.

// lockTimeout makes the transaction's lock waits give up after d.
func lockTimeout(t *testing.T, utx upload.Tx, d string) {
	t.Helper()
	if _, err := utx.(*tx).tx.Exec(t.Context(), "SET LOCAL lock_timeout = '"+d+"'"); err != nil {
		t.Fatal(err)
	}
}

// holdLock runs lock in a transaction of its own and keeps that
// transaction open until the returned release is called.
func holdLock(t *testing.T, s *Store, lock func(tx upload.Tx) error) (release func(commit func(tx upload.Tx) error)) {
	t.Helper()
	locked := make(chan error)
	done := make(chan error)
	commitFn := make(chan func(tx upload.Tx) error)
	go func() {
		done <- s.InTx(context.Background(), func(tx upload.Tx) error {
			err := lock(tx)
			locked <- err
			if err != nil {
				return err
			}
			if fn := <-commitFn; fn != nil {
				return fn(tx)
			}
			return nil
		})
	}()
	if err := <-locked; err != nil {
		t.Fatalf("taking the lock: %v", err)
	}
	var once sync.Once
	release = func(commit func(tx upload.Tx) error) {
		once.Do(func() {
			commitFn <- commit
			if err := <-done; err != nil {
				t.Errorf("locking transaction: %v", err)
			}
		})
	}
	t.Cleanup(func() { release(nil) })
	return release
}

func TestGetForUpdateBlocks(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	f := newFile(t, s, sess, "a.pdf", at(0))
	tests := []struct {
		name string
		get  func(tx upload.Tx, forUpdate bool) error
	}{
		{"session", func(tx upload.Tx, forUpdate bool) error {
			_, err := tx.GetSession(t.Context(), sess.ID, "u1", forUpdate)
			return err
		}},
		{"file", func(tx upload.Tx, forUpdate bool) error {
			_, err := tx.GetFile(t.Context(), sess.ID, f.ID, forUpdate)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := holdLock(t, s, func(tx upload.Tx) error { return tt.get(tx, true) })

			err := txErr(t, s, func(tx upload.Tx) error {
				lockTimeout(t, tx, "100ms")
				return tt.get(tx, true)
			})
			if sqlState(err) != "55P03" { // lock_not_available
				t.Errorf("second FOR UPDATE = %v, want a lock timeout (55P03)", err)
			}
			// A plain read does not wait for the lock.
			inTx(t, s, func(tx upload.Tx) error {
				lockTimeout(t, tx, "100ms")
				return tt.get(tx, false)
			})

			release(nil)
			inTx(t, s, func(tx upload.Tx) error {
				lockTimeout(t, tx, "100ms")
				return tt.get(tx, true)
			})
		})
	}
}

// ShareSession's lock lets other sharers in and keeps FOR UPDATE out, and
// the other way round.
func TestShareSessionLock(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	share := func(tx upload.Tx) error {
		_, err := tx.ShareSession(t.Context(), sess.ID, "u1")
		return err
	}
	update := func(tx upload.Tx) error {
		_, err := tx.GetSession(t.Context(), sess.ID, "u1", true)
		return err
	}
	release := holdLock(t, s, share)
	inTx(t, s, func(tx upload.Tx) error {
		lockTimeout(t, tx, "100ms")
		return share(tx)
	})
	err := txErr(t, s, func(tx upload.Tx) error {
		lockTimeout(t, tx, "100ms")
		return update(tx)
	})
	if sqlState(err) != "55P03" {
		t.Errorf("FOR UPDATE while shared = %v, want a lock timeout (55P03)", err)
	}
	release(nil)

	release = holdLock(t, s, update)
	err = txErr(t, s, func(tx upload.Tx) error {
		lockTimeout(t, tx, "100ms")
		return share(tx)
	})
	if sqlState(err) != "55P03" {
		t.Errorf("FOR SHARE while locked for update = %v, want a lock timeout (55P03)", err)
	}
	release(nil)
	err = txErr(t, s, func(tx upload.Tx) error {
		_, err := tx.ShareSession(t.Context(), sess.ID, "someone-else")
		return err
	})
	wantErr(t, err, upload.ErrNotFound, "get session "+sess.ID)
}

// TestForUpdateWaitsAndReadsCommitted: a second locking read waits for the
// first transaction and then sees what it committed.
func TestForUpdateWaitsAndReadsCommitted(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	release := holdLock(t, s, func(tx upload.Tx) error {
		_, err := tx.GetSession(t.Context(), sess.ID, "u1", true)
		return err
	})

	got := make(chan *upload.Session, 1)
	go func() {
		_ = s.InTx(context.Background(), func(tx upload.Tx) error {
			sess, err := tx.GetSession(context.Background(), sess.ID, "u1", true)
			if err != nil {
				t.Error(err)
			}
			got <- sess
			return err
		})
	}()
	waitForLockWaiter(t, s, got)

	release(func(tx upload.Tx) error {
		u := *sess
		u.Status, u.UpdatedAt = upload.SessionCancelled, at(1)
		return tx.UpdateSession(t.Context(), &u)
	})
	if g := <-got; g == nil || g.Status != upload.SessionCancelled {
		t.Errorf("second FOR UPDATE read %+v, want the committed status cancelled", g)
	}
}

// waitForLockWaiter returns once a backend of the test's database waits
// for a lock, and fails if the waiter returned instead.
func waitForLockWaiter(t *testing.T, s *Store, returned <-chan *upload.Session) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		var waiting bool
		err := s.Pool().QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock')`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting {
			return
		}
		select {
		case <-tick.C:
		case g := <-returned:
			t.Fatalf("second FOR UPDATE returned %+v while the row was locked", g)
		case <-deadline:
			t.Fatal("no transaction started waiting for the lock")
		}
	}
}

// Files.

func TestFileRoundTrip(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	tests := []struct {
		name string
		in   upload.File
	}{
		{"pending, no metadata", upload.File{
			Category: upload.CategoryInstruction, Name: "a.pdf", MimeType: "application/pdf",
			Ext: "pdf", Size: 1, Status: upload.FilePending, CreatedAt: at(0), UpdatedAt: at(0)}},
		{"every field", upload.File{
			Category: upload.CategoryImage, Name: "Ünïcode 画像.png", MimeType: "image/png",
			Ext: "png", Size: 50 << 30, UploadID: "upload-1", Status: upload.FileCompleted,
			FileURL: "https://bucket.s3.amazonaws.com/k.png",
			Metadata: upload.FileMetadata{Checksums: &upload.Checksums{
				MD5: "9e107d9d372bb6826bd81d3542a419d6", SHA256: strings.Repeat("ab", 32)}},
			CreatedAt: at(1), UpdatedAt: at(2)}},
		{"md5 only", upload.File{
			Category: upload.CategoryPartsList, Name: "parts.csv", MimeType: "text/csv",
			Ext: "csv", Size: 10, UploadID: "upload-2", Status: upload.FileUploading,
			Metadata:  upload.FileMetadata{Checksums: &upload.Checksums{MD5: "00"}},
			CreatedAt: at(2), UpdatedAt: at(2)}},
	}
	var want []upload.File
	for _, tt := range tests {
		in := tt.in
		in.ID, in.SessionID = newID(), sess.ID
		in.S3Key = "key/" + in.ID
		inTx(t, s, func(tx upload.Tx) error { return tx.InsertFile(t.Context(), &in) })
		for _, lock := range []bool{false, true} {
			var got *upload.File
			inTx(t, s, func(tx upload.Tx) error {
				var err error
				got, err = tx.GetFile(t.Context(), sess.ID, in.ID, lock)
				return err
			})
			if !reflect.DeepEqual(*got, in) {
				t.Errorf("%s: GetFile(forUpdate=%v) =\n%+v\nwant\n%+v", tt.name, lock, *got, in)
			}
		}
		want = append(want, in)
	}
	var got []upload.File
	inTx(t, s, func(tx upload.Tx) error {
		var err error
		got, err = tx.ListFiles(t.Context(), sess.ID)
		return err
	})
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ListFiles =\n%+v\nwant\n%+v", got, want)
	}
}

func TestListFilesOrder(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	other := newSession(t, s, "u1")
	// Registered in this order; b and c within one clock tick, d with an
	// earlier clock (created_at rules).
	a := newFile(t, s, sess, "z.pdf", at(1))
	b := newFile(t, s, sess, "y.pdf", at(2))
	c := newFile(t, s, sess, "x.pdf", at(2))
	d := newFile(t, s, sess, "w.pdf", at(0))
	newFile(t, s, other, "z.pdf", at(1))
	var got []string
	inTx(t, s, func(tx upload.Tx) error {
		files, err := tx.ListFiles(t.Context(), sess.ID)
		for _, f := range files {
			got = append(got, f.Name)
		}
		return err
	})
	want := []string{d.Name, a.Name, b.Name, c.Name}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ListFiles names = %q, want %q", got, want)
	}
	for _, id := range []string{newID(), "not-a-uuid"} {
		inTx(t, s, func(tx upload.Tx) error {
			files, err := tx.ListFiles(t.Context(), id)
			if len(files) != 0 {
				t.Errorf("ListFiles(%s) = %v, want none", id, files)
			}
			return err
		})
	}
}

func TestUpdateFile(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	f := newFile(t, s, sess, "a.pdf", at(0))
	updates := []func(f *upload.File){
		func(f *upload.File) {
			f.UploadID, f.Status, f.UpdatedAt = "up-1", upload.FileUploading, at(1)
		},
		func(f *upload.File) {
			f.Status, f.FileURL, f.UpdatedAt = upload.FileCompleted, "https://x/a.pdf", at(2)
			f.Metadata.Checksums = &upload.Checksums{SHA256: "ff"}
		},
		func(f *upload.File) { // back to NULLs
			f.UploadID, f.FileURL, f.Status, f.Metadata = "", "", upload.FileFailed, upload.FileMetadata{}
		},
	}
	for i, update := range updates {
		want := *f
		update(&want)
		var got *upload.File
		inTx(t, s, func(tx upload.Tx) error {
			if err := tx.UpdateFile(t.Context(), &want); err != nil {
				return err
			}
			var err error
			got, err = tx.GetFile(t.Context(), sess.ID, f.ID, false)
			return err
		})
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("update %d: got\n%+v\nwant\n%+v", i, *got, want)
		}
		f = &want
	}
	u := *f
	u.SessionID = newID()
	err := txErr(t, s, func(tx upload.Tx) error { return tx.UpdateFile(t.Context(), &u) })
	wantErr(t, err, upload.ErrNotFound, "update file "+f.ID)
}

// UpdateFileStatuses writes the status, URL and time of several files in
// one statement, and nothing else of them; a file of another session
// fails the whole call.
func TestUpdateFileStatuses(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	a := newFile(t, s, sess, "a.pdf", at(0))
	b := newFile(t, s, sess, "b.pdf", at(0))
	c := newFile(t, s, sess, "c.pdf", at(0))
	wa, wb := *a, *b
	wa.Status, wa.FileURL, wa.UpdatedAt = upload.FileCompleted, "https://x/a.pdf", at(3)
	wb.Status, wb.UpdatedAt = upload.FileFailed, at(4)
	changed := []upload.File{wa, wb}
	changed[0].Name = "ignored.pdf" // not a status: not written
	inTx(t, s, func(tx upload.Tx) error { return tx.UpdateFileStatuses(t.Context(), sess.ID, changed) })
	inTx(t, s, func(tx upload.Tx) error {
		for _, want := range []upload.File{wa, wb, *c} {
			got, err := tx.GetFile(t.Context(), sess.ID, want.ID, false)
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("got\n%+v\nwant\n%+v", *got, want)
			}
		}
		return nil
	})
	other := newFile(t, s, newSession(t, s, "u1"), "d.pdf", at(0))
	err := txErr(t, s, func(tx upload.Tx) error {
		return tx.UpdateFileStatuses(t.Context(), sess.ID, []upload.File{*c, *other})
	})
	wantErr(t, err, upload.ErrNotFound, "update file statuses of session "+sess.ID)
}

func TestFileNotFound(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	other := newSession(t, s, "u1")
	f := newFile(t, s, sess, "a.pdf", at(0))
	tests := []struct {
		name              string
		sessionID, fileID string
	}{
		{"unknown file", sess.ID, newID()},
		{"other session", other.ID, f.ID},
		{"file id not a uuid", sess.ID, "nope"},
		{"session id not a uuid", "nope", f.ID},
	}
	for _, tt := range tests {
		inTx(t, s, func(tx upload.Tx) error {
			_, err := tx.GetFile(t.Context(), tt.sessionID, tt.fileID, true)
			wantErr(t, err, upload.ErrNotFound, "get file")
			return nil
		})
	}
}

func TestDeleteFile(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	other := newSession(t, s, "u1")
	f := newFile(t, s, sess, "a.pdf", at(0))
	keep := newFile(t, s, sess, "b.pdf", at(1))
	inTx(t, s, func(tx upload.Tx) error {
		return tx.UpsertPart(t.Context(), &upload.Part{FileID: f.ID, PartNumber: 1, ETag: "e", Size: 5, CreatedAt: at(2), UpdatedAt: at(2)})
	})
	err := txErr(t, s, func(tx upload.Tx) error { return tx.DeleteFile(t.Context(), other.ID, f.ID) })
	wantErr(t, err, upload.ErrNotFound, "delete file")
	inTx(t, s, func(tx upload.Tx) error { return tx.DeleteFile(t.Context(), sess.ID, f.ID) })
	inTx(t, s, func(tx upload.Tx) error {
		if _, err := tx.GetFile(t.Context(), sess.ID, f.ID, false); !errors.Is(err, upload.ErrNotFound) {
			t.Errorf("deleted file still there: %v", err)
		}
		if files, err := tx.ListFiles(t.Context(), sess.ID); err != nil || len(files) != 1 || files[0].ID != keep.ID {
			t.Errorf("ListFiles after delete = %v, %v", files, err)
		}
		parts, err := tx.ListParts(t.Context(), f.ID)
		if len(parts) != 0 {
			t.Errorf("the deleted file's parts remain: %v", parts)
		}
		return err
	})
}

func TestInsertFileConflict(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	other := newSession(t, s, "u1")
	f := newFile(t, s, sess, "a.pdf", at(0))
	tests := []struct {
		name       string
		change     func(f *upload.File)
		constraint string
	}{
		{"same name in the session", func(g *upload.File) { g.ID, g.S3Key = newID(), "k2" },
			"upload_session_files_session_name_key"},
		{"same S3 key", func(g *upload.File) { g.ID, g.Name = newID(), "b.pdf" },
			"upload_session_files_s3_key_key"},
		{"same id", func(g *upload.File) { g.Name, g.S3Key = "c.pdf", "k3" },
			"upload_session_files_pkey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := *f
			tt.change(&g)
			err := txErr(t, s, func(tx upload.Tx) error { return tx.InsertFile(t.Context(), &g) })
			wantErr(t, err, upload.ErrConflict, tt.constraint)
		})
	}
	// The same name in another session is fine.
	newFile(t, s, other, f.Name, at(0))
}

// Parts.

func TestParts(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	f := newFile(t, s, sess, "a.pdf", at(0))
	g := newFile(t, s, sess, "b.pdf", at(0))
	part := func(n int, etag string, size int64, md5 string, created, updated int) upload.Part {
		return upload.Part{FileID: f.ID, PartNumber: n, ETag: etag, Size: size, MD5: md5,
			CreatedAt: at(created), UpdatedAt: at(updated)}
	}
	upserts := []upload.Part{
		part(3, `"e3"`, 100, "md5-3", 3, 3),
		part(1, `"e1"`, 5<<20, "md5-1", 1, 1),
		part(10000, `"e10000"`, 7, "", 4, 4), // no MD5: NULL
		part(2, `"e2"`, 5<<20, "md5-2", 2, 2),
		part(1, `"e1b"`, 5<<20-1, "md5-1b", 9, 9), // uploaded again
		{FileID: g.ID, PartNumber: 1, ETag: `"g1"`, Size: 1, CreatedAt: at(0), UpdatedAt: at(0)},
	}
	for _, p := range upserts {
		inTx(t, s, func(tx upload.Tx) error { return tx.UpsertPart(t.Context(), &p) })
	}
	want := []upload.Part{
		part(1, `"e1b"`, 5<<20-1, "md5-1b", 1, 9), // replaced, first creation time kept
		part(2, `"e2"`, 5<<20, "md5-2", 2, 2),
		part(3, `"e3"`, 100, "md5-3", 3, 3),
		part(10000, `"e10000"`, 7, "", 4, 4),
	}
	var got []upload.Part
	inTx(t, s, func(tx upload.Tx) error {
		var err error
		got, err = tx.ListParts(t.Context(), f.ID)
		return err
	})
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ListParts =\n%+v\nwant\n%+v", got, want)
	}
	for _, id := range []string{newID(), "not-a-uuid"} {
		inTx(t, s, func(tx upload.Tx) error {
			parts, err := tx.ListParts(t.Context(), id)
			if len(parts) != 0 {
				t.Errorf("ListParts(%s) = %v, want none", id, parts)
			}
			return err
		})
	}

	bad := []struct {
		name string
		p    upload.Part
		want error
	}{
		{"part 0", part(0, "e", 1, "", 0, 0), nil},
		{"part 10001", part(10001, "e", 1, "", 0, 0), nil},
		{"unknown file", upload.Part{FileID: newID(), PartNumber: 1, ETag: "e"}, upload.ErrNotFound},
	}
	for _, tt := range bad {
		err := txErr(t, s, func(tx upload.Tx) error { return tx.UpsertPart(t.Context(), &tt.p) })
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) ||
			errors.Is(err, upload.ErrConflict) {
			t.Errorf("%s: UpsertPart = %v, want an error (wrapping %v)", tt.name, err, tt.want)
		}
	}
}

// UpsertParts writes several parts in one statement as UpsertPart writes
// each, and ListSessionParts reads them back by file.
func TestUpsertPartsAndListSessionParts(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	f := newFile(t, s, sess, "a.pdf", at(0))
	g := newFile(t, s, sess, "b.pdf", at(0))
	h := newFile(t, s, sess, "c.pdf", at(0)) // no parts
	other := newFile(t, s, newSession(t, s, "u1"), "a.pdf", at(0))
	part := func(file string, n int, etag string, md5 string, created, updated int) upload.Part {
		return upload.Part{FileID: file, PartNumber: n, ETag: etag, Size: int64(n), MD5: md5,
			CreatedAt: at(created), UpdatedAt: at(updated)}
	}
	inTx(t, s, func(tx upload.Tx) error {
		return tx.UpsertPart(t.Context(), &upload.Part{FileID: f.ID, PartNumber: 2, ETag: "old", Size: 2, CreatedAt: at(1), UpdatedAt: at(1)})
	})
	inTx(t, s, func(tx upload.Tx) error {
		if err := tx.UpsertParts(t.Context(), nil); err != nil {
			return err
		}
		return tx.UpsertParts(t.Context(), []upload.Part{
			part(f.ID, 3, "e3", "", 5, 5),
			part(f.ID, 2, "e2", "m2", 5, 5), // replaces "old", keeps its creation time
			part(g.ID, 1, "g1", "", 5, 5),
			part(other.ID, 1, "o1", "", 5, 5),
		})
	})
	var got map[string][]upload.Part
	inTx(t, s, func(tx upload.Tx) (err error) {
		got, err = tx.ListSessionParts(t.Context(), sess.ID)
		return err
	})
	want := map[string][]upload.Part{
		f.ID: {part(f.ID, 2, "e2", "m2", 1, 5), part(f.ID, 3, "e3", "", 5, 5)},
		g.ID: {part(g.ID, 1, "g1", "", 5, 5)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ListSessionParts =\n%+v\nwant\n%+v", got, want)
	}
	if _, ok := got[h.ID]; ok {
		t.Errorf("a file without parts has an entry")
	}
	err := txErr(t, s, func(tx upload.Tx) error {
		return tx.UpsertParts(t.Context(), []upload.Part{part(f.ID, 4, "e4", "", 0, 0), part(newID(), 1, "x", "", 0, 0)})
	})
	if !errors.Is(err, upload.ErrNotFound) {
		t.Errorf("UpsertParts with an unknown file = %v, want ErrNotFound", err)
	}
	inTx(t, s, func(tx upload.Tx) (err error) {
		parts, err := tx.ListParts(t.Context(), f.ID)
		if len(parts) != 2 {
			t.Errorf("a failed UpsertParts wrote: %+v", parts)
		}
		return err
	})
}

// MOCs.

func TestMocRoundTrip(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	sess2 := newSession(t, s, "u1")
	full := newMoc("u1", sess.ID, "Castle", "castle")
	full.Description, full.Theme = ptr("A big castle"), ptr("Castle")
	full.Tags = []string{"medieval", "große Burg"}
	full.ThumbnailStatus, full.FinalizedAt, full.UpdatedAt = upload.ThumbnailPending, atPtr(1), at(1)
	// Inserted in this order, which sorts neither by id nor by name.
	for i, c := range []upload.Category{upload.CategoryInstruction, upload.CategoryInstruction,
		upload.CategoryPartsList, upload.CategoryImage, upload.CategoryThumbnail} {
		id := newID()
		full.Files = append(full.Files, upload.MocFile{
			ID: id, MocID: full.ID, FileType: upload.FileTypeOf(c), Category: c,
			FileURL: "https://x/" + id, S3Key: "k/" + id,
			OriginalFilename: fmt.Sprintf("%c-%s", 'z'-i, c), MimeType: "application/pdf",
			Size: int64(i + 1), CreatedAt: at(0),
		})
	}
	full.ThumbnailURL = &full.Files[3].FileURL

	bare := newMoc("u1", sess2.ID, "Bare", "bare")
	bare.Tags = nil // stored as []
	wantBare := *bare
	wantBare.Tags = []string{}

	noSession := newMoc("u1", "", "Imported", "imported")

	tests := []struct {
		name string
		in   *upload.Moc
		want upload.Moc
	}{
		{"every field", full, *full},
		{"nil tags and pointers, no files", bare, wantBare},
		{"no session", noSession, *noSession},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inTx(t, s, func(tx upload.Tx) error { return insertMoc(t.Context(), tx, tt.in) })
			want := tt.want
			if want.Files == nil {
				want.Files = []upload.MocFile{} // never nil when read
			}
			var got *upload.Moc
			inTx(t, s, func(tx upload.Tx) error {
				var err error
				got, err = tx.GetMoc(t.Context(), tt.in.ID, "u1")
				return err
			})
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("GetMoc =\n%+v\nwant\n%+v", *got, want)
			}
			if tt.in.UploadSessionID == "" {
				return
			}
			inTx(t, s, func(tx upload.Tx) error {
				var err error
				got, err = tx.GetMocBySession(t.Context(), tt.in.UploadSessionID)
				return err
			})
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("GetMocBySession =\n%+v\nwant\n%+v", *got, want)
			}
		})
	}
}

func TestMocNotFound(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	empty := newSession(t, s, "u1")
	m := newMoc("u1", sess.ID, "Castle", "castle")
	inTx(t, s, func(tx upload.Tx) error { return insertMoc(t.Context(), tx, m) })
	tests := []struct {
		name string
		get  func(tx upload.Tx) error
	}{
		{"other user", func(tx upload.Tx) error { _, err := tx.GetMoc(t.Context(), m.ID, "u2"); return err }},
		{"unknown id", func(tx upload.Tx) error { _, err := tx.GetMoc(t.Context(), newID(), "u1"); return err }},
		{"not a uuid", func(tx upload.Tx) error { _, err := tx.GetMoc(t.Context(), "x", "u1"); return err }},
		{"session without MOC", func(tx upload.Tx) error {
			_, err := tx.GetMocBySession(t.Context(), empty.ID)
			return err
		}},
		{"session not a uuid", func(tx upload.Tx) error {
			_, err := tx.GetMocBySession(t.Context(), "x")
			return err
		}},
	}
	for _, tt := range tests {
		inTx(t, s, func(tx upload.Tx) error {
			wantErr(t, tt.get(tx), upload.ErrNotFound, "get moc")
			return nil
		})
	}
}

func TestInsertMocConflict(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	first := newMoc("u1", sess.ID, "Castle", "castle")
	first.Files = []upload.MocFile{{ID: newID(), FileType: "instruction", FileURL: "u",
		S3Key: "k", OriginalFilename: "a.pdf", MimeType: "application/pdf", Size: 1, CreatedAt: at(0)}}
	inTx(t, s, func(tx upload.Tx) error { return insertMoc(t.Context(), tx, first) })

	tests := []struct {
		name       string
		m          func() *upload.Moc
		constraint string
	}{
		{"same title", func() *upload.Moc {
			return newMoc("u1", newSession(t, s, "u1").ID, "Castle", "castle-2")
		}, "moc_instructions_user_title_key"},
		{"same slug", func() *upload.Moc {
			return newMoc("u1", newSession(t, s, "u1").ID, "Castle!", "castle")
		}, "moc_instructions_user_slug_key"},
		{"second MOC of the session", func() *upload.Moc {
			return newMoc("u1", sess.ID, "Other", "other")
		}, "moc_instructions_upload_session_key"},
		{"same file name twice", func() *upload.Moc {
			m := newMoc("u1", newSession(t, s, "u1").ID, "Twice", "twice")
			f := upload.MocFile{FileType: "instruction", FileURL: "u", S3Key: "k",
				OriginalFilename: "a.pdf", MimeType: "application/pdf", Size: 1, CreatedAt: at(0)}
			f1, f2 := f, f
			f1.ID, f2.ID = newID(), newID()
			m.Files = []upload.MocFile{f1, f2}
			return m
		}, "moc_files_moc_filename_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.m()
			err := txErr(t, s, func(tx upload.Tx) error { return insertMoc(t.Context(), tx, m) })
			wantErr(t, err, upload.ErrConflict, tt.constraint)
		})
	}
	if n := count(t, s, "moc_instructions"); n != 1 {
		t.Errorf("moc_instructions has %d rows, want only the first", n)
	}
	// Another user may use the same title and slug.
	other := newMoc("u2", newSession(t, s, "u2").ID, "Castle", "castle")
	inTx(t, s, func(tx upload.Tx) error { return insertMoc(t.Context(), tx, other) })
}

func TestMocTitleExists(t *testing.T) {
	t.Parallel()
	s := open(t)
	inTx(t, s, func(tx upload.Tx) error {
		return insertMoc(t.Context(), tx, newMoc("u1", "", "My Castle", "my-castle"))
	})
	tests := []struct {
		user, title string
		want        bool
	}{
		{"u1", "My Castle", true},
		{"u1", "my castle", false},
		{"u1", "My Castle ", false},
		{"u1", "My", false},
		{"u2", "My Castle", false},
	}
	for _, tt := range tests {
		inTx(t, s, func(tx upload.Tx) error {
			got, err := tx.MocTitleExists(t.Context(), tt.user, tt.title)
			if got != tt.want {
				t.Errorf("MocTitleExists(%s, %q) = %v, want %v", tt.user, tt.title, got, tt.want)
			}
			return err
		})
	}
}

func TestSlugsWithPrefix(t *testing.T) {
	t.Parallel()
	s := open(t)
	slugs := map[string][]string{
		"u1": {"castle", "castle-2", "castle-10", "castlerock", "my-castle", "castle-",
			"a_b", "a_b-2", "axb-2", "a%-2", "a-2"},
		"u2": {"castle-3"},
	}
	for user, list := range slugs {
		for i, slug := range list {
			m := newMoc(user, "", fmt.Sprintf("title %d", i), slug)
			inTx(t, s, func(tx upload.Tx) error { return insertMoc(t.Context(), tx, m) })
		}
	}
	tests := []struct {
		user, prefix string
		want         []string
	}{
		{"u1", "castle", []string{"castle", "castle-", "castle-10", "castle-2", "castlerock"}},
		{"u1", "castle-", []string{"castle-", "castle-10", "castle-2"}},
		{"u2", "castle", []string{"castle-3"}},
		{"u1", "a_b", []string{"a_b", "a_b-2"}}, // _ is not a wildcard
		{"u1", "a%", []string{"a%-2"}},          // nor is %
		{"u1", "tower", []string{}},
	}
	for _, tt := range tests {
		inTx(t, s, func(tx upload.Tx) error {
			got, err := tx.SlugsWithPrefix(t.Context(), tt.user, tt.prefix)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("SlugsWithPrefix(%s, %q) = %q, want %q", tt.user, tt.prefix, got, tt.want)
			}
			return err
		})
	}
}

// TestFinalizeFlow runs the writes of a finalize in the domain's order:
// MOC first, then the session pointing at it.
func TestFinalizeFlow(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	m := newMoc("u1", sess.ID, "Castle", "castle")
	inTx(t, s, func(tx upload.Tx) error {
		got, err := tx.GetSession(t.Context(), sess.ID, "u1", true)
		if err != nil {
			return err
		}
		if err := insertMoc(t.Context(), tx, m); err != nil {
			return err
		}
		got.Status, got.FinalizedAt, got.MocID, got.UpdatedAt = upload.SessionCompleted, atPtr(1), &m.ID, at(1)
		return tx.UpdateSession(t.Context(), got)
	})
	inTx(t, s, func(tx upload.Tx) error {
		got, err := tx.GetSession(t.Context(), sess.ID, "u1", false)
		if err == nil && (got.MocID == nil || *got.MocID != m.ID) {
			t.Errorf("session's MocID = %v, want %s", got.MocID, m.ID)
		}
		return err
	})
}

// insertMoc inserts m's row and its files' rows, as finalize does.
func insertMoc(ctx context.Context, tx upload.Tx, m *upload.Moc) error {
	if err := tx.InsertMoc(ctx, m); err != nil {
		return err
	}
	return tx.InsertMocFiles(ctx, m)
}
