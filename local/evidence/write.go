package evidence

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/coder/websocket"

	"github.com/mocbuilders/moc-upload/local/devstack"
	"github.com/mocbuilders/moc-upload/local/logbuf"
	"github.com/mocbuilders/moc-upload/local/slowblob"
	"github.com/mocbuilders/moc-upload/shared/telemetry/telemetrytest"
)

// hookSecret signs the run's webhooks: the fixed test secret of `make
// http` (not for a deployed stack).
const hookSecret = "whsec_YCfk1+iNbnQB8d7tjVBM+w86J/8QFeaW8aJV/c0jp9U="

// Timing settings: the finalize of a 20-file session (a 1 MiB PDF and 19
// images of 256 KiB, uploaded but not completed, so finalize completes
// them) with s3Delay added to every S3 request finalize makes, through the
// HTTP API of a stack with FINALIZE_CONCURRENCY=1 and of one with the
// default, timingRounds times each, interleaved.
const (
	timingFiles  = 20
	timingRounds = 5
	s3Delay      = 50 * time.Millisecond
)

// maxBatchBytes is the run's MAX_BATCH_BYTES: above BU-HP-001's batch
// (10.8 MB), below BU-ERR-001's (15.7 MB).
const maxBatchBytes = 12_000_000

// step is one test id's part of the document.
type step struct {
	id, title, what string
	exchanges       []exchange
	extra           []block // what is not an HTTP exchange: events, logs, spans, objects
	checks          []checkResult
}

type block struct{ heading, lang, text string }

type checkResult struct {
	ok   bool
	what string
}

func (s *step) check(ok bool, format string, args ...any) {
	s.checks = append(s.checks, checkResult{ok, fmt.Sprintf(format, args...)})
}

func (s *step) passed() bool {
	for _, c := range s.checks {
		if !c.ok {
			return false
		}
	}
	return len(s.checks) > 0
}

// logCapture keeps the stack's log lines (text), for the finalize
// validation's INFO line.
type logCapture struct{ logbuf.Buffer }

func (l *logCapture) lines(substr ...string) []string {
	var out []string
next:
	for _, line := range strings.Split(l.String(), "\n") {
		for _, s := range substr {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

// Write runs the seed story against a local stack it starts and writes the
// document to path. It fails (after writing) when a check failed.
func Write(ctx context.Context, path string) error {
	logs := &logCapture{}
	slog.SetDefault(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	rcv := newReceiver(hookSecret)
	defer rcv.Close()
	user := "evidence-" + time.Now().UTC().Format("20060102-150405")
	env := map[string]string{
		"ENABLE_THUMBNAIL_GENERATION": "true",
		"MOC_FINALIZE_WEBHOOK_URL":    rcv.URL + "/hooks",
		"MOC_FINALIZE_WEBHOOK_SECRET": hookSecret,
		"WEBHOOK_RETRY_BASE_DELAY_MS": "200",
		"OTEL_EXPORTER_OTLP_ENDPOINT": rcv.URL,
		"OTEL_SERVICE_NAME":           "moc-upload",
		"MAX_BATCH_BYTES":             fmt.Sprint(maxBatchBytes),
		"UPLOAD_IMAGE_MAX_COUNT":      fmt.Sprint(timingFiles - 1),
		"UPLOAD_RATE_LIMIT_PER_DAY":   "1000",
		"STAGE":                       "dev",
	}
	fmt.Fprintln(os.Stderr, "moc-evidence: starting the local stack")
	st, err := StartStack(ctx, env, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	r := &run{ctx: ctx, st: st, rcv: rcv, logs: logs, user: user}
	r.s3 = s3.New(s3.Options{
		BaseEndpoint: aws.String(st.Config.S3Endpoint), Region: st.Config.S3Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(st.Config.S3AccessKey, st.Config.S3SecretKey, ""),
	})
	steps := []func() (*step, error){
		r.seedRows, r.batchUpload, r.batchTooLarge, r.webSocket, r.thumbnail, r.webhook, r.traced,
		r.parallelValidation, r.checksum, r.resumedFinalize, r.checksumMismatch, r.timings,
	}
	var done []*step
	for _, fn := range steps {
		s, err := fn()
		if s != nil {
			done = append(done, s)
			fmt.Fprintf(os.Stderr, "moc-evidence: %s %s\n", s.id, map[bool]string{true: "ok", false: "FAILED"}[s.passed()])
		}
		if err != nil {
			if s == nil {
				return err
			}
			s.check(false, "the step could not finish: %v", err)
		}
	}
	doc := render(done, r)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "moc-evidence: wrote", path)
	var failed []string
	for _, s := range done {
		if !s.passed() {
			failed = append(failed, s.id)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("checks failed in %s (see %s)", strings.Join(failed, ", "), path)
	}
	return nil
}

type run struct {
	ctx    context.Context
	st     *Stack
	rcv    *receiver
	logs   *logCapture
	s3     *s3.Client
	user   string
	timing []timingRow

	// What later steps read of earlier ones.
	batchSession, thumbMoc, csSession, csMoc string
}

func (r *run) client(log *[]exchange) client { return client{base: r.st.HTTP, user: r.user, log: log} }

// The bytes the story uploads.
var (
	tinyPDF = []byte("%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n" +
		"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
	frontPNG = mustPNG(4, 4)
)

func mustPNG(w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{R: uint8(x * 255 / max(w-1, 1)), G: uint8(y * 255 / max(h-1, 1)), B: 128, A: 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// pdfOf is n bytes that start like a PDF (random after the header).
func pdfOf(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	copy(b, "%PDF-1.7\n")
	return b
}

func md5b64(b []byte) string {
	s := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

func decl(category, name string, size int, typ, ext string) map[string]any {
	return map[string]any{"category": category, "name": name, "size": size, "type": typ, "ext": ext}
}

func pdfDecl(name string, size int) map[string]any {
	return decl("instruction", name, size, "application/pdf", "pdf")
}

func pngDecl(name string, size int) map[string]any {
	return decl("image", name, size, "image/png", "png")
}

const sessions = "/api/mocs/uploads/sessions"

// session creates a session declaring files and registers each; it
// returns the session id and the file ids, in order.
func (r *run) session(c client, files ...map[string]any) (string, []string, error) {
	x, err := c.call(r.ctx, "POST", sessions, map[string]any{"files": files})
	if err != nil {
		return "", nil, err
	}
	id := str(x.Parsed, "data.sessionId")
	if x.Status != 201 || id == "" {
		return "", nil, fmt.Errorf("create session: %d %s", x.Status, x.RespBody)
	}
	var ids []string
	for _, f := range files {
		x, err := c.call(r.ctx, "POST", sessions+"/"+id+"/files", f)
		if err != nil {
			return "", nil, err
		}
		if x.Status != 201 {
			return "", nil, fmt.Errorf("register %v: %d %s", f["name"], x.Status, x.RespBody)
		}
		ids = append(ids, str(x.Parsed, "data.fileId"))
	}
	return id, ids, nil
}

func (r *run) putPart(c client, sessionID, fileID string, n int, data binary) (*exchange, error) {
	return c.call(r.ctx, "PUT", fmt.Sprintf("%s/%s/files/%s/parts/%d", sessions, sessionID, fileID, n), data,
		"Content-MD5", md5b64(data.data))
}

func (r *run) finalize(c client, sessionID, title string) (*exchange, error) {
	return c.call(r.ctx, "POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": title})
}

// poll calls check every 100 ms until it is true or d has passed.
func poll(ctx context.Context, d time.Duration, check func() bool) bool {
	end := time.Now().Add(d)
	for {
		if check() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// flushTrace flushes the stack's exporter and waits for the trace of the
// finalize span with mocId, with want span names in it.
func (r *run) flushTrace(mocID string, want ...string) []telemetrytest.Span {
	var spans []telemetrytest.Span
	poll(r.ctx, 15*time.Second, func() bool {
		fctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		_ = r.st.Telemetry.Flush(fctx)
		cancel()
		spans = r.rcv.traces.Trace("moc.upload.finalize", "mocId", mocID)
		for _, w := range want {
			found := false
			for _, s := range spans {
				found = found || s.Name == w
			}
			if !found {
				return false
			}
		}
		return spans != nil
	})
	return spans
}

func (r *run) seedRows() (*step, error) {
	s := &step{id: "Seed", title: "The seed story's rows (make seed)",
		what: "`make seed` loads local/devstack/seed.sql: the seed story's session with a completed image file for " +
			"thumbnail testing, finalized into its MOC. The same Seed runs here; GetMoc reads that MOC as its owner."}
	if err := r.st.Seed(r.ctx); err != nil {
		return s, err
	}
	c := client{base: r.st.HTTP, user: devstack.SeedUserID, log: &s.exchanges}
	x, err := c.call(r.ctx, "GET", "/api/mocs/"+devstack.SeedMocID, nil)
	if err != nil {
		return s, err
	}
	s.check(x.Status == 200, "GET /api/mocs/%s: 200 (got %d)", devstack.SeedMocID, x.Status)
	files, _ := get(x.Parsed, "data.files").([]any)
	s.check(len(files) == 2, "the MOC has its instruction and its image (%d files)", len(files))
	s.check(str(x.Parsed, "data.files.0.mimeType") == "image/png", "its image is a completed PNG (%s)", str(x.Parsed, "data.files.0.mimeType"))
	return s, nil
}

func (r *run) batchUpload() (*step, error) {
	s := &step{id: "BU-HP-001", title: "Batch upload",
		what: "The three parts of castle.pdf (5 MiB, 5 MiB, 300 KiB) in one multipart/form-data POST …/parts/batch, each with its Content-MD5; then GetSession shows them."}
	c := r.client(&s.exchanges)
	p1, p2, p3 := pdfOf(5<<20), pdfOf(5<<20), pdfOf(300<<10)
	p2[0], p3[0] = 'x', 'y'
	size := len(p1) + len(p2) + len(p3)
	sessionID, ids, err := r.session(c, pdfDecl("castle.pdf", size))
	if err != nil {
		return s, err
	}
	f := form{boundary: "story-01727-batch"}
	for i, p := range [][]byte{p1, p2, p3} {
		name := fmt.Sprintf("part%d", i+1)
		f.parts = append(f.parts, formPart{name: name, filename: "castle.pdf." + name, contentMD5: md5b64(p), data: binary{name + " of castle.pdf", p}})
	}
	x, err := c.call(r.ctx, "POST", fmt.Sprintf("%s/%s/files/%s/parts/batch", sessions, sessionID, ids[0]), f)
	if err != nil {
		return s, err
	}
	s.check(x.Status == 200, "batch: 200 (got %d)", x.Status)
	parts, _ := get(x.Parsed, "data.parts").([]any)
	var etags []string
	for _, p := range parts {
		etags = append(etags, str(p, "etag"))
	}
	s.check(strings.Join(etags, ",") == strings.Join([]string{md5hex(p1), md5hex(p2), md5hex(p3)}, ","), "each part's ETag is the MD5 of its bytes")
	g, err := c.call(r.ctx, "GET", sessions+"/"+sessionID, nil)
	if err != nil {
		return s, err
	}
	up, _ := get(g.Parsed, "data.files.0.uploadedParts").([]any)
	s.check(len(up) == 3, "GetSession: castle.pdf has its 3 uploaded parts (%d)", len(up))
	r.batchSession = sessionID
	return s, nil
}

func (r *run) batchTooLarge() (*step, error) {
	s := &step{id: "BU-ERR-001", title: "Batch over MAX_BATCH_BYTES",
		what: fmt.Sprintf("Three 5 MiB parts of manual.pdf in one batch (about 15.7 MB) with MAX_BATCH_BYTES=%d: 413 PAYLOAD_TOO_LARGE from Content-Length, nothing stored.", maxBatchBytes)}
	c := r.client(&s.exchanges)
	sessionID, ids, err := r.session(c, pdfDecl("manual.pdf", 50<<20))
	if err != nil {
		return s, err
	}
	f := form{boundary: "story-01727-batch"}
	for i := range 3 {
		p := pdfOf(5 << 20)
		name := fmt.Sprintf("part%d", i+1)
		f.parts = append(f.parts, formPart{name: name, filename: "manual.pdf." + name, data: binary{name + " of manual.pdf", p}})
	}
	x, err := c.call(r.ctx, "POST", fmt.Sprintf("%s/%s/files/%s/parts/batch", sessions, sessionID, ids[0]), f)
	if err != nil {
		return s, err
	}
	s.check(x.Status == 413, "413 (got %d)", x.Status)
	s.check(str(x.Parsed, "error.code") == "PAYLOAD_TOO_LARGE", "error.code PAYLOAD_TOO_LARGE (%s)", str(x.Parsed, "error.code"))
	s.check(get(x.Parsed, "error.details.maxBatchBytes") == float64(maxBatchBytes), "details.maxBatchBytes %v", get(x.Parsed, "error.details.maxBatchBytes"))
	s.check(x.RespHeader.Get("X-Request-Id") != "" && x.RespHeader.Get("X-Request-Id") == str(x.Parsed, "correlationId"), "X-Request-Id = correlationId")
	g, err := c.call(r.ctx, "GET", sessions+"/"+sessionID, nil)
	if err != nil {
		return s, err
	}
	up, _ := get(g.Parsed, "data.files.0.uploadedParts").([]any)
	s.check(len(up) == 0, "GetSession: manual.pdf has no part (%d)", len(up))
	return s, nil
}

func (r *run) webSocket() (*step, error) {
	s := &step{id: "WS-HP-001", title: "Upload progress over WebSocket",
		what: "A WebSocket client follows the session while watch.pdf's two parts go through the API and the session is finalized."}
	c := r.client(&s.exchanges)
	p1, p2 := pdfOf(5<<20), pdfOf(300<<10)
	sessionID, ids, err := r.session(c, pdfDecl("watch.pdf", len(p1)+len(p2)))
	if err != nil {
		return s, err
	}
	wsURL := fmt.Sprintf("%s/?sessionId=%s&token=%s", r.st.WS, sessionID, r.user)
	dctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(dctx, wsURL, nil)
	if err != nil {
		return s, fmt.Errorf("connect %s: %w", wsURL, err)
	}
	defer conn.CloseNow()
	var mu sync.Mutex
	var events []string
	go func() {
		for {
			_, m, err := conn.Read(dctx)
			if err != nil {
				return
			}
			mu.Lock()
			events = append(events, string(m))
			mu.Unlock()
		}
	}()
	if _, err := r.putPart(c, sessionID, ids[0], 1, binary{"part 1 of watch.pdf", p1}); err != nil {
		return s, err
	}
	if _, err := r.putPart(c, sessionID, ids[0], 2, binary{"part 2 of watch.pdf", p2}); err != nil {
		return s, err
	}
	x, err := r.finalize(c, sessionID, "Story 01727 WS-HP-001 "+sessionID)
	if err != nil {
		return s, err
	}
	ok := poll(r.ctx, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events) > 0 && strings.Contains(events[len(events)-1], "upload.session.finalized")
	})
	_ = conn.Close(websocket.StatusNormalClosure, "done")
	mu.Lock()
	got := append([]string(nil), events...)
	mu.Unlock()
	var text strings.Builder
	fmt.Fprintf(&text, "connect %s\n", displayURL(wsURL, r.st.WS))
	for _, e := range got {
		fmt.Fprintf(&text, "< %s\n", e)
	}
	s.extra = append(s.extra, block{"WebSocket events received", "text", text.String()})
	s.check(x.Status == 201, "finalize 201 (got %d)", x.Status)
	s.check(ok && len(got) == 3, "three events, the last upload.session.finalized (%d)", len(got))
	if len(got) == 3 {
		s.check(strings.Contains(got[0], `"percentComplete":50`) && strings.Contains(got[1], `"percentComplete":100`), "parts at 50%% then 100%%")
		s.check(strings.Contains(got[2], str(x.Parsed, "data.id")), "the finalized event names the MOC")
	}
	return s, nil
}

func (r *run) thumbnail() (*step, error) {
	s := &step{id: "TH-HP-001", title: "Thumbnail generation",
		what: "A MOC with a 640x480 PNG: finalize answers thumbnailStatus pending; the Thumbnail function (invoked through the local Lambda Invoke API) makes a 300x300 JPEG under the MOC's key."}
	c := r.client(&s.exchanges)
	photo := mustPNG(640, 480)
	sessionID, ids, err := r.session(c, pdfDecl("tiny.pdf", len(tinyPDF)), pngDecl("photo.png", len(photo)))
	if err != nil {
		return s, err
	}
	if _, err := r.putPart(c, sessionID, ids[0], 1, binary{"tiny.pdf", tinyPDF}); err != nil {
		return s, err
	}
	if _, err := r.putPart(c, sessionID, ids[1], 1, binary{"photo.png (640x480)", photo}); err != nil {
		return s, err
	}
	x, err := r.finalize(c, sessionID, "Story 01727 TH-HP-001 "+sessionID)
	if err != nil {
		return s, err
	}
	mocID := str(x.Parsed, "data.id")
	r.thumbMoc = mocID
	s.check(x.Status == 201 && str(x.Parsed, "data.thumbnailStatus") == "pending", "finalize 201 with thumbnailStatus pending")
	var read *exchange
	var quiet []exchange
	poll(r.ctx, 30*time.Second, func() bool {
		y, err := client{base: r.st.HTTP, user: r.user, log: &quiet}.call(r.ctx, "GET", "/api/mocs/"+mocID, nil)
		return err == nil && str(y.Parsed, "data.thumbnailStatus") != "pending"
	})
	if read, err = c.call(r.ctx, "GET", "/api/mocs/"+mocID, nil); err != nil {
		return s, err
	}
	thumbURL := str(read.Parsed, "data.thumbnailUrl")
	s.check(str(read.Parsed, "data.thumbnailStatus") == "ready" && thumbURL != "", "GetMoc: thumbnailStatus ready with a thumbnailUrl")
	if thumbURL == "" {
		return s, nil
	}
	j, err := c.call(r.ctx, "GET", thumbURL, nil)
	if err != nil {
		return s, err
	}
	jb, _ := get(j.Parsed, "bytes").([]byte)
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(jb))
	s.check(j.Status == 200 && err == nil && cfg.Width == 300 && cfg.Height == 300, "the thumbnailUrl serves a 300x300 JPEG (%dx%d, %v)", cfg.Width, cfg.Height, err)
	key := objectKey(thumbURL, r.st.Config.S3Bucket)
	head, err := r.s3.HeadObject(r.ctx, &s3.HeadObjectInput{Bucket: aws.String(r.st.Config.S3Bucket), Key: aws.String(key)})
	if err != nil {
		return s, fmt.Errorf("HeadObject %s: %w", key, err)
	}
	obj := fmt.Sprintf("bucket         %s\nkey            %s\nContent-Type   %s\nContent-Length %d\nETag           %s\nLast-Modified  %s\nimage          JPEG %dx%d (SOF marker), first bytes % X\n",
		r.st.Config.S3Bucket, key, aws.ToString(head.ContentType), aws.ToInt64(head.ContentLength), aws.ToString(head.ETag),
		aws.ToTime(head.LastModified).UTC().Format(time.RFC3339), cfg.Width, cfg.Height, jb[:min(3, len(jb))])
	s.extra = append(s.extra, block{"The thumbnail's object in S3 (HeadObject)", "text", obj})
	s.check(strings.HasSuffix(key, "/"+mocID+"/thumbnail.jpg") && aws.ToString(head.ContentType) == "image/jpeg", "object %s is image/jpeg", key)
	return s, nil
}

func (r *run) webhook() (*step, error) {
	s := &step{id: "WH-HP-001", title: "moc.finalized webhook",
		what: "Every finalize is followed by a moc.finalized webhook, signed per Standard Webhooks; the run's receiver verifies each signature. The delivery of TH-HP-001's MOC, then the receiver's whole log."}
	var ds []delivery
	poll(r.ctx, 20*time.Second, func() bool { ds = r.rcv.deliveriesFor(r.thumbMoc); return len(ds) > 0 })
	s.check(len(ds) == 1, "exactly one delivery for MOC %s (%d)", r.thumbMoc, len(ds))
	if len(ds) > 0 {
		d := ds[0]
		s.check(d.Verified == nil, "its signature verifies (%v)", d.Verified)
		s.check(strings.HasPrefix(d.Header.Get("Webhook-Signature"), "v1,"), "webhook-signature v1,…")
		s.check(strings.Contains(string(d.Body), `"event":"moc.finalized"`), "event moc.finalized")
	}
	var log strings.Builder
	for _, d := range r.rcv.allDeliveries() {
		verified := "verified"
		if d.Verified != nil {
			verified = "NOT verified: " + d.Verified.Error()
		}
		fmt.Fprintf(&log, "%s POST %s  (%s)\n", d.At.Format(time.RFC3339Nano), d.Path, verified)
		for _, h := range []string{"Content-Type", "User-Agent", "Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"} {
			fmt.Fprintf(&log, "  %s: %s\n", h, d.Header.Get(h))
		}
		fmt.Fprintf(&log, "  %s\n\n", indent(d.Body))
	}
	s.extra = append(s.extra, block{"The webhook receiver's log (every delivery of the run so far)", "text", log.String()})
	return s, nil
}

func (r *run) traced() (*step, error) {
	s := &step{id: "OT-HP-001", title: "The finalize trace",
		what: "The stack exports its spans over OTLP/HTTP to the run's receiver. The trace of TH-HP-001's finalize: the HTTP API's server span, moc.upload.finalize, its validate.session, validate.files (one validate.file per file), create.moc and create.files, the database and S3 calls under them, and the follow-up work."}
	spans := r.flushTrace(r.thumbMoc, "validate.session", "validate.files", "create.moc")
	s.extra = append(s.extra, block{"Spans (name [kind, start … end from the root, duration, status] attributes)", "text", spanTree(spans)})
	var fin *telemetrytest.Span
	for i := range spans {
		if spans[i].Name == "moc.upload.finalize" {
			fin = &spans[i]
		}
	}
	s.check(fin != nil, "one moc.upload.finalize span with mocId %s", r.thumbMoc)
	if fin == nil {
		return s, nil
	}
	children := map[string]int{}
	var parent *telemetrytest.Span
	for i, sp := range spans {
		if sp.ParentID == fin.SpanID {
			children[sp.Name]++
		}
		if sp.SpanID == fin.ParentID {
			parent = &spans[i]
		}
	}
	s.check(children["validate.session"] == 1 && children["validate.files"] == 1 && children["create.moc"] == 1,
		"children validate.session, validate.files, create.moc (%v)", children)
	s.check(parent != nil && parent.Kind == 2 && parent.Attrs["http.route"] == "/api/mocs/uploads/finalize", "its parent is the HTTP API's server span of the route")
	return s, nil
}

func (r *run) parallelValidation() (*step, error) {
	s := &step{id: "PV-HP-001", title: "Parallel validation",
		what: "A session of six files (tiny.pdf and five PNGs): finalize validates them at the same time. The trace shows six validate.file spans that overlap; the service logs the validation's duration, file count and mode at INFO."}
	c := r.client(&s.exchanges)
	files := []map[string]any{pdfDecl("tiny.pdf", len(tinyPDF))}
	for i := 1; i <= 5; i++ {
		files = append(files, pngDecl(fmt.Sprintf("front-%d.png", i), len(frontPNG)))
	}
	sessionID, ids, err := r.session(c, files...)
	if err != nil {
		return s, err
	}
	for i, id := range ids {
		data := binary{"tiny.pdf", tinyPDF}
		if i > 0 {
			data = binary{fmt.Sprintf("front-%d.png", i), frontPNG}
		}
		if _, err := r.putPart(c, sessionID, id, 1, data); err != nil {
			return s, err
		}
	}
	x, err := r.finalize(c, sessionID, "Story 01727 PV-HP-001 "+sessionID)
	if err != nil {
		return s, err
	}
	s.check(x.Status == 201, "finalize 201 (got %d)", x.Status)
	spans := r.flushTrace(str(x.Parsed, "data.id"), "validate.files", "validate.file")
	var files6 []telemetrytest.Span
	var tree []telemetrytest.Span
	for _, sp := range spans {
		if sp.Name == "validate.file" || sp.Name == "validate.files" || sp.Name == "moc.upload.finalize" {
			tree = append(tree, sp)
		}
		if sp.Name == "validate.file" {
			files6 = append(files6, sp)
		}
	}
	s.extra = append(s.extra, block{"The validation's spans", "text", spanTree(tree)})
	overlap := false
	for i := range files6 {
		for j := range files6 {
			if i != j && files6[i].Start.Before(files6[j].End) && files6[j].Start.Before(files6[i].End) {
				overlap = true
			}
		}
	}
	s.check(len(files6) == 6, "six validate.file spans (%d)", len(files6))
	s.check(overlap, "validate.file spans overlap in time (files validated at once)")
	lines := r.logs.lines("finalize checked", sessionID)
	s.extra = append(s.extra, block{"The service's INFO log line", "text", strings.Join(lines, "\n")})
	s.check(len(lines) == 1 && strings.Contains(lines[0], "mode=parallel") && strings.Contains(lines[0], "fileCount=6"), "one INFO line with mode=parallel fileCount=6")
	return s, nil
}

func (r *run) checksum() (*step, error) {
	s := &step{id: "CS-HP-001", title: "Checksum validation",
		what: "tiny.pdf registered with its true MD5 and SHA-256: finalize hashes the stored object, both match, the MOC is created."}
	c := r.client(&s.exchanges)
	sum := sha256.Sum256(tinyPDF)
	f := pdfDecl("tiny.pdf", len(tinyPDF))
	f["checksums"] = map[string]string{"md5": md5hex(tinyPDF), "sha256": hex.EncodeToString(sum[:])}
	sessionID, ids, err := r.session(c, f)
	if err != nil {
		return s, err
	}
	if _, err := r.putPart(c, sessionID, ids[0], 1, binary{"tiny.pdf", tinyPDF}); err != nil {
		return s, err
	}
	x, err := r.finalize(c, sessionID, "Story 01727 CS-HP-001 "+sessionID)
	if err != nil {
		return s, err
	}
	s.check(x.Status == 201, "finalize 201 (got %d)", x.Status)
	r.csSession, r.csMoc = sessionID, str(x.Parsed, "data.id")
	return s, nil
}

func (r *run) resumedFinalize() (*step, error) {
	s := &step{id: "RF-HP-001", title: "Resumable, idempotent finalize",
		what: "CS-HP-001's finalize sent again: 200 with the same MOC, idempotent and resumed; no second MOC."}
	c := r.client(&s.exchanges)
	x, err := r.finalize(c, r.csSession, "Story 01727 CS-HP-001 "+r.csSession)
	if err != nil {
		return s, err
	}
	s.check(x.Status == 200, "200 (got %d)", x.Status)
	s.check(str(x.Parsed, "data.id") == r.csMoc, "the same MOC %s", r.csMoc)
	s.check(get(x.Parsed, "data.idempotent") == true && get(x.Parsed, "data.resumed") == true, "idempotent and resumed")
	return s, nil
}

func (r *run) checksumMismatch() (*step, error) {
	s := &step{id: "CS-ERR-001", title: "Checksum mismatch",
		what: "tiny.pdf registered with the MD5 of other bytes: finalize answers 400 CHECKSUM_MISMATCH with the file and reason checksum, and creates nothing."}
	c := r.client(&s.exchanges)
	f := pdfDecl("tiny.pdf", len(tinyPDF))
	f["checksums"] = map[string]string{"md5": md5hex(frontPNG)}
	sessionID, ids, err := r.session(c, f)
	if err != nil {
		return s, err
	}
	if _, err := r.putPart(c, sessionID, ids[0], 1, binary{"tiny.pdf", tinyPDF}); err != nil {
		return s, err
	}
	x, err := r.finalize(c, sessionID, "Story 01727 CS-ERR-001 "+sessionID)
	if err != nil {
		return s, err
	}
	s.check(x.Status == 400 && str(x.Parsed, "error.code") == "CHECKSUM_MISMATCH", "400 CHECKSUM_MISMATCH (%d %s)", x.Status, str(x.Parsed, "error.code"))
	s.check(str(x.Parsed, "error.details.files.0.reason") == "checksum" && str(x.Parsed, "error.details.files.0.fileId") == ids[0], "details.files names tiny.pdf with reason checksum")
	g, err := c.call(r.ctx, "GET", sessions+"/"+sessionID, nil)
	if err != nil {
		return s, err
	}
	s.check(str(g.Parsed, "data.status") == "active" && get(g.Parsed, "data.mocId") == nil, "the session is still active, without a MOC")
	return s, nil
}

type timingRow struct {
	round      int
	mode       string
	wall       time.Duration
	serverLine string
}

// timings finalizes 20-file sessions through two more stacks on the same
// database and bucket, one with FINALIZE_CONCURRENCY=1 and one with the
// default, each with s3Delay added to every S3 request.
func (r *run) timings() (*step, error) {
	s := &step{id: "PV-HP-001 timings", title: "Sequential vs parallel finalize",
		what: fmt.Sprintf("The finalize of a %d-file session (a 1 MiB PDF and %d PNG-headed images of 256 KiB, uploaded but not completed, so finalize completes each) "+
			"through the HTTP API of a stack with FINALIZE_CONCURRENCY=1 (sequential) and of one with the default (parallel), both on this run's database and bucket, "+
			"with %s added to every S3 request finalize makes (a deployed S3's round trip), %d rounds interleaved. "+
			"Wall time is the client's (the HTTP request); the server's own figure is its INFO log line.", timingFiles, timingFiles-1, s3Delay, timingRounds)}
	c := r.st.Config
	base := map[string]string{
		"DATABASE_URL": c.DatabaseURL, "S3_ENDPOINT": c.S3Endpoint, "S3_BUCKET": c.S3Bucket,
		"AWS_ACCESS_KEY_ID": c.S3AccessKey, "AWS_SECRET_ACCESS_KEY": c.S3SecretKey, "AWS_REGION": c.S3Region,
		"UPLOAD_IMAGE_MAX_COUNT": fmt.Sprint(timingFiles - 1), "UPLOAD_RATE_LIMIT_PER_DAY": "1000", "STAGE": "dev",
	}
	stacks := map[string]*Stack{}
	for _, mode := range []string{"sequential", "parallel"} {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		if mode == "sequential" {
			env["FINALIZE_CONCURRENCY"] = "1"
		}
		st, err := StartStack(r.ctx, env, nil)
		if err != nil {
			return s, err
		}
		defer st.Close()
		st.App.Service.Blob = slowblob.Blob{Blob: st.App.Service.Blob, Delay: s3Delay}
		stacks[mode] = st
	}
	var quiet []exchange
	up := client{base: r.st.HTTP, user: r.user + "-timing", log: &quiet}
	pdf := pdfOf(1 << 20)
	img := make([]byte, 256<<10)
	_, _ = rand.Read(img)
	copy(img, frontPNG[:8])
	files := []map[string]any{pdfDecl("f0.pdf", len(pdf))}
	for i := 1; i < timingFiles; i++ {
		files = append(files, pngDecl(fmt.Sprintf("f%d.png", i), len(img)))
	}
	for round := 1; round <= timingRounds; round++ {
		modes := []string{"sequential", "parallel"}
		if round%2 == 0 {
			modes = []string{"parallel", "sequential"}
		}
		for _, mode := range modes {
			sessionID, ids, err := r.session(up, files...)
			if err != nil {
				return s, err
			}
			for i, id := range ids {
				data := binary{"f0.pdf", pdf}
				if i > 0 {
					data = binary{"image", img}
				}
				if _, err := r.putPart(up, sessionID, id, 1, data); err != nil {
					return s, err
				}
			}
			fc := client{base: stacks[mode].HTTP, user: up.user, log: &quiet}
			start := time.Now()
			x, err := r.finalize(fc, sessionID, fmt.Sprintf("Timing %s %d %s", mode, round, sessionID))
			if err != nil {
				return s, err
			}
			wall := time.Since(start)
			if x.Status != 201 {
				return s, fmt.Errorf("timing finalize (%s): %d %s", mode, x.Status, x.RespBody)
			}
			line := strings.Join(r.logs.lines("finalize checked", sessionID), "\n")
			r.timing = append(r.timing, timingRow{round, mode, wall, line})
		}
	}
	med := map[string]time.Duration{}
	for _, mode := range []string{"sequential", "parallel"} {
		var ds []time.Duration
		for _, t := range r.timing {
			if t.mode == mode {
				ds = append(ds, t.wall)
			}
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		med[mode] = ds[len(ds)/2]
	}
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "| round | mode | finalize, wall (client) | the server's INFO line |\n|---|---|---|---|\n")
	for _, t := range r.timing {
		fmt.Fprintf(&tbl, "| %d | %s | %s | `%s` |\n", t.round, t.mode, ms(t.wall), serverFields(t.serverLine))
	}
	fmt.Fprintf(&tbl, "\nMedian: sequential %s, parallel %s: parallel is %.1fx faster.\n", ms(med["sequential"]), ms(med["parallel"]),
		float64(med["sequential"])/float64(max(med["parallel"], 1)))
	s.extra = append(s.extra, block{"Figures", "", tbl.String()})
	s.check(med["parallel"] < med["sequential"], "parallel is faster than sequential (median %s vs %s)", ms(med["parallel"]), ms(med["sequential"]))
	seqLines, parLines := 0, 0
	for _, t := range r.timing {
		if strings.Contains(t.serverLine, "mode=sequential") {
			seqLines++
		}
		if strings.Contains(t.serverLine, "mode=parallel") {
			parLines++
		}
	}
	s.check(seqLines == timingRounds && parLines == timingRounds, "each finalize logged its mode (%d sequential, %d parallel)", seqLines, parLines)
	return s, nil
}

// serverFields keeps the log line's message and attributes, not its time.
func serverFields(line string) string {
	if i := strings.Index(line, "msg="); i >= 0 {
		return line[i:]
	}
	return line
}

func gitDescribe() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		rev += " with uncommitted changes"
	}
	return rev
}

func render(steps []*step, r *run) string {
	var b strings.Builder
	b.WriteString("<!-- GENERATED by `make evidence` (local/cmd/moc-evidence, local/evidence): do not edit by hand; run `make evidence` again. -->\n\n")
	b.WriteString("# STORY-01727 evidence: performance and observability\n\n")
	b.WriteString("**Generated, never hand-edited.** `make evidence` starts a local stack (PostgreSQL, versitygw S3, the HTTP, WebSocket and Lambda Invoke APIs, " +
		"the same Lambda handlers as AWS), a webhook receiver and an OTLP/HTTP trace receiver, runs every seed test of the story against them, " +
		"and writes this file from what it saw. Ids, times and URLs change with every run.\n\n")
	fmt.Fprintf(&b, "- Run: %s, commit %s, %s %s/%s.\n", time.Now().UTC().Format(time.RFC3339), gitDescribe(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "- Stack settings: ENABLE_THUMBNAIL_GENERATION=true, MOC_FINALIZE_WEBHOOK_URL=<receiver>/hooks (signed with the test secret of `make http`), "+
		"OTEL_EXPORTER_OTLP_ENDPOINT=<receiver>, MAX_BATCH_BYTES=%d, no AWS payload limits (LOCAL_AWS_PAYLOAD_LIMITS=off), user `%s`.\n", maxBatchBytes, r.user)
	b.WriteString("- The same tests as requests with assertions: [`__http__/story-01727-performance-observability.http`](../../__http__/story-01727-performance-observability.http) (`make http`, `make http-ci`).\n\n")
	b.WriteString("## Summary\n\n| test | what | result |\n|---|---|---|\n")
	for _, s := range steps {
		res := "pass"
		if !s.passed() {
			res = "**FAIL**"
		}
		fmt.Fprintf(&b, "| [%s](#%s) | %s | %s |\n", s.id, anchor(s.id+" — "+s.title), s.title, res)
	}
	for _, s := range steps {
		fmt.Fprintf(&b, "\n## %s — %s\n\n%s\n\nChecks:\n\n", s.id, s.title, s.what)
		for _, c := range s.checks {
			mark := "✓"
			if !c.ok {
				mark = "✗"
			}
			fmt.Fprintf(&b, "- %s %s\n", mark, c.what)
		}
		for i, x := range s.exchanges {
			fmt.Fprintf(&b, "\n### %d. %s %s → %d (%s)\n\n", i+1, x.Method, shortURL(x.URL), x.Status, ms(x.Elapsed))
			b.WriteString("```http\n")
			fmt.Fprintf(&b, "%s %s\n", x.Method, x.URL)
			writeHeaders(&b, x.ReqHeader, "Authorization", "Content-Type", "Content-MD5")
			if x.ReqBody != "" {
				fmt.Fprintf(&b, "\n%s\n", x.ReqBody)
			}
			b.WriteString("```\n\n```http\n")
			fmt.Fprintf(&b, "HTTP/1.1 %d %s\n", x.Status, http.StatusText(x.Status))
			writeHeaders(&b, x.RespHeader, "Content-Type", "Content-Length", "ETag", "X-Correlation-Id", "X-Request-Id", "Retry-After")
			if x.RespBody != "" {
				fmt.Fprintf(&b, "\n%s\n", x.RespBody)
			}
			b.WriteString("```\n")
		}
		for _, e := range s.extra {
			fmt.Fprintf(&b, "\n### %s\n\n", e.heading)
			if e.lang == "" {
				fmt.Fprintf(&b, "%s\n", e.text)
				continue
			}
			fmt.Fprintf(&b, "```%s\n%s\n```\n", e.lang, strings.TrimRight(e.text, "\n"))
		}
	}
	return b.String()
}

func writeHeaders(b *strings.Builder, h http.Header, names ...string) {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			fmt.Fprintf(b, "%s: %s\n", n, v)
		}
	}
}

// shortURL keeps a heading readable: a presigned URL without its query.
func shortURL(u string) string {
	if i := strings.Index(u, "?"); i >= 0 && strings.HasPrefix(u, "http") {
		return u[:i] + "?…"
	}
	return u
}

// anchor is GitHub's heading anchor of a heading's text.
func anchor(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}
