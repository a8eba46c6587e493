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

// delivery is one request the webhook receiver got.
type delivery struct {
	header http.Header
	body   []byte
	at     time.Time
}

// hookReceiver is a real HTTP webhook receiver. Deliveries are kept per
// user (the payload's userId): each test has its own user, and may script
// how the receiver answers that user's n-th delivery.
type hookReceiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     map[string][]delivery
	answers map[string]func(n int) int
}

func newHookReceiver() *hookReceiver {
	h := &hookReceiver{got: map[string][]delivery{}, answers: map[string]func(int) int{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p struct {
			UserID string `json:"userId"`
		}
		_ = json.Unmarshal(body, &p)
		h.mu.Lock()
		h.got[p.UserID] = append(h.got[p.UserID], delivery{r.Header.Clone(), body, time.Now()})
		n, answer := len(h.got[p.UserID]), h.answers[p.UserID]
		h.mu.Unlock()
		status := http.StatusNoContent
		if answer != nil {
			status = answer(n)
		}
		w.WriteHeader(status)
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
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]delivery(nil), h.got[user]...)
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
// event, spaced by the base delay (50 ms here) and twice that.
func TestWebhookRetried(t *testing.T) {
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
	for i, d := range got {
		if d.header.Get(webhook.HeaderID) != got[0].header.Get(webhook.HeaderID) || !bytes.Equal(d.body, got[0].body) {
			t.Fatalf("delivery %d is not the same event: %s %s", i+1, d.header.Get(webhook.HeaderID), d.body)
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
	if status, _ := outboxRow(t, moc["id"].(string), "webhook"); status != "done" {
		t.Fatalf("outbox row %s", status)
	}
}

// A receiver that always fails: 4 deliveries, the give-up logged at ERROR
// with the MOC id, finalize unaffected.
func TestWebhookExhausted(t *testing.T) {
	logs := &logbuf.Buffer{}
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(logs, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
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

// Finalize does not wait for the receiver: it answers while the
// receiver still holds the delivery, which then completes in one attempt.
func TestWebhookSlowReceiver(t *testing.T) {
	user := userFor(t)
	release := make(chan struct{})
	hooks.answer(user, func(int) int {
		<-release // the receiver "sleeps" until the test lets it answer
		return http.StatusOK
	})
	moc, _ := finalizeSession(t, nil, "")
	// Finalize answered; the delivery is still being held by the receiver.
	if n := len(hooks.deliveries(user)); n > 1 {
		t.Fatalf("%d deliveries before the receiver answered", n)
	}
	close(release)
	finished(t)
	if n := len(hooks.deliveries(user)); n != 1 {
		t.Fatalf("%d deliveries, want 1", n)
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
