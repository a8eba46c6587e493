package followup_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// The sweep dispatches again the row left undone past the timeout, and
// neither the one dispatched just now nor the one done.
func TestSweeperRedispatchesOnlyOverdueRows(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.svc.ThumbnailsEnabled = false
	old := e.job(t, e.finalize(t, "u1", "Old", nil).ID, followup.KindWebhook)
	fresh := e.job(t, e.finalize(t, "u1", "Fresh", nil).ID, followup.KindWebhook)
	done := e.job(t, e.finalize(t, "u1", "Done", nil).ID, followup.KindWebhook)
	e.inv.take()
	ten := 10 * time.Minute
	e.setDispatched(t, old.OutboxID, &ten)
	e.setDispatched(t, done.OutboxID, &ten)
	if _, err := e.store.FinishOutbox(t.Context(), done.OutboxID, followup.Outcome{Status: followup.StatusDone}); err != nil {
		t.Fatal(err)
	}

	sw := &followup.Sweeper{Store: e.store, Dispatcher: e.disp, RedispatchAfter: 5 * time.Minute, Logger: e.log}
	res, err := sw.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res != (followup.SweepResult{Redispatched: 1}) {
		t.Errorf("result = %+v, want 1 redispatched", res)
	}
	calls := e.inv.take()
	if len(calls) != 1 || calls[0].Job != old || calls[0].Function != followup.WebhookFunction {
		t.Errorf("invoked %+v, want only %+v", calls, old)
	}
	if r := e.row(t, old.OutboxID); r.Attempts != 2 || r.DispatchedAt == nil || time.Since(*r.DispatchedAt) > time.Minute {
		t.Errorf("old row after the sweep = %+v", r)
	}
	if r := e.row(t, fresh.OutboxID); r.Attempts != 1 {
		t.Errorf("fresh row = %+v, want untouched", r)
	}
	mustContain(t, "log", e.logs.String(), `"msg":"outbox swept"`, `"redispatched":1`)

	// Dispatched again just now: the next sweep leaves it alone.
	if res, err := sw.Run(t.Context()); err != nil || res != (followup.SweepResult{}) {
		t.Errorf("second sweep = %+v, %v; want nothing", res, err)
	}
	if c := e.inv.take(); len(c) != 0 {
		t.Errorf("second sweep invoked %+v", c)
	}
}

// One run claims batch after batch until a claim comes back short: five
// overdue rows with Batch 2 are three claims, all five dispatched once.
func TestSweeperTakesSeveralBatches(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.svc.ThumbnailsEnabled = false
	want := map[string]bool{}
	ten := 10 * time.Minute
	for i := range 5 {
		job := e.job(t, e.finalize(t, "u1", fmt.Sprintf("Castle %d", i), nil).ID, followup.KindWebhook)
		e.setDispatched(t, job.OutboxID, &ten)
		want[job.OutboxID] = true
	}
	e.inv.take()

	sw := &followup.Sweeper{Store: e.store, Dispatcher: e.disp, Batch: 2, Logger: e.log}
	res, err := sw.Run(t.Context())
	if err != nil || res != (followup.SweepResult{Redispatched: 5}) {
		t.Fatalf("sweep = %+v, %v; want 5 redispatched", res, err)
	}
	for _, c := range e.inv.take() {
		if !want[c.Job.OutboxID] {
			t.Errorf("invoked %+v: not one of the overdue rows, or twice", c.Job)
		}
		delete(want, c.Job.OutboxID)
	}
	if len(want) != 0 {
		t.Errorf("rows not dispatched: %v", want)
	}
}

// A row that is still not done after MaxDispatches dispatches is given
// up: failed with the last error, and a thumbnail's MOC says failed.
func TestSweeperGivesUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.finalize(t, "u1", "Castle", pngImage(t, 64, 64))
	thumb := e.job(t, m.ID, followup.KindThumbnail)
	hook := e.job(t, m.ID, followup.KindWebhook)
	e.inv.take()
	if err := e.store.NoteOutboxError(t.Context(), thumb.OutboxID, "s3: put: unavailable"); err != nil {
		t.Fatal(err)
	}
	ten := 10 * time.Minute
	for _, id := range []string{thumb.OutboxID, hook.OutboxID} {
		e.setDispatched(t, id, &ten)
	}
	// The thumbnail has had its 3 dispatches, the webhook 1 of them.
	if _, err := e.store.Pool().Exec(t.Context(), `UPDATE outbox SET attempts = 3 WHERE id = $1`, thumb.OutboxID); err != nil {
		t.Fatal(err)
	}
	sw := &followup.Sweeper{Store: e.store, Dispatcher: e.disp, MaxDispatches: 3, Logger: e.log}
	res, err := sw.Run(t.Context())
	if err != nil || res != (followup.SweepResult{Redispatched: 1, GivenUp: 1}) {
		t.Fatalf("sweep = %+v, %v; want 1 given up, 1 redispatched", res, err)
	}
	if c := e.inv.take(); len(c) != 1 || c[0].Job != hook {
		t.Errorf("invoked %+v, want the webhook only", c)
	}
	r := e.row(t, thumb.OutboxID)
	if r.Status != followup.StatusFailed {
		t.Errorf("thumbnail row = %+v, want failed", r)
	}
	mustContain(t, "last_error", r.LastError, "not done after 3 dispatches", "s3: put: unavailable")
	if got := e.moc(t, m.ID); got.ThumbnailStatus != upload.ThumbnailFailed || got.ThumbnailURL != nil {
		t.Errorf("MOC thumbnail = %s %v, want failed", got.ThumbnailStatus, got.ThumbnailURL)
	}
	mustContain(t, "log", e.logs.String(), `"level":"ERROR"`, "follow-up given up")
}

// When Lambda refuses the sweep's invoke too, the row is due again at the
// next sweep, and the refusals count towards giving up.
func TestSweeperInvokeFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.svc.ThumbnailsEnabled = false
	e.inv.failWith(errors.New("ServiceException"))
	job := e.job(t, e.finalize(t, "u1", "Castle", nil).ID, followup.KindWebhook)
	sw := &followup.Sweeper{Store: e.store, Dispatcher: e.disp, MaxDispatches: 3, Logger: e.log}
	for i, want := range []followup.SweepResult{
		{Redispatched: 1, DispatchErrors: 1}, // attempts 1 → 2
		{Redispatched: 1, DispatchErrors: 1}, // 2 → 3
		{GivenUp: 1},
		{},
	} {
		res, err := sw.Run(t.Context())
		if err != nil || res != want {
			t.Errorf("sweep %d = %+v, %v; want %+v", i+1, res, err, want)
		}
	}
	if r := e.row(t, job.OutboxID); r.Status != followup.StatusFailed || r.Attempts != 3 {
		t.Errorf("row = %+v, want failed after 3 dispatches", r)
	}
	if n := e.inv.tries.Load(); n != 3 {
		t.Errorf("%d invokes, want 3", n)
	}
}

// The sweep also deletes the WebSocket connection rows past their expiry,
// logs how many, and leaves the live ones; the next sweep has none to
// delete.
func TestSweeperDeletesExpiredConnections(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sess, err := e.svc.CreateSession(t.Context(), "u1", []upload.FileSpec{
		{Category: upload.CategoryInstruction, Name: "a.pdf", Size: 1000, Type: "application/pdf", Ext: "pdf"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, expires := range map[string]time.Time{
		"live": time.Now().Add(time.Hour),
		"old1": time.Now().Add(-time.Minute),
		"old2": time.Now().Add(-24 * time.Hour),
	} {
		if err := e.store.SaveConnection(t.Context(), id, "u1", sess.ID, expires); err != nil {
			t.Fatal(err)
		}
	}
	sw := &followup.Sweeper{Store: e.store, Dispatcher: e.disp, Logger: e.log}
	res, err := sw.Run(t.Context())
	if err != nil || res != (followup.SweepResult{ExpiredConnections: 2}) {
		t.Fatalf("sweep = %+v, %v; want 2 expired connections deleted", res, err)
	}
	left := e.queryStrings(t, `SELECT connection_id FROM websocket_connections ORDER BY connection_id`)
	if len(left) != 1 || left[0] != "live" {
		t.Errorf("connection rows left: %v, want only live", left)
	}
	mustContain(t, "log", e.logs.String(), `"msg":"outbox swept"`, `"expiredConnections":2`)

	if res, err := sw.Run(t.Context()); err != nil || res != (followup.SweepResult{}) {
		t.Errorf("second sweep = %+v, %v; want nothing", res, err)
	}
}
