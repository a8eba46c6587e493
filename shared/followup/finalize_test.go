package followup_test

import (
	"errors"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// Finalize writes a row per piece of work with the MOC, then invokes each
// row's function once, asynchronously; a repeat finalize invokes nothing.
func TestFinalizeWritesAndDispatchesTheOutbox(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.disp.ThumbnailFunction = "moc-stack-ThumbnailFunction-abc"
	m := e.finalize(t, "u1", "Castle", pngImage(t, 64, 48))

	if m.ThumbnailStatus != upload.ThumbnailPending || m.ThumbnailURL != nil {
		t.Errorf("new MOC's thumbnail = %s %v, want pending and no URL", m.ThumbnailStatus, m.ThumbnailURL)
	}
	d, err := e.svc.GetMoc(t.Context(), "u1", m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Moc.ThumbnailStatus != upload.ThumbnailPending || d.ThumbnailURL != nil {
		t.Errorf("GetMoc while pending: %s %v, want no thumbnailUrl", d.Moc.ThumbnailStatus, d.ThumbnailURL)
	}

	rows := e.rows(t, m.ID)
	if len(rows) != 2 {
		t.Fatalf("outbox rows = %+v, want a thumbnail and a webhook", rows)
	}
	for kind, r := range rows {
		if r.Status != followup.StatusPending || r.Attempts != 1 || r.DispatchedAt == nil || r.LastError != "" {
			t.Errorf("%s row after finalize = %+v, want pending, dispatched once", kind, r)
		}
	}
	got := map[string]invocation{}
	for _, c := range e.inv.take() {
		got[c.Job.Kind] = c
	}
	want := map[string]invocation{
		followup.KindThumbnail: {"moc-stack-ThumbnailFunction-abc", rows[followup.KindThumbnail].Job()},
		followup.KindWebhook:   {followup.WebhookFunction, rows[followup.KindWebhook].Job()},
	}
	if len(got) != 2 || got[followup.KindThumbnail] != want[followup.KindThumbnail] || got[followup.KindWebhook] != want[followup.KindWebhook] {
		t.Errorf("invocations = %+v, want %+v", got, want)
	}

	// The repeat gets the MOC and starts nothing again.
	again, resumed, err := e.svc.Finalize(t.Context(), "u1", upload.FinalizeRequest{SessionID: m.UploadSessionID, Title: "Castle"})
	if err != nil || !resumed || again.ID != m.ID {
		t.Fatalf("repeat finalize = %v, resumed %v, %v", again, resumed, err)
	}
	if c := e.inv.take(); len(c) != 0 {
		t.Errorf("the repeat invoked %+v", c)
	}
	if n := len(e.rows(t, m.ID)); n != 2 {
		t.Errorf("%d rows after the repeat, want 2", n)
	}
}

// Lambda refusing the invoke neither fails nor holds up finalize: the rows
// are due at the next sweep, which dispatches them.
func TestFinalizeSurvivesInvokeFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.inv.failWith(errors.New("TooManyRequestsException: rate exceeded"))
	start := time.Now()
	m := e.finalize(t, "u1", "Castle", pngImage(t, 64, 48))
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("finalize took %v", took)
	}
	for kind, r := range e.rows(t, m.ID) {
		if r.Status != followup.StatusPending || r.DispatchedAt != nil || r.Attempts != 1 {
			t.Errorf("%s row = %+v, want pending, due now", kind, r)
		}
		mustContain(t, kind+" row's last_error", r.LastError, "TooManyRequestsException")
	}
	mustContain(t, "log", e.logs.String(), "the sweeper will dispatch it")

	e.inv.failWith(nil)
	sw := &followup.Sweeper{Store: e.store, Dispatcher: e.disp, Logger: e.log}
	res, err := sw.Run(t.Context())
	if err != nil || res.Redispatched != 2 || res.DispatchErrors != 0 || res.GivenUp != 0 {
		t.Fatalf("sweep = %+v, %v; want 2 redispatched", res, err)
	}
	if c := e.inv.take(); len(c) != 2 {
		t.Errorf("the sweep invoked %+v, want both jobs", c)
	}
	for kind, r := range e.rows(t, m.ID) {
		if r.DispatchedAt == nil || r.Attempts != 2 {
			t.Errorf("%s row after the sweep = %+v", kind, r)
		}
	}
}

// Without generated thumbnails or a webhook, finalize writes no work and
// the first image is the thumbnail, as in the old service.
func TestFinalizeWithoutFollowUps(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.svc.ThumbnailsEnabled, e.svc.WebhookEnabled = false, false
	m := e.finalize(t, "u1", "Old Style", pngImage(t, 64, 48))
	if m.ThumbnailStatus != upload.ThumbnailNone || m.ThumbnailURL == nil || *m.ThumbnailURL != m.FirstImage().FileURL {
		t.Errorf("thumbnail = %s %v, want none and the image's URL", m.ThumbnailStatus, m.ThumbnailURL)
	}
	d, err := e.svc.GetMoc(t.Context(), "u1", m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.ThumbnailURL == nil || *d.ThumbnailURL != d.DownloadURLs[m.FirstImage().ID] {
		t.Errorf("thumbnailUrl = %v, want the image's download URL", d.ThumbnailURL)
	}
	if rows := e.rows(t, m.ID); len(rows) != 0 {
		t.Errorf("outbox rows %+v, want none", rows)
	}
	if c := e.inv.take(); len(c) != 0 {
		t.Errorf("invoked %+v", c)
	}

	// Thumbnails on, but no image: nothing to make; the webhook only.
	e.svc.ThumbnailsEnabled, e.svc.WebhookEnabled = true, true
	m = e.finalize(t, "u1", "No Image", nil)
	if m.ThumbnailStatus != upload.ThumbnailNone || m.ThumbnailURL != nil {
		t.Errorf("no image: thumbnail = %s %v, want none and null", m.ThumbnailStatus, m.ThumbnailURL)
	}
	rows := e.rows(t, m.ID)
	if _, ok := rows[followup.KindWebhook]; len(rows) != 1 || !ok {
		t.Errorf("no image: rows %+v, want the webhook only", rows)
	}
}
