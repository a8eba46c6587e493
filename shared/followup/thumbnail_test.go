package followup_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/mocbuilders/moc-upload/local/logbuf"
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

// An image that grew past the limit after its HEAD (replaced by a larger
// one in between) is refused too: the GET is never read past the limit.
func TestThumbnailOfImageGrownSinceItsHead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const limit = 256
	img := pngImage(t, 320, 320)
	if len(img) <= limit+1 {
		t.Fatalf("the test image is %d bytes, want over %d", len(img), limit+1)
	}
	m := e.finalize(t, "u1", "Grown", img)
	job := e.job(t, m.ID, followup.KindThumbnail)
	th := *e.thumbs
	th.MaxImageBytes = limit
	th.Blob = staleHead{e.blob}

	if err := th.Run(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	if got := e.moc(t, m.ID); got.ThumbnailStatus != upload.ThumbnailFailed || got.ThumbnailURL != nil {
		t.Errorf("thumbnail %s %v, want failed, no URL", got.ThumbnailStatus, got.ThumbnailURL)
	}
	r := e.row(t, job.OutboxID)
	if r.Status != followup.StatusDone {
		t.Errorf("row %s, want done", r.Status)
	}
	// limit+1 bytes read: enough to know it is over, and no more.
	mustContain(t, "last_error", r.LastError, fmt.Sprintf("the image is %d bytes, over the %d-byte limit", limit+1, limit))
	if e.objectExists(t, upload.ThumbnailKey(stage, "u1", m.ID)) {
		t.Error("a thumbnail was stored")
	}
}

// staleHead is the real blob store whose HEAD reports a 1-byte object,
// as if the object had been replaced by a larger one after it.
type staleHead struct{ followup.ThumbnailBlob }

func (staleHead) Head(context.Context, string) (int64, error) { return 1, nil }

// An S3 error the SDK's retries did not get past — on the HEAD, the GET,
// any read of the body or the PUT of the thumbnail — is a final answer:
// the thumbnail failed with the reason, one warning with the MOC id, the
// row failed and never dispatched again, the MOC otherwise untouched, no
// thumbnail stored. Each of the job's S3 calls fails in turn, over the
// real S3 server.
func TestThumbnailStorageErrorFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := pngImage(t, 320, 320)
	s3Err := fmt.Errorf("s3: %w", upload.ErrUnavailable)

	// A clean run counts the job's S3 calls.
	counting := &faultyBlob{ThumbnailBlob: e.blob}
	clean := *e.thumbs
	clean.Blob = counting
	m := e.finalize(t, "u1", "Clean", img)
	if err := clean.Run(t.Context(), e.job(t, m.ID, followup.KindThumbnail)); err != nil {
		t.Fatal(err)
	}
	if got := e.moc(t, m.ID); got.ThumbnailStatus != upload.ThumbnailReady {
		t.Fatalf("clean run: thumbnail %s, want ready", got.ThumbnailStatus)
	}
	calls := counting.calls.Load()
	if calls < 4 { // HEAD, GET, at least one read, PUT
		t.Fatalf("the job made %d S3 calls, want at least 4", calls)
	}

	for n := int32(1); n <= calls; n++ {
		user := fmt.Sprintf("u%d", n+1)
		m := e.finalize(t, user, "Castle", img)
		before := e.moc(t, m.ID)
		job := e.job(t, m.ID, followup.KindThumbnail)
		logs := &logbuf.Buffer{}
		th := *e.thumbs
		th.Blob = &faultyBlob{ThumbnailBlob: e.blob, failOn: n, err: s3Err}
		th.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		if err := th.Run(t.Context(), job); err != nil {
			t.Errorf("call %d of %d failing: Run = %v, want nil (a final answer)", n, calls, err)
			continue
		}
		r := e.row(t, job.OutboxID)
		if r.Status != followup.StatusFailed {
			t.Errorf("call %d failing: row %s, want failed", n, r.Status)
		}
		what := "the image could not be read"
		if n == calls {
			what = "the thumbnail could not be stored"
		}
		mustContain(t, fmt.Sprintf("call %d failing: last_error", n), r.LastError, "S3 error", what, "storage unavailable")
		after := e.moc(t, m.ID)
		if after.ThumbnailStatus != upload.ThumbnailFailed || after.ThumbnailURL != nil {
			t.Errorf("call %d failing: MOC thumbnail %s %v, want failed, no URL", n, after.ThumbnailStatus, after.ThumbnailURL)
		}
		after.ThumbnailStatus, after.UpdatedAt = before.ThumbnailStatus, before.UpdatedAt
		if !reflect.DeepEqual(after, before) {
			t.Errorf("call %d failing: the MOC changed beyond its thumbnail:\n%+v\nwas\n%+v", n, after, before)
		}
		if e.objectExists(t, upload.ThumbnailKey(stage, user, m.ID)) {
			t.Errorf("call %d failing: a thumbnail was stored", n)
		}
		var warns []map[string]any
		for line := range strings.Lines(logs.String()) {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			if rec["level"] == "WARN" {
				warns = append(warns, rec)
			}
		}
		if len(warns) != 1 || warns[0]["msg"] != "thumbnail failed" || warns[0]["mocId"] != m.ID ||
			!strings.Contains(fmt.Sprint(warns[0]["reason"]), "S3 error") {
			t.Errorf("call %d failing: WARN lines %v, want one \"thumbnail failed\" with the mocId and the S3 error", n, warns)
		}
	}

	// Not sent again: the Sweeper takes pending rows only, however old.
	e.inv.take()
	if _, err := e.store.Pool().Exec(t.Context(), `UPDATE outbox SET dispatched_at = now() - interval '1 hour' WHERE kind = 'thumbnail'`); err != nil {
		t.Fatal(err)
	}
	sw := &followup.Sweeper{Store: e.store, Dispatcher: e.disp, Logger: e.log}
	if _, err := sw.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, c := range e.inv.take() {
		if c.Function == followup.ThumbnailFunction {
			t.Errorf("the sweep dispatched the thumbnail %+v again", c.Job)
		}
	}
}

// What cannot be recorded is retried: the database failing to end the
// row, or the function's deadline cutting S3 short. Run returns the
// error (Lambda runs the job again, then the Sweeper), the row stays
// pending with the reason, the MOC's thumbnail pending; a later run makes
// the thumbnail.
func TestThumbnailRetriedWhenNothingCanBeRecorded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dbErr := errors.New("conn closed")
	for name, tc := range map[string]struct {
		thumbs  func(th *followup.Thumbnails, cancel context.CancelFunc)
		wantErr error
		reason  string
	}{
		"database": {
			thumbs: func(th *followup.Thumbnails, _ context.CancelFunc) {
				th.Store = finishFails{th.Store, dbErr}
			},
			wantErr: dbErr, reason: "", // nothing could be recorded
		},
		"deadline during the GET": {
			thumbs: func(th *followup.Thumbnails, cancel context.CancelFunc) {
				th.Blob = &faultyBlob{ThumbnailBlob: e.blob, failOn: 2, err: context.DeadlineExceeded, before: cancel}
			},
			wantErr: context.DeadlineExceeded, reason: "the image could not be read",
		},
	} {
		t.Run(name, func(t *testing.T) {
			m := e.finalize(t, "u-"+strings.ReplaceAll(name, " ", "-"), "Castle", pngImage(t, 320, 320))
			job := e.job(t, m.ID, followup.KindThumbnail)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			th := *e.thumbs
			tc.thumbs(&th, cancel)
			if err := th.Run(ctx, job); !errors.Is(err, tc.wantErr) {
				t.Fatalf("Run = %v, want %v", err, tc.wantErr)
			}
			r := e.row(t, job.OutboxID)
			if r.Status != followup.StatusPending {
				t.Errorf("row %s, want pending", r.Status)
			}
			mustContain(t, "last_error", r.LastError, tc.reason)
			if got := e.moc(t, m.ID); got.ThumbnailStatus != upload.ThumbnailPending {
				t.Errorf("thumbnail %s, want still pending", got.ThumbnailStatus)
			}
			if err := e.thumbs.Run(t.Context(), job); err != nil {
				t.Fatal(err)
			}
			if got := e.moc(t, m.ID); got.ThumbnailStatus != upload.ThumbnailReady {
				t.Errorf("after the retry: %s, want ready", got.ThumbnailStatus)
			}
		})
	}
}

// finishFails is the real store whose FinishOutbox fails (fault
// injection: the database going away between the work and its record).
type finishFails struct {
	followup.JobStore
	err error
}

func (f finishFails) FinishOutbox(context.Context, string, followup.Outcome) (bool, error) {
	return false, f.err
}

// The thumbnail is made from the MOC's first image in its file order:
// images after instructions and parts lists, image files before files
// of the category thumbnail, each in registration order — not in upload
// order, nor by name.
func TestThumbnailOfFirstImage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := solidPNG(t, 400, 200, color.NRGBA{255, 0, 0, 255})  // red, landscape
	second := solidPNG(t, 200, 400, color.NRGBA{0, 0, 255, 255}) // blue, portrait
	cover := solidPNG(t, 300, 300, color.NRGBA{0, 255, 0, 255})  // green
	coverFile := pngFile("a-cover.png", cover)
	coverFile.spec.Category = upload.CategoryThumbnail
	m := e.finalizeFiles(t, "u1", "Two images", []testFile{
		coverFile,
		pngFile("z-first.png", first),
		pdfFile(),
		pngFile("b-second.png", second),
	})
	if err := e.thumbs.Run(t.Context(), e.job(t, m.ID, followup.KindThumbnail)); err != nil {
		t.Fatal(err)
	}
	if got := e.moc(t, m.ID); got.ThumbnailStatus != upload.ThumbnailReady {
		t.Fatalf("thumbnail %s, want ready", got.ThumbnailStatus)
	}
	stored, _ := e.getObject(t, upload.ThumbnailKey(stage, "u1", m.ID))
	for name, src := range map[string][]byte{"second image": second, "thumbnail file": cover} {
		other, err := e.thumbs.Generate(bytes.NewReader(src), "image/png")
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(stored, other) {
			t.Fatalf("the thumbnail was made from the %s", name)
		}
	}
	want, err := e.thumbs.Generate(bytes.NewReader(first), "image/png")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored, want) {
		t.Errorf("stored thumbnail (%d bytes) is not the first image's (%d bytes)", len(stored), len(want))
	}
	img, err := jpeg.Decode(bytes.NewReader(stored))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 300 || b.Dy() != 300 {
		t.Errorf("thumbnail %v, want 300x300", b)
	}
	if r, g, b, _ := img.At(150, 150).RGBA(); r>>8 < 200 || g>>8 > 60 || b>>8 > 60 {
		t.Errorf("thumbnail's centre %v, want the first image's red", img.At(150, 150))
	}
}

// solidPNG encodes a w x h PNG of one colour.
func solidPNG(t *testing.T, w, h int, c color.NRGBA) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, c)
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
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
