package postgres

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// finalized inserts a session's MOC and its outbox rows (one per kind) in
// one transaction, as finalize does, and returns the MOC and the rows' ids
// by kind.
func finalized(t *testing.T, s *Store, userID, title string, kinds ...string) (*upload.Moc, map[string]string) {
	t.Helper()
	sess := newSession(t, s, userID)
	m := newMoc(userID, sess.ID, title, upload.Slugify(title))
	ids := map[string]string{}
	var work []upload.FollowUp
	for _, k := range kinds {
		ids[k] = newID()
		work = append(work, upload.FollowUp{ID: ids[k], MocID: m.ID, Kind: k})
	}
	inTx(t, s, func(tx upload.Tx) error {
		if err := insertMoc(t.Context(), tx, m); err != nil {
			return err
		}
		return tx.InsertOutbox(t.Context(), work)
	})
	return m, ids
}

func outboxRow(t *testing.T, s *Store, id string) *followup.Row {
	t.Helper()
	r, err := s.OutboxRow(t.Context(), id)
	if err != nil {
		t.Fatalf("OutboxRow(%s): %v", id, err)
	}
	return r
}

// age moves a row's dispatched_at (nil: NULL) and created_at into the past.
func age(t *testing.T, s *Store, id string, dispatchedAgo *time.Duration, createdAgo time.Duration) {
	t.Helper()
	var err error
	if dispatchedAgo == nil {
		_, err = s.Pool().Exec(t.Context(), `UPDATE outbox SET dispatched_at = NULL,
			created_at = now() - $2::interval WHERE id = $1`, id, createdAgo)
	} else {
		_, err = s.Pool().Exec(t.Context(), `UPDATE outbox SET dispatched_at = now() - $2::interval,
			created_at = now() - $3::interval WHERE id = $1`, id, *dispatchedAgo, createdAgo)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestInsertOutbox(t *testing.T) {
	t.Parallel()
	s := open(t)
	before := time.Now().Add(-time.Minute)
	m, ids := finalized(t, s, "u1", "Castle", upload.FollowUpThumbnail, upload.FollowUpWebhook)
	for kind, id := range ids {
		r := outboxRow(t, s, id)
		if r.ID != id || r.MocID != m.ID || r.Kind != kind || r.Status != followup.StatusPending ||
			r.Attempts != 0 || r.LastError != "" {
			t.Errorf("row %s = %+v", kind, r)
		}
		// Due: finalize dispatches it right after the commit.
		if r.DispatchedAt == nil || r.DispatchedAt.Before(before) || r.CreatedAt.Before(before) {
			t.Errorf("row %s: dispatched_at %v, created_at %v; want now", kind, r.DispatchedAt, r.CreatedAt)
		}
		if r.Job() != (followup.Job{OutboxID: id, Kind: kind, MocID: m.ID}) {
			t.Errorf("Job() = %+v", r.Job())
		}
	}

	// One row per kind of work per MOC; kinds are checked; the MOC must exist.
	err := txErr(t, s, func(tx upload.Tx) error {
		return tx.InsertOutbox(t.Context(), []upload.FollowUp{{ID: newID(), MocID: m.ID, Kind: upload.FollowUpWebhook}})
	})
	wantErr(t, err, upload.ErrConflict, "outbox_moc_kind_key")
	err = txErr(t, s, func(tx upload.Tx) error {
		return tx.InsertOutbox(t.Context(), []upload.FollowUp{{ID: newID(), MocID: m.ID, Kind: "email"}})
	})
	if sqlState(err) != "23514" {
		t.Errorf("unknown kind: %v, want a check violation", err)
	}
	err = txErr(t, s, func(tx upload.Tx) error {
		return tx.InsertOutbox(t.Context(), []upload.FollowUp{{ID: newID(), MocID: newID(), Kind: upload.FollowUpWebhook}})
	})
	wantErr(t, err, upload.ErrNotFound, "outbox_moc_fkey")
}

// The rows commit with the MOC or not at all.
func TestInsertOutboxRollsBackWithMoc(t *testing.T) {
	t.Parallel()
	s := open(t)
	sess := newSession(t, s, "u1")
	m := newMoc("u1", sess.ID, "Castle", "castle")
	boom := errors.New("session update failed")
	err := txErr(t, s, func(tx upload.Tx) error {
		if err := insertMoc(t.Context(), tx, m); err != nil {
			return err
		}
		if err := tx.InsertOutbox(t.Context(), []upload.FollowUp{{ID: newID(), MocID: m.ID, Kind: upload.FollowUpWebhook}}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if n := count(t, s, "outbox"); n != 0 {
		t.Errorf("%d outbox rows after the rollback", n)
	}
}

func TestOutboxGoesWithItsMoc(t *testing.T) {
	t.Parallel()
	s := open(t)
	m, ids := finalized(t, s, "u1", "Castle", upload.FollowUpWebhook)
	if _, err := s.Pool().Exec(t.Context(), `DELETE FROM moc_instructions WHERE id = $1`, m.ID); err != nil {
		t.Fatal(err)
	}
	_, err := s.OutboxRow(t.Context(), ids[upload.FollowUpWebhook])
	wantErr(t, err, upload.ErrNotFound, ids[upload.FollowUpWebhook])
	_, err = s.OutboxRow(t.Context(), "not-a-uuid")
	wantErr(t, err, upload.ErrNotFound, "not-a-uuid")
}

func TestFinishOutbox(t *testing.T) {
	t.Parallel()
	s := open(t)
	m, ids := finalized(t, s, "u1", "Castle", upload.FollowUpThumbnail, upload.FollowUpWebhook)
	// As finalize leaves it.
	if _, err := s.Pool().Exec(t.Context(), `UPDATE moc_instructions SET thumbnail_status = 'pending' WHERE id = $1`, m.ID); err != nil {
		t.Fatal(err)
	}
	url := "http://s3/b/dev/moc-instructions/u1/" + m.ID + "/thumbnail.jpg"
	ready := followup.Outcome{Status: followup.StatusDone,
		Thumbnail: &followup.ThumbnailState{Status: upload.ThumbnailReady, URL: &url}}
	ok, err := s.FinishOutbox(t.Context(), ids[upload.FollowUpThumbnail], ready)
	if err != nil || !ok {
		t.Fatalf("FinishOutbox = %v, %v; want true", ok, err)
	}
	moc, err := s.MocByID(t.Context(), m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if moc.ThumbnailStatus != upload.ThumbnailReady || moc.ThumbnailURL == nil || *moc.ThumbnailURL != url {
		t.Errorf("MOC thumbnail = %s %v", moc.ThumbnailStatus, moc.ThumbnailURL)
	}
	if r := outboxRow(t, s, ids[upload.FollowUpThumbnail]); r.Status != followup.StatusDone || r.LastError != "" {
		t.Errorf("row = %+v", r)
	}

	// A second run of the same job finds the row finished and writes nothing.
	failed := followup.Outcome{Status: followup.StatusDone, LastError: "image is broken",
		Thumbnail: &followup.ThumbnailState{Status: upload.ThumbnailFailed}}
	if ok, err := s.FinishOutbox(t.Context(), ids[upload.FollowUpThumbnail], failed); err != nil || ok {
		t.Errorf("FinishOutbox again = %v, %v; want false", ok, err)
	}
	if moc, _ := s.MocByID(t.Context(), m.ID); moc.ThumbnailStatus != upload.ThumbnailReady {
		t.Errorf("the second finish changed the MOC: %s", moc.ThumbnailStatus)
	}

	// A webhook that failed: the row says why; the MOC is untouched.
	ok, err = s.FinishOutbox(t.Context(), ids[upload.FollowUpWebhook],
		followup.Outcome{Status: followup.StatusFailed, LastError: "receiver answered 410"})
	if err != nil || !ok {
		t.Fatalf("FinishOutbox(webhook) = %v, %v", ok, err)
	}
	if r := outboxRow(t, s, ids[upload.FollowUpWebhook]); r.Status != followup.StatusFailed || r.LastError != "receiver answered 410" {
		t.Errorf("webhook row = %+v", r)
	}

	if _, err := s.FinishOutbox(t.Context(), ids[upload.FollowUpWebhook], followup.Outcome{Status: followup.StatusPending}); err == nil {
		t.Error("FinishOutbox with a status that is not final succeeded")
	}
	for _, id := range []string{newID(), "nope"} {
		if ok, err := s.FinishOutbox(t.Context(), id, followup.Outcome{Status: followup.StatusDone}); ok || err != nil {
			t.Errorf("FinishOutbox(%s) of no row = %v, %v", id, ok, err)
		}
	}
}

func TestRecordDispatch(t *testing.T) {
	t.Parallel()
	s := open(t)
	_, ids := finalized(t, s, "u1", "Castle", upload.FollowUpWebhook)
	id := ids[upload.FollowUpWebhook]
	ago := 10 * time.Minute
	age(t, s, id, &ago, ago)

	// Accepted: counted, dispatched now.
	if err := s.RecordDispatch(t.Context(), id, ""); err != nil {
		t.Fatal(err)
	}
	r := outboxRow(t, s, id)
	if r.Attempts != 1 || r.DispatchedAt == nil || time.Since(*r.DispatchedAt) > time.Minute {
		t.Errorf("after an accepted invoke: %+v", r)
	}
	// Refused: counted, due again at once, and why.
	if err := s.RecordDispatch(t.Context(), id, "lambda: throttled"); err != nil {
		t.Fatal(err)
	}
	r = outboxRow(t, s, id)
	if r.Attempts != 2 || r.DispatchedAt != nil || r.LastError != "lambda: throttled" {
		t.Errorf("after a refused invoke: %+v", r)
	}
	if err := s.NoteOutboxError(t.Context(), id, "s3: unavailable"); err != nil {
		t.Fatal(err)
	}
	if r := outboxRow(t, s, id); r.LastError != "s3: unavailable" || r.Status != followup.StatusPending {
		t.Errorf("after NoteOutboxError: %+v", r)
	}

	// A finished row keeps its status and error; a late invoke still
	// counts (an async function can finish before its dispatch is noted).
	if _, err := s.FinishOutbox(t.Context(), id, followup.Outcome{Status: followup.StatusDone}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordDispatch(t.Context(), id, "late"); err != nil {
		t.Fatal(err)
	}
	if err := s.NoteOutboxError(t.Context(), id, "late"); err != nil {
		t.Fatal(err)
	}
	if r := outboxRow(t, s, id); r.Attempts != 3 || r.LastError != "" || r.Status != followup.StatusDone {
		t.Errorf("a finished row changed: %+v", r)
	}
}

func TestClaimStaleOutbox(t *testing.T) {
	t.Parallel()
	s := open(t)
	after := 5 * time.Minute
	_, fresh := finalized(t, s, "u1", "Fresh", upload.FollowUpWebhook)
	_, old := finalized(t, s, "u1", "Old", upload.FollowUpThumbnail, upload.FollowUpWebhook)
	_, never := finalized(t, s, "u1", "Never", upload.FollowUpWebhook)
	_, done := finalized(t, s, "u1", "Done", upload.FollowUpWebhook)
	_, failed := finalized(t, s, "u1", "Failed", upload.FollowUpWebhook)
	ten, six := 10*time.Minute, 6*time.Minute
	age(t, s, old[upload.FollowUpThumbnail], &ten, 30*time.Minute)
	age(t, s, old[upload.FollowUpWebhook], &six, 20*time.Minute)
	age(t, s, never[upload.FollowUpWebhook], nil, 25*time.Minute)
	for _, id := range []string{done[upload.FollowUpWebhook], failed[upload.FollowUpWebhook]} {
		age(t, s, id, &ten, 30*time.Minute)
	}
	if _, err := s.FinishOutbox(t.Context(), done[upload.FollowUpWebhook], followup.Outcome{Status: followup.StatusDone}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishOutbox(t.Context(), failed[upload.FollowUpWebhook], followup.Outcome{Status: followup.StatusFailed}); err != nil {
		t.Fatal(err)
	}

	rows, err := s.ClaimStaleOutbox(t.Context(), after, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.ID)
	}
	// Oldest first; the fresh, done and failed rows are not stale.
	want := []string{old[upload.FollowUpThumbnail], never[upload.FollowUpWebhook], old[upload.FollowUpWebhook]}
	if !slices.Equal(got, want) {
		t.Fatalf("claimed %v, want %v (fresh %v)", got, want, fresh)
	}
	// The rows as they were: the previous dispatch, attempts untouched.
	if rows[1].DispatchedAt != nil || rows[0].DispatchedAt == nil || time.Since(*rows[0].DispatchedAt) < ten-time.Minute {
		t.Errorf("claimed rows' dispatched_at: %v, %v", rows[0].DispatchedAt, rows[1].DispatchedAt)
	}
	// Claimed rows are dispatched now: a second sweep takes none of them.
	for _, id := range want {
		if r := outboxRow(t, s, id); r.DispatchedAt == nil || time.Since(*r.DispatchedAt) > time.Minute {
			t.Errorf("row %s after the claim: dispatched_at %v", id, r.DispatchedAt)
		}
	}
	if again, err := s.ClaimStaleOutbox(t.Context(), after, 10); err != nil || len(again) != 0 {
		t.Errorf("second claim = %v, %v; want none", again, err)
	}
	if some, err := s.ClaimStaleOutbox(t.Context(), after, 0); err != nil || some != nil {
		t.Errorf("claim of 0 rows = %v, %v", some, err)
	}
}

// Sweeps running at once never claim the same row.
func TestClaimStaleOutboxConcurrently(t *testing.T) {
	t.Parallel()
	s := open(t)
	ago := time.Hour
	var all []string
	for i := range 20 {
		_, ids := finalized(t, s, "u1", fmt.Sprintf("MOC %d", i), upload.FollowUpWebhook)
		age(t, s, ids[upload.FollowUpWebhook], &ago, ago)
		all = append(all, ids[upload.FollowUpWebhook])
	}
	var (
		mu      sync.Mutex
		claimed []string
		wg      sync.WaitGroup
	)
	for range 6 {
		wg.Go(func() {
			for {
				rows, err := s.ClaimStaleOutbox(t.Context(), time.Minute, 3)
				if err != nil {
					t.Error(err)
					return
				}
				if len(rows) == 0 {
					return
				}
				mu.Lock()
				for _, r := range rows {
					claimed = append(claimed, r.ID)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(claimed)
	slices.Sort(all)
	if !slices.Equal(claimed, all) {
		t.Errorf("claimed %d rows (%v), want each of the %d once", len(claimed), claimed, len(all))
	}
}

func TestMocByID(t *testing.T) {
	t.Parallel()
	s := open(t)
	m, _ := finalized(t, s, "someone-else", "Castle")
	got, err := s.MocByID(t.Context(), m.ID)
	if err != nil || got.ID != m.ID || got.UserID != "someone-else" || got.Files == nil {
		t.Errorf("MocByID = %+v, %v", got, err)
	}
	for _, id := range []string{newID(), "bad"} {
		_, err := s.MocByID(t.Context(), id)
		wantErr(t, err, upload.ErrNotFound, id)
	}
}
