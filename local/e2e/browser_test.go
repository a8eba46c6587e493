//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/mocbuilders/moc-upload/local/gateway"
	"github.com/mocbuilders/moc-upload/local/stack"
)

// A real browser against the stack: headless Chromium loads a page from an
// origin that is neither the API's nor S3's (testdata/browser_upload.html)
// and uploads as the old web client does. This checks that the API's CORS
// configuration (the gateway's, played as API Gateway applies
// template.yaml's) and the bucket's CORS rule (versitygw's, as S3 applies
// template.yaml's UploadBucket rule) give a browser what it needs: its
// preflights pass, it reads the API's answers, X-Correlation-Id and S3's
// ETags. A page from an origin they do not allow reads none of it.
//
// The test builds its own gateway, with AWS's payload limits and CORS for
// the page's exact origin only (a deployed CorsAllowOrigins naming the web
// app), so that another origin can be refused. The stack's bucket allows
// "*" (LOCAL_CORS_ORIGINS is unset in the tests); a second bucket allows the
// page's origin only, for the refusal on the S3 side.
//
// Chromium runs once per page with --dump-dom: under --virtual-time-budget
// the page's clock stands still while a request is in flight, so the DOM is
// printed once the page's last request has been answered and its script has
// written its results. Each run is bounded (browserTimeout); on timeout its
// process group is killed, and after every run any process left that names
// the run's temporary home is killed too (Chromium's crash handler runs in
// its own session).

// chromiumPackage is the Debian package that provides chromiumBin;
// scripts/deps.sh installs it when it can.
const (
	chromiumPackage = "chromium"
	chromiumBin     = "/usr/bin/chromium"
	browserTimeout  = 2 * time.Minute
)

// chromium returns the browser to run: $CHROMIUM, else /usr/bin/chromium;
// without either the test is skipped.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			t.Fatalf("CHROMIUM=%s is not an executable: fix or unset it", p)
		}
		return p
	}
	if _, err := os.Stat(chromiumBin); err != nil {
		t.Skipf("no headless browser: %s is missing; install Debian's %s package (make deps does, as root) or set CHROMIUM", chromiumBin, chromiumPackage)
	}
	return chromiumBin
}

func TestBrowserCORS(t *testing.T) {
	bin := chromium(t)
	ctx := context.Background()
	// A user of its own per run: finalize refuses a second MOC with the same
	// title, and the daily session limit counts per user.
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	user := userFor(t) + "-" + run
	otherUser := userFor(t) + "-other-" + run
	pdf := pdfBytes(5*mib + 4321) // two parts: 5 MiB and the rest
	img := pngBytes(t)

	allowed, other := newBrowserPage(t), newBrowserPage(t)
	allowed.files = map[string][]byte{"/fixture/castle.pdf": pdf, "/fixture/front.png": img}

	// The API as deployed with CorsAllowOrigins set to the web app's origin,
	// and with AWS's payload limits (parts must go to S3).
	gw, err := st.Gateway(gateway.Options{PayloadLimits: true, CORSOrigins: []string{allowed.URL}})
	if err != nil {
		t.Fatal(err)
	}
	rec := &requestRecorder{next: gw}
	api := httptest.NewServer(rec)
	t.Cleanup(api.Close)

	// The stack's bucket has the CORS rule for LOCAL_CORS_ORIGINS, "*" in
	// the tests. A second bucket allows only the page's origin, so that S3
	// refusing another origin is seen in the browser too.
	c := st.Config
	probeBucket := "e2e-browser-cors"
	if err := stack.EnsureBucket(ctx, c.S3Endpoint, c.S3AccessKey, c.S3SecretKey, c.S3Region, probeBucket); err != nil {
		t.Fatal(err)
	}
	if err := stack.PutBucketCORS(ctx, c.S3Endpoint, c.S3AccessKey, c.S3SecretKey, c.S3Region, probeBucket, []string{allowed.URL}); err != nil {
		t.Fatal(err)
	}
	probeBody := "probe from a browser " + run
	probeURL := func(key string) string {
		t.Helper()
		req, err := s3.NewPresignClient(s3c).PresignPutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(probeBucket), Key: aws.String(key), ContentType: aws.String("text/plain"),
		})
		if err != nil {
			t.Fatal(err)
		}
		return req.URL
	}
	allowedKey, otherKey := "browser/allowed-"+run+".txt", "browser/other-"+run+".txt"
	allowed.setConfig(map[string]any{
		"mode": "upload", "api": api.URL, "user": user,
		"probeUrl": probeURL(allowedKey), "probeBody": probeBody,
	})
	other.setConfig(map[string]any{
		"mode": "blocked", "api": api.URL, "user": otherUser,
		"someSessionId": "00000000-0000-4000-8000-000000000000",
		"probeUrl":      probeURL(otherKey), "probeBody": probeBody,
	})
	// Chromium refuses some ports outright (ERR_UNSAFE_PORT); the free ports
	// the stack picks could be among them.
	ports := browserPorts(t, api.URL, c.S3Endpoint, allowed.URL, other.URL)

	t.Run("allowed origin uploads", func(t *testing.T) {
		res := loadPage(t, bin, allowed.URL+"/", ports)
		if res.Origin != allowed.URL || res.Mode != "upload" {
			t.Fatalf("page ran at %q in mode %q", res.Origin, res.Mode)
		}
		want := []struct {
			name   string
			status int
		}{
			{"createSession", 201}, {"registerPdf", 201}, {"registerPng", 201}, {"putPng", 200},
			{"presignParts", 200}, {"putPart1", 200}, {"putPart2", 200}, {"putProbe", 200},
		}
		if len(res.Steps) != len(want) {
			t.Fatalf("the page did %d steps, want %d: %s", len(res.Steps), len(want), res.raw)
		}
		steps := map[string]browserStep{}
		for i, w := range want {
			s := res.Steps[i]
			if s.Name != w.name || s.Status != w.status || s.Error != "" {
				t.Fatalf("step %d: %s %d %q, want %s %d: %s", i+1, s.Name, s.Status, s.Error, w.name, w.status, res.raw)
			}
			// The API's answers are readable, X-Correlation-Id (exposed)
			// included.
			if s.Path != "" && s.CorrelationID == "" {
				t.Errorf("%s: the page cannot read X-Correlation-Id", s.Name)
			}
			steps[s.Name] = s
		}
		// The PNG went as the old upload manager sends it: the one header the
		// API listed, Content-Type, with the file's type.
		reg := steps["registerPng"].data(t)
		if h, _ := reg["uploadHeaders"].(map[string]any); len(h) != 1 || h["Content-Type"] != "image/png" {
			t.Fatalf("uploadHeaders = %v", reg["uploadHeaders"])
		}
		if s := steps["putPng"]; s.ContentType != "image/png" || s.Size != len(img) {
			t.Fatalf("putPng sent %d bytes as %q", s.Size, s.ContentType)
		}
		// Every ETag was readable (exposed by the bucket's CORS rule) and is
		// the MD5 of the bytes sent.
		wantETags := map[string][]byte{
			"putPng": img, "putPart1": pdf[:5*mib], "putPart2": pdf[5*mib:], "putProbe": []byte(probeBody),
		}
		for name, b := range wantETags {
			s := steps[name]
			if s.Size != len(b) {
				t.Errorf("%s sent %d bytes, want %d", name, s.Size, len(b))
			}
			if got, want := strings.Trim(s.ETag, `"`), browserMD5(b); got != want {
				t.Errorf("%s: the page read ETag %q, want %q (MD5 of the bytes sent)", name, s.ETag, want)
			}
		}
		if parts, _ := steps["presignParts"].data(t)["parts"].([]any); len(parts) != 2 {
			t.Fatalf("presigned parts: %v", parts)
		}
		if t.Failed() {
			t.FailNow()
		}
		// The requests were cross-origin: the API saw the page's Origin and
		// answered its preflights.
		if n := rec.count(allowed.URL, http.MethodOptions, 204); n == 0 {
			t.Fatalf("no preflight from %s reached the API: %v", allowed.URL, rec.all())
		}

		// What the service and S3 hold is what the page sent.
		c := client{t: t, base: api.URL, user: user}
		files := sessionFiles(t, c, res.SessionID)
		if f := files[res.PngFileID]; f["status"] != "completed" {
			t.Fatalf("PNG PUT whole by the browser: %v", f)
		}
		pdfFile := files[res.PdfFileID]
		up, _ := pdfFile["uploadedParts"].([]any)
		if len(up) != 2 {
			t.Fatalf("PDF parts PUT by the browser: %v", pdfFile)
		}
		for _, p := range up {
			p := p.(map[string]any)
			n := int(p["partNumber"].(float64))
			if p["etag"] != strings.Trim(steps["putPart"+strconv.Itoa(n)].ETag, `"`) {
				t.Fatalf("part %d: the session has ETag %v, the browser read %q", n, p["etag"], steps["putPart"+strconv.Itoa(n)].ETag)
			}
		}
		finalizeAndCheckBytes(t, c, res.SessionID, "Browser Castle", map[string][]byte{res.PdfFileID: pdf, res.PngFileID: img})
		if got := browserObject(t, probeBucket, allowedKey); string(got) != probeBody {
			t.Fatalf("probe object holds %q, want %q", got, probeBody)
		}
	})

	t.Run("other origin is refused", func(t *testing.T) {
		res := loadPage(t, bin, other.URL+"/", ports)
		if res.Origin != other.URL || res.Mode != "blocked" || len(res.Steps) != 3 {
			t.Fatalf("page at %q in mode %q: %s", res.Origin, res.Mode, res.raw)
		}
		// fetch and XHR fail as on a network error: the page reads no
		// status, no header, no body.
		for _, s := range res.Steps {
			if s.Error == "" || s.Status != 0 || s.Body != nil || s.Text != "" || s.CorrelationID != "" || s.ETag != "" {
				t.Errorf("%s from %s: the page read status %d, body %v %q, error %q; want a CORS failure", s.Name, other.URL, s.Status, s.Body, s.Text, s.Error)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		// The preflighted POST never reached the function: the gateway
		// answered its preflight without CORS headers, and no session exists.
		if n := rec.count(other.URL, http.MethodOptions, 204); n == 0 {
			t.Errorf("no preflight from %s reached the API: %v", other.URL, rec.all())
		}
		if n := rec.count(other.URL, http.MethodPost, 0); n != 0 {
			t.Errorf("%d POSTs from %s reached the API", n, other.URL)
		}
		var sessions int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM upload_sessions WHERE user_id = $1`, otherUser).Scan(&sessions); err != nil {
			t.Fatal(err)
		}
		if sessions != 0 {
			t.Errorf("%d sessions created from %s", sessions, other.URL)
		}
		// The simple GET did reach the API, which answered; the browser kept
		// the answer from the page.
		if n := rec.count(other.URL, http.MethodGet, 401); n != 1 {
			t.Errorf("GETs from %s answered 401: %d, want 1: %v", other.URL, n, rec.all())
		}
		// S3 refused the preflight of the PUT: nothing stored.
		_, err := s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(probeBucket), Key: aws.String(otherKey)})
		if err == nil {
			t.Errorf("the PUT from %s stored %s", other.URL, otherKey)
		}
	})
}

// browserPage is the test's web app: another origin than the API and S3.
type browserPage struct {
	*httptest.Server
	files  map[string][]byte // path → bytes the page fetches and uploads
	mu     sync.Mutex
	config []byte
}

func newBrowserPage(t *testing.T) *browserPage {
	t.Helper()
	page, err := os.ReadFile(filepath.Join("testdata", "browser_upload.html"))
	if err != nil {
		t.Fatal(err)
	}
	p := &browserPage{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		switch {
		case r.URL.Path == "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write(page)
		case r.URL.Path == "/config.json":
			p.mu.Lock()
			cfg := p.config
			p.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(cfg)
		case p.files[r.URL.Path] != nil:
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write(p.files[r.URL.Path])
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *browserPage) setConfig(cfg map[string]any) {
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(err)
	}
	p.mu.Lock()
	p.config = b
	p.mu.Unlock()
}

// pageResults is what the page writes into #results.
type pageResults struct {
	Done      bool          `json:"done"`
	Error     string        `json:"error"`
	Mode      string        `json:"mode"`
	Origin    string        `json:"origin"`
	SessionID string        `json:"sessionId"`
	PdfFileID string        `json:"pdfFileId"`
	PngFileID string        `json:"pngFileId"`
	Steps     []browserStep `json:"steps"`
	raw       string
}

type browserStep struct {
	Name          string         `json:"name"`
	Method        string         `json:"method"`
	Path          string         `json:"path"`
	Status        int            `json:"status"`
	Error         string         `json:"error"`
	CorrelationID string         `json:"correlationId"`
	Body          map[string]any `json:"body"`
	Text          string         `json:"text"`
	ETag          string         `json:"etag"`
	Size          int            `json:"size"`
	ContentType   string         `json:"contentType"`
}

// data is the success envelope's data of an API answer the page read.
func (s browserStep) data(t *testing.T) map[string]any {
	t.Helper()
	d, ok := s.Body["data"].(map[string]any)
	if !ok || s.Body["success"] != true {
		t.Fatalf("%s: %v", s.Name, s.Body)
	}
	return d
}

var resultsRE = regexp.MustCompile(`(?s)<pre id="results">(.*?)</pre>`)

// loadPage runs headless Chromium on pageURL and returns what the page
// wrote into #results.
func loadPage(t *testing.T, bin, pageURL string, ports []string) pageResults {
	t.Helper()
	start := time.Now()
	dom := runChromium(t, bin, pageURL, ports)
	t.Logf("Chromium on %s: %v", pageURL, time.Since(start).Round(10*time.Millisecond))
	m := resultsRE.FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no #results in the page's DOM:\n%s", clipForLog(dom, 4000))
	}
	res := pageResults{raw: html.UnescapeString(m[1])}
	if err := json.Unmarshal([]byte(res.raw), &res); err != nil {
		t.Fatalf("#results is not JSON (%v): %s", err, clipForLog(res.raw, 4000))
	}
	if !res.Done || res.Error != "" {
		t.Fatalf("the page's script did not finish cleanly: %s", clipForLog(res.raw, 4000))
	}
	return res
}

// runChromium prints pageURL's DOM once its script is done, within
// browserTimeout, and leaves no process behind.
func runChromium(t *testing.T, bin, pageURL string, ports []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	// Its own home: the profile, caches and crash reports stay out of the
	// user's, and every process of this run names it.
	home := t.TempDir()
	cmd := exec.CommandContext(ctx, bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--disable-breakpad", "--disable-extensions",
		"--explicitly-allowed-ports="+strings.Join(ports, ","),
		"--user-data-dir="+filepath.Join(home, "profile"),
		// Virtual time: stands still while requests are in flight, so this
		// only bounds what the page does between them (nothing).
		"--virtual-time-budget=60000",
		"--dump-dom", pageURL)
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"XDG_CACHE_HOME="+filepath.Join(home, ".cache"))
	// Chromium's processes share its process group; on timeout all go.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.Process != nil {
		// What is left of the group (nothing, normally).
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	killed, left := stopProcessesNaming(home)
	if len(killed) > 0 {
		t.Logf("killed Chromium processes left behind: %v", killed)
	}
	if len(left) > 0 {
		t.Errorf("could not stop Chromium processes %v", left)
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		t.Fatalf("Chromium did not finish %s within %v (killed). stderr:\n%s", pageURL, browserTimeout, chromiumLog(stderr.String()))
	case err != nil:
		t.Fatalf("Chromium on %s: %v. stderr:\n%s", pageURL, err, chromiumLog(stderr.String()))
	}
	return stdout.String()
}

// stopProcessesNaming kills the processes whose command line contains s
// (this run's Chromium: its crash handler leaves the process group); it
// returns those it killed and those still there after a few seconds.
func stopProcessesNaming(s string) (killed, left []int) {
	deadline := time.Now().Add(5 * time.Second)
	seen := map[int]bool{}
	for {
		pids := processesNaming(s)
		if len(pids) == 0 || time.Now().After(deadline) {
			return killed, pids
		}
		for _, pid := range pids {
			if !seen[pid] {
				seen[pid] = true
				killed = append(killed, pid)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// chromiumLog is the end of Chromium's stderr without its complaints about
// the missing D-Bus, which every headless run here prints.
func chromiumLog(stderr string) string {
	var keep []string
	for _, line := range strings.Split(stderr, "\n") {
		if !strings.Contains(line, "dbus/") && strings.TrimSpace(line) != "" {
			keep = append(keep, line)
		}
	}
	s := strings.Join(keep, "\n")
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return s
}

func processesNaming(s string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		// A zombie's command line is empty: it is gone already.
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && bytes.Contains(b, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// requestRecorder notes every request the API gets: origin, method, status.
type requestRecorder struct {
	next http.Handler
	mu   sync.Mutex
	reqs []recordedRequest
}

type recordedRequest struct {
	Origin, Method, Path string
	Status               int
}

func (r *requestRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	sw := &recordingWriter{ResponseWriter: w, status: http.StatusOK}
	r.next.ServeHTTP(sw, req)
	r.mu.Lock()
	r.reqs = append(r.reqs, recordedRequest{req.Header.Get("Origin"), req.Method, req.URL.Path, sw.status})
	r.mu.Unlock()
}

// count is how many requests from origin with method got status (0: any).
func (r *requestRecorder) count(origin, method string, status int) int {
	n := 0
	for _, q := range r.all() {
		if q.Origin == origin && q.Method == method && (status == 0 || q.Status == status) {
			n++
		}
	}
	return n
}

func (r *requestRecorder) all() []recordedRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recordedRequest(nil), r.reqs...)
}

type recordingWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *recordingWriter) WriteHeader(status int) {
	if !w.wrote {
		w.wrote, w.status = true, status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func browserPorts(t *testing.T, urls ...string) []string {
	t.Helper()
	var ports []string
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil || u.Port() == "" {
			t.Fatalf("no port in %q", s)
		}
		ports = append(ports, u.Port())
	}
	return ports
}

func browserObject(t *testing.T, bucket, key string) []byte {
	t.Helper()
	out, err := s3c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(out.Body); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func browserMD5(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

func clipForLog(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("… (%d bytes more)", len(s)-n)
}
