package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/mocbuilders/moc-upload/local/logbuf"
	"github.com/mocbuilders/moc-upload/shared/thumbnail"
	"github.com/mocbuilders/moc-upload/shared/upload"
	"github.com/mocbuilders/moc-upload/shared/webhook"
)

// After finalize: the thumbnail and the moc.finalized webhook, done by the
// Thumbnail and Webhook functions through the local Lambda invoke API.

const hookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

var hooks *hookReceiver

// delivery is one request the webhook receiver got; at is when it began.
type delivery struct {
	header http.Header
	body   []byte
	at     time.Time
}

// received is a delivery and whether the receiver has answered it yet.
type received struct {
	delivery
	answered bool
}

// hookReceiver is a real HTTP webhook receiver. Deliveries are kept per
// user (the payload's userId): each test has its own user, and may script
// how the receiver answers that user's n-th delivery.
type hookReceiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     map[string][]received
	answers map[string]func(n int) int
}

func newHookReceiver() *hookReceiver {
	h := &hookReceiver{got: map[string][]received{}, answers: map[string]func(int) int{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p struct {
			UserID string `json:"userId"`
		}
		_ = json.Unmarshal(body, &p)
		h.mu.Lock()
		h.got[p.UserID] = append(h.got[p.UserID], received{delivery: delivery{r.Header.Clone(), body, time.Now()}})
		n, answer := len(h.got[p.UserID]), h.answers[p.UserID]
		h.mu.Unlock()
		status := http.StatusNoContent
		if answer != nil {
			status = answer(n)
		}
		w.WriteHeader(status)
		h.mu.Lock()
		h.got[p.UserID][n-1].answered = true
		h.mu.Unlock()
	}))
	return h
}

// answer scripts the status of user's n-th delivery (1-based).
func (h *hookReceiver) answer(user string, fn func(n int) int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.answers[user] = fn
}

func (h *hookReceiver) deliveries(user string) []delivery {
	var out []delivery
	for _, r := range h.received(user) {
		out = append(out, r.delivery)
	}
	return out
}

func (h *hookReceiver) received(user string) []received {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]received(nil), h.got[user]...)
}

// waitDeliveries polls until the receiver holds at least n deliveries
// for user, or fails the test after 30 s; it returns them.
func (h *hookReceiver) waitDeliveries(t *testing.T, user string, n int) []received {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := h.received(user)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries after 30 s, want %d", len(got), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// captureDefaultLog sends slog's default logger, which the in-process
// functions log to, to a buffer (as text) until the test ends.
func captureDefaultLog(t *testing.T) *logbuf.Buffer {
	logs := &logbuf.Buffer{}
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(logs, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	return logs
}

// finished waits until the async functions started so far are done.
func finished(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := invokeAPI.Wait(ctx); err != nil {
		t.Fatalf("async functions still running: %v", err)
	}
}

func outboxRow(t *testing.T, mocID, kind string) (status string, attempts int) {
	t.Helper()
	if err := db.QueryRow(context.Background(), `SELECT status, attempts FROM outbox WHERE moc_id = $1 AND kind = $2`, mocID, kind).Scan(&status, &attempts); err != nil {
		t.Fatalf("outbox row %s of %s: %v", kind, mocID, err)
	}
	return status, attempts
}

// finalizeSession uploads one small PDF (and the given image, if any)
// through the API and finalizes; it returns the MOC and the user.
func finalizeSession(t *testing.T, image []byte, imageType string) (map[string]any, client) {
	t.Helper()
	user := userFor(t)
	c := newClient(t, user)
	pdf := pdfBytes(1000)
	files := []fileDecl{pdfDecl("a.pdf", len(pdf))}
	if image != nil {
		ext := strings.TrimPrefix(imageType, "image/")
		files = append(files, fileDecl{"image", "cover." + ext, len(image), imageType, ext})
	}
	sessionID := createSession(t, c, files...)
	for i, f := range files {
		id := registerFile(t, c, sessionID, f)["fileId"].(string)
		data := pdf
		if i == 1 {
			data = image
		}
		c.put(partPath(sessionID, id, 1), data).data(t, 200)
	}
	moc := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Follow Up"}).data(t, 201)
	return moc, c
}

// WH-HP-001: a signed moc.finalized delivery that verifies.
func TestWebhookSignedDelivery(t *testing.T) {
	moc, c := finalizeSession(t, nil, "")
	finished(t)
	got := hooks.deliveries(c.user)
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want 1", len(got))
	}
	d := got[0]
	if err := webhook.Verify(hookSecret, d.header, d.body); err != nil {
		t.Fatalf("signature does not verify: %v (headers %v)", err, d.header)
	}
	if err := webhook.Verify(hookSecret, d.header, append(bytes.Clone(d.body), ' ')); err == nil {
		t.Fatal("a changed body verifies")
	}
	var p map[string]any
	if err := json.Unmarshal(d.body, &p); err != nil {
		t.Fatal(err)
	}
	if p["event"] != "moc.finalized" || p["mocId"] != moc["id"] || p["userId"] != c.user || p["sessionId"] == "" || len(p) != 5 {
		t.Fatalf("payload %s", d.body)
	}
	if _, err := time.Parse(time.RFC3339Nano, p["timestamp"].(string)); err != nil {
		t.Fatalf("timestamp %v", p["timestamp"])
	}
	if status, _ := outboxRow(t, moc["id"].(string), "webhook"); status != "done" {
		t.Fatalf("outbox row %s", status)
	}
}

// A receiver that fails twice then answers gets 3 deliveries of the same
// event (one webhook-id), spaced by the base delay (50 ms here) and twice
// that: the Webhook function's WARN lines announce exactly those waits,
// and the deliveries came at least that far apart.
func TestWebhookRetried(t *testing.T) {
	logs := captureDefaultLog(t)
	user := userFor(t)
	hooks.answer(user, func(n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	moc, _ := finalizeSession(t, nil, "")
	finished(t)
	got := hooks.deliveries(user)
	if len(got) != 3 {
		t.Fatalf("%d deliveries, want 3", len(got))
	}
	id := got[0].header.Get(webhook.HeaderID)
	if id == "" {
		t.Fatal("no webhook-id")
	}
	for i, d := range got {
		if d.header.Get(webhook.HeaderID) != id || !bytes.Equal(d.body, got[0].body) {
			t.Fatalf("delivery %d is not the same event: webhook-id %s (first %s), body %s", i+1, d.header.Get(webhook.HeaderID), id, d.body)
		}
		if err := webhook.Verify(hookSecret, d.header, d.body); err != nil {
			t.Fatalf("delivery %d: %v", i+1, err)
		}
	}
	if gap := got[1].at.Sub(got[0].at); gap < 50*time.Millisecond {
		t.Errorf("second delivery %v after the first, want ≥ 50ms", gap)
	}
	if gap := got[2].at.Sub(got[1].at); gap < 100*time.Millisecond {
		t.Errorf("third delivery %v after the second, want ≥ 100ms", gap)
	}
	// The waits as the sender computed them: base, 2×base, exactly.
	var waits []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "mocId="+moc["id"].(string)) {
			wait := "none"
			if _, rest, ok := strings.Cut(line, " retryIn="); ok {
				wait, _, _ = strings.Cut(rest, " ")
			}
			waits = append(waits, wait)
		}
	}
	if want := []string{"50ms", "100ms"}; !slices.Equal(waits, want) {
		t.Errorf("WARN lines announce retryIn %v, want %v:\n%s", waits, want, logs.String())
	}
	if status, _ := outboxRow(t, moc["id"].(string), "webhook"); status != "done" {
		t.Fatalf("outbox row %s", status)
	}
}

// A receiver that always fails: 4 deliveries, the give-up logged at ERROR
// with the MOC id, finalize unaffected.
func TestWebhookExhausted(t *testing.T) {
	logs := captureDefaultLog(t)
	user := userFor(t)
	hooks.answer(user, func(int) int { return http.StatusServiceUnavailable })
	moc, _ := finalizeSession(t, nil, "")
	finished(t)
	if n := len(hooks.deliveries(user)); n != 4 {
		t.Fatalf("%d deliveries, want 4", n)
	}
	if status, _ := outboxRow(t, moc["id"].(string), "webhook"); status != "failed" {
		t.Fatalf("outbox row %s, want failed", status)
	}
	var errorLines int
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, moc["id"].(string)) {
			errorLines++
		}
	}
	if errorLines == 0 {
		t.Fatalf("no ERROR line names the MOC:\n%s", logs.String())
	}
}

// Finalize does not wait for the receiver: when finalize's 201 is in
// hand, the receiver holds exactly that delivery and has not answered it
// (it answers only when the test lets it: a receiver that sleeps as long
// as it is asked to); the delivery then completes in one attempt.
func TestWebhookSlowReceiver(t *testing.T) {
	user := userFor(t)
	release := make(chan struct{})
	// Runs even when the test fails early, before the receiver (shared by
	// the package) closes: a handler still blocked would hang its Close.
	let := sync.OnceFunc(func() { close(release) })
	t.Cleanup(let)
	hooks.answer(user, func(int) int {
		<-release
		return http.StatusOK
	})
	moc, _ := finalizeSession(t, nil, "") // 201, or the test fails
	// The invoke is asynchronous: the delivery may be on its way still.
	got := hooks.waitDeliveries(t, user, 1)
	if len(got) != 1 {
		t.Fatalf("%d deliveries while the receiver holds the first, want 1", len(got))
	}
	var p struct {
		MocID string `json:"mocId"`
	}
	if err := json.Unmarshal(got[0].body, &p); err != nil || p.MocID != moc["id"] {
		t.Fatalf("held delivery %s is not the finalized MOC's %v (%v)", got[0].body, moc["id"], err)
	}
	if got[0].answered {
		t.Fatal("the receiver answered before finalize did: finalize waited for it")
	}
	let()
	finished(t)
	got = hooks.received(user)
	if len(got) != 1 || !got[0].answered {
		t.Fatalf("%d deliveries (first answered: %v), want 1, answered", len(got), len(got) > 0 && got[0].answered)
	}
	if status, _ := outboxRow(t, moc["id"].(string), "webhook"); status != "done" {
		t.Fatalf("outbox row %s", status)
	}
}

func withThumbnails(t *testing.T) {
	st.App.Service.ThumbnailsEnabled = true
	t.Cleanup(func() { st.App.Service.ThumbnailsEnabled = false })
}

// pattern is a w×h picture, red in its top-left quarter, blue elsewhere.
func pattern(w, h int) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.RGBA{0, 0, 255, 255}
			if x < w/2 && y < h/2 {
				c = color.RGBA{255, 0, 0, 255}
			}
			img.Set(x, y, c)
		}
	}
	return img
}

// thumbnailOf reads the MOC until its thumbnail is no longer pending and
// returns it decoded ("" status: still pending).
func thumbnailOf(t *testing.T, c client, mocID string) (string, image.Image) {
	t.Helper()
	finished(t)
	m := c.json("GET", "/api/mocs/"+mocID, nil).data(t, 200)
	status, _ := m["thumbnailStatus"].(string)
	if status != upload.ThumbnailReady {
		if m["thumbnailUrl"] != nil {
			t.Fatalf("thumbnailUrl %v while %s", m["thumbnailUrl"], status)
		}
		return status, nil
	}
	img, err := jpeg.Decode(bytes.NewReader(download(t, m["thumbnailUrl"].(string))))
	if err != nil {
		t.Fatalf("thumbnail is not a JPEG: %v", err)
	}
	return status, img
}

// TH-HP-001: a 300x300 JPEG of the first image, in S3 at
// {stage}/moc-instructions/{user}/{moc}/thumbnail.jpg, ready through GetMoc.
func TestThumbnailReady(t *testing.T) {
	withThumbnails(t)
	var buf bytes.Buffer
	if err := png.Encode(&buf, pattern(640, 480)); err != nil {
		t.Fatal(err)
	}
	moc, c := finalizeSession(t, buf.Bytes(), "image/png")
	if moc["thumbnailStatus"] != "pending" || moc["thumbnailUrl"] != nil {
		t.Fatalf("finalize: thumbnail %v %v, want pending and null", moc["thumbnailStatus"], moc["thumbnailUrl"])
	}
	status, img := thumbnailOf(t, c, moc["id"].(string))
	if status != "ready" || img.Bounds().Dx() != 300 || img.Bounds().Dy() != 300 {
		t.Fatalf("thumbnail %s %v", status, img)
	}
	if r, _, b, _ := img.At(20, 20).RGBA(); r>>8 < 200 || b>>8 > 60 {
		t.Fatalf("top-left of the thumbnail is not red: %v", img.At(20, 20))
	}
	key := "test/moc-instructions/" + c.user + "/" + moc["id"].(string) + "/thumbnail.jpg"
	out, err := s3c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(st.Config.S3Bucket), Key: aws.String(key)})
	if err != nil || aws.ToString(out.ContentType) != "image/jpeg" {
		t.Fatalf("thumbnail object %s: %v %v", key, err, out)
	}
}

// A corrupt image (right magic bytes, broken body): thumbnail failed,
// finalize and the MOC otherwise fine.
func TestThumbnailCorrupt(t *testing.T) {
	withThumbnails(t)
	broken := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0x42}, 500)...)
	moc, c := finalizeSession(t, broken, "image/png")
	if status, _ := thumbnailOf(t, c, moc["id"].(string)); status != "failed" {
		t.Fatalf("thumbnail status %s, want failed", status)
	}
	if m := c.json("GET", "/api/mocs/"+moc["id"].(string), nil).data(t, 200); len(m["files"].([]any)) != 2 || m["title"] != "Follow Up" {
		t.Fatalf("moc: %v", m)
	}
}

// A MOC without images has no thumbnail work.
func TestThumbnailNoImage(t *testing.T) {
	withThumbnails(t)
	moc, c := finalizeSession(t, nil, "")
	if moc["thumbnailStatus"] != "none" || moc["thumbnailUrl"] != nil {
		t.Fatalf("moc: %v %v", moc["thumbnailStatus"], moc["thumbnailUrl"])
	}
	var n int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE moc_id = $1 AND kind = 'thumbnail'`, moc["id"]).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d thumbnail rows, %v", n, err)
	}
	if status, _ := thumbnailOf(t, c, moc["id"].(string)); status != "none" {
		t.Fatalf("status %s", status)
	}
}

// The process dies between the commit and the invokes: nothing is lost;
// the Sweeper, invoked as its schedule would, finds the work and both the
// thumbnail and the webhook happen.
func TestSweeperAfterCrash(t *testing.T) {
	withThumbnails(t)
	dispatcher := st.App.Service.FollowUps
	st.App.Service.FollowUps = nil // the invokes never happen
	var buf bytes.Buffer
	if err := png.Encode(&buf, pattern(64, 64)); err != nil {
		t.Fatal(err)
	}
	moc, c := finalizeSession(t, buf.Bytes(), "image/png")
	st.App.Service.FollowUps = dispatcher
	mocID := moc["id"].(string)
	finished(t)
	if n := len(hooks.deliveries(c.user)); n != 0 {
		t.Fatalf("%d deliveries before the sweep", n)
	}
	// The redispatch timeout (300 s) has passed.
	if _, err := db.Exec(context.Background(), `UPDATE outbox SET dispatched_at = now() - interval '1 hour' WHERE moc_id = $1`, mocID); err != nil {
		t.Fatal(err)
	}
	lc := lambda.New(lambda.Options{BaseEndpoint: aws.String(st.Config.LambdaEndpoint), Region: "us-east-1",
		Credentials: aws.AnonymousCredentials{}})
	out, err := lc.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("Sweeper"), Payload: []byte(`{}`)})
	if err != nil || out.FunctionError != nil {
		t.Fatalf("invoke Sweeper: %v %s", err, out.Payload)
	}
	var res map[string]int
	if err := json.Unmarshal(out.Payload, &res); err != nil || res["redispatched"] < 2 {
		t.Fatalf("Sweeper answered %s (%v)", out.Payload, err)
	}
	if status, _ := thumbnailOf(t, c, mocID); status != "ready" {
		t.Fatalf("thumbnail %s after the sweep", status)
	}
	if n := len(hooks.deliveries(c.user)); n != 1 {
		t.Fatalf("%d deliveries after the sweep, want 1", n)
	}
	for _, kind := range []string{"thumbnail", "webhook"} {
		if status, attempts := outboxRow(t, mocID, kind); status != "done" || attempts != 1 { // only the sweep invoked
			t.Fatalf("%s row %s after %d dispatches", kind, status, attempts)
		}
	}
}

// TH-HP-001 for every image type the upload rules accept: JPEG with an
// EXIF orientation, WebP and HEIC. The object in S3 is exactly what the
// thumbnail package makes of the uploaded bytes (its unit tests check the
// orientation and colours), 300x300.
func TestThumbnailTypes(t *testing.T) {
	withThumbnails(t)
	for _, tc := range []struct{ file, mimeType string }{
		{"exif6.jpg", "image/jpeg"},
		{"quad.webp", "image/webp"},
		{"quad-irot3.heic", "image/heic"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("..", "..", "shared", "thumbnail", "testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			want, err := thumbnail.Generate(bytes.NewReader(src), tc.mimeType)
			if err != nil {
				t.Fatal(err)
			}
			moc, c := finalizeSession(t, src, tc.mimeType)
			status, img := thumbnailOf(t, c, moc["id"].(string))
			if status != "ready" || img.Bounds().Dx() != 300 || img.Bounds().Dy() != 300 {
				t.Fatalf("thumbnail %s %v", status, img)
			}
			key := "test/moc-instructions/" + c.user + "/" + moc["id"].(string) + "/thumbnail.jpg"
			out, err := s3c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(st.Config.S3Bucket), Key: aws.String(key)})
			if err != nil {
				t.Fatal(err)
			}
			defer out.Body.Close()
			if got, _ := io.ReadAll(out.Body); !bytes.Equal(got, want) {
				t.Fatalf("stored thumbnail (%d bytes) differs from the package's (%d bytes)", len(got), len(want))
			}
		})
	}
}
