package followup_test

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// A real PNG goes through finalize and the Thumbnail job: a 300x300 JPEG
// at the MOC's thumbnail key, the MOC ready, its URL served by GetMoc.
func TestThumbnailEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.finalize(t, "u1", "Castle", pngImage(t, 640, 480))
	var job followup.Job
	for _, c := range e.inv.take() {
		if c.Function == followup.ThumbnailFunction {
			job = c.Job
		}
	}
	if job.OutboxID == "" {
		t.Fatal("finalize did not invoke the Thumbnail function")
	}
	if err := e.thumbs.Run(t.Context(), job); err != nil {
		t.Fatalf("Run: %v", err)
	}

	key := upload.ThumbnailKey(stage, "u1", m.ID)
	if want := "test/moc-instructions/u1/" + m.ID + "/thumbnail.jpg"; key != want {
		t.Errorf("key = %s, want %s", key, want)
	}
	data, out := e.getObject(t, key)
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil || format != "jpeg" || cfg.Width != 300 || cfg.Height != 300 {
		t.Errorf("thumbnail = %s %dx%d, %v; want a 300x300 JPEG", format, cfg.Width, cfg.Height, err)
	}
	if ct := *out.ContentType; ct != "image/jpeg" {
		t.Errorf("Content-Type = %s", ct)
	}

	got := e.moc(t, m.ID)
	if got.ThumbnailStatus != upload.ThumbnailReady || got.ThumbnailURL == nil || *got.ThumbnailURL != e.blob.ObjectURL(key) {
		t.Errorf("MOC thumbnail = %s %v, want ready and %s", got.ThumbnailStatus, got.ThumbnailURL, e.blob.ObjectURL(key))
	}
	if r := e.row(t, job.OutboxID); r.Status != followup.StatusDone || r.LastError != "" {
		t.Errorf("row = %+v, want done", r)
	}

	// GetMoc presigns the thumbnail: anyone can GET it.
	d, err := e.svc.GetMoc(t.Context(), "u1", m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.ThumbnailURL == nil || !strings.Contains(*d.ThumbnailURL, "X-Amz-Signature") {
		t.Fatalf("thumbnailUrl = %v, want a presigned URL", d.ThumbnailURL)
	}
	resp, err := http.Get(*d.ThumbnailURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Errorf("GET thumbnailUrl: %s, %d bytes; want the thumbnail", resp.Status, len(body))
	}
	if _, err := jpeg.Decode(bytes.NewReader(body)); err != nil {
		t.Errorf("served thumbnail does not decode: %v", err)
	}

	// The same job again (Lambda delivers at least once) does nothing.
	puts := e.blob.puts.Load()
	if err := e.thumbs.Run(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	if e.blob.puts.Load() != puts {
		t.Error("a repeated job stored the thumbnail again")
	}
}

// Bytes that pass finalize's magic-byte check but do not decode: the
// thumbnail fails, the row is done, the MOC is otherwise untouched.
func TestThumbnailOfCorruptImage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	corrupt := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0xAB}, 5000)...)
	m := e.finalize(t, "u1", "Broken", corrupt)
	before := e.moc(t, m.ID)
	job := e.job(t, m.ID, followup.KindThumbnail)

	if err := e.thumbs.Run(t.Context(), job); err != nil {
		t.Fatalf("Run = %v, want nil: a broken image is a final answer", err)
	}
	after := e.moc(t, m.ID)
	if after.ThumbnailStatus != upload.ThumbnailFailed || after.ThumbnailURL != nil {
		t.Errorf("MOC thumbnail = %s %v, want failed, no URL", after.ThumbnailStatus, after.ThumbnailURL)
	}
	after.ThumbnailStatus, after.UpdatedAt = before.ThumbnailStatus, before.UpdatedAt
	if !reflect.DeepEqual(after, before) {
		t.Errorf("the MOC changed beyond its thumbnail:\n%+v\nwas\n%+v", after, before)
	}
	r := e.row(t, job.OutboxID)
	if r.Status != followup.StatusDone {
		t.Errorf("row = %+v, want done", r)
	}
	mustContain(t, "last_error", r.LastError, "cannot be made into a thumbnail", "decode")
	mustContain(t, "log", e.logs.String(), `"level":"WARN"`, "thumbnail failed")
	if e.objectExists(t, upload.ThumbnailKey(stage, "u1", m.ID)) {
		t.Error("a thumbnail object was stored")
	}
	d, err := e.svc.GetMoc(t.Context(), "u1", m.ID)
	if err != nil || d.ThumbnailURL != nil || d.Moc.ThumbnailStatus != upload.ThumbnailFailed {
		t.Errorf("GetMoc: %v %v, %v; want failed and no thumbnailUrl", d.Moc.ThumbnailStatus, d.ThumbnailURL, err)
	}
}

// An image over 10 MiB is refused on its HEAD, never downloaded.
func TestThumbnailOfTooLargeImage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	big := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0}, 10<<20+1-8+1000)...)
	m := e.finalize(t, "u1", "Huge", big)
	job := e.job(t, m.ID, followup.KindThumbnail)
	e.blob.heads.Store(0)
	e.blob.opens.Store(0)

	if err := e.thumbs.Run(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	if h, o := e.blob.heads.Load(), e.blob.opens.Load(); h != 1 || o != 0 {
		t.Errorf("%d HEADs and %d GETs, want 1 and none", h, o)
	}
	if got := e.moc(t, m.ID); got.ThumbnailStatus != upload.ThumbnailFailed {
		t.Errorf("thumbnail status = %s, want failed", got.ThumbnailStatus)
	}
	r := e.row(t, job.OutboxID)
	mustContain(t, "last_error", r.LastError, fmt.Sprint(len(big)), "over the 10485760-byte limit")
	if r.Status != followup.StatusDone {
		t.Errorf("row = %+v", r)
	}
}

// Storage that fails is not the image's fault: the job returns the error
// (Lambda retries it), the row stays pending with the reason, and a later
// run makes the thumbnail.
func TestThumbnailStorageErrorIsRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.finalize(t, "u1", "Castle", pngImage(t, 320, 320))
	job := e.job(t, m.ID, followup.KindThumbnail)

	e.blob.putErr = fmt.Errorf("s3: put: %w", upload.ErrUnavailable)
	err := e.thumbs.Run(t.Context(), job)
	if !errors.Is(err, upload.ErrUnavailable) {
		t.Fatalf("Run = %v, want the storage error", err)
	}
	r := e.row(t, job.OutboxID)
	if r.Status != followup.StatusPending {
		t.Errorf("row = %+v, want pending", r)
	}
	mustContain(t, "last_error", r.LastError, "store thumbnail", "unavailable")
	if got := e.moc(t, m.ID); got.ThumbnailStatus != upload.ThumbnailPending {
		t.Errorf("thumbnail status = %s, want still pending", got.ThumbnailStatus)
	}

	e.blob.putErr = nil
	if err := e.thumbs.Run(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	if got := e.moc(t, m.ID); got.ThumbnailStatus != upload.ThumbnailReady {
		t.Errorf("after the retry: %s, want ready", got.ThumbnailStatus)
	}
}

// A job whose row is gone, finished, or of another kind does nothing.
func TestThumbnailJobsWithNothingToDo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.finalize(t, "u1", "Castle", pngImage(t, 64, 64))
	job := e.job(t, m.ID, followup.KindThumbnail)
	hook := e.job(t, m.ID, followup.KindWebhook)
	e.blob.heads.Store(0) // finalize's checks
	for name, j := range map[string]followup.Job{
		"no such row":   {OutboxID: "00000000-0000-4000-8000-000000000000", Kind: followup.KindThumbnail, MocID: m.ID},
		"not a uuid":    {OutboxID: "x", Kind: followup.KindThumbnail, MocID: m.ID},
		"wrong kind":    hook,
		"row of a kind": {OutboxID: hook.OutboxID, Kind: followup.KindThumbnail, MocID: m.ID},
		"other moc":     {OutboxID: job.OutboxID, Kind: followup.KindThumbnail, MocID: "00000000-0000-4000-8000-000000000001"},
	} {
		if err := e.thumbs.Run(t.Context(), j); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if n := e.blob.heads.Load(); n != 0 {
		t.Errorf("%d HEADs, want none", n)
	}
	if r := e.row(t, job.OutboxID); r.Status != followup.StatusPending {
		t.Errorf("row = %+v", r)
	}
}
