package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mocbuilders/moc-upload/local/stack"
	"github.com/mocbuilders/moc-upload/shared/webhook"
)

// The process dies between finalize's commit and its invokes, for real: a
// moc-local process finalizes a MOC with an image and a webhook while its
// LAMBDA_ENDPOINT is a listener that reads the Invoke requests and never
// answers; once both invokes are in flight, the process gets SIGKILL. A
// new moc-local on the same database and bucket, with its own Invoke API,
// its Sweeper's schedule every second and OUTBOX_REDISPATCH_AFTER_SECONDS
// short, does both pieces of work, without anyone invoking anything.
// (TestSweeperAfterCrash plays the same story inside the test process.)
func TestCrashBetweenCommitAndInvoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs moc-local twice")
	}
	ctx := context.Background()
	bin := mocLocalBinary(t)

	// moc-local gets its own database in the stack's PostgreSQL cluster and
	// its own bucket on the stack's S3 server: its Sweeper sees only its
	// own outbox.
	dbName := "crash_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
	dbURL, err := stack.CreateDatabase(ctx, st.AdminDBURL, dbName)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stack.DropDatabase(context.Background(), st.AdminDBURL, dbName); err != nil {
			t.Errorf("drop the test's database: %v", err)
		}
	})
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	receiver := newHookReceiver() // keeps the deliveries by user: the test's user has one MOC
	t.Cleanup(receiver.Close)
	hole := newBlackHole(t)
	const bucket = "crash-uploads"
	c := st.Config
	env := map[string]string{
		"DATABASE_URL":                dbURL,
		"S3_ENDPOINT":                 c.S3Endpoint,
		"AWS_ACCESS_KEY_ID":           c.S3AccessKey,
		"AWS_SECRET_ACCESS_KEY":       c.S3SecretKey,
		"AWS_REGION":                  c.S3Region,
		"S3_BUCKET":                   bucket,
		"STAGE":                       "test",
		"ENABLE_THUMBNAIL_GENERATION": "true",
		"MOC_FINALIZE_WEBHOOK_URL":    receiver.URL + "/hooks/moc-finalized",
		"MOC_FINALIZE_WEBHOOK_SECRET": crashSecret,
		"WEBHOOK_RETRY_BASE_DELAY_MS": "50",
	}

	// 1. Finalize on a process whose invokes hang, and kill it once they
	// are in flight: the commit has happened, the dispatch is not recorded.
	first := map[string]string{"LAMBDA_ENDPOINT": hole.URL, "SWEEP_INTERVAL_SECONDS": "off"}
	p1 := startCrashProcess(t, bin, "first", env, first)
	user := userFor(t)
	cl := client{t: t, base: p1.base, user: user}
	var buf bytes.Buffer
	if err := png.Encode(&buf, pattern(640, 480)); err != nil {
		t.Fatal(err)
	}
	img, pdf := buf.Bytes(), pdfBytes(1000)
	files := []fileDecl{pdfDecl("a.pdf", len(pdf)), pngDecl("cover.png", len(img))}
	sessionID := createSession(t, cl, files...)
	for i, f := range files {
		id := registerFile(t, cl, sessionID, f)["fileId"].(string)
		cl.put(partPath(sessionID, id, 1), [][]byte{pdf, img}[i]).data(t, 200)
	}
	finalized := make(chan string, 1) // what became of the finalize request
	go func() {
		body, _ := json.Marshal(map[string]any{"uploadSessionId": sessionID, "title": "Crash"})
		req, _ := http.NewRequest("POST", p1.base+"/api/mocs/uploads/finalize", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+user)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			finalized <- "no answer: " + err.Error()
			return
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		finalized <- fmt.Sprintf("answered %d (%d bytes)", resp.StatusCode, len(raw))
	}()
	// Finalize invokes after its commit, both functions at once, and gives
	// up on them after followup.DefaultDispatchTimeout (3 s), recording the
	// failure: the kill must come before that.
	held := hole.waitFor(t, 60*time.Second, "Thumbnail", "Webhook")
	p1.kill(t)
	t.Logf("SIGKILL %v after the first invoke reached the Lambda endpoint", time.Since(hole.firstAt()).Round(time.Millisecond))
	if got := waitString(t, finalized, 10*time.Second, "the finalize request's end"); !strings.HasPrefix(got, "no answer") {
		t.Fatalf("finalize %s before the kill: the process was not killed between the commit and the invokes", got)
	}
	var mocID, thumbStatus string
	if err := pool.QueryRow(ctx, `SELECT id::text, thumbnail_status FROM moc_instructions WHERE upload_session_id = $1`, sessionID).
		Scan(&mocID, &thumbStatus); err != nil {
		t.Fatalf("the MOC of session %s after the kill: %v", sessionID, err)
	}
	if thumbStatus != "pending" {
		t.Fatalf("thumbnail_status %q after the kill, want pending", thumbStatus)
	}
	rows := crashOutbox(t, pool, mocID)
	for _, kind := range []string{"thumbnail", "webhook"} {
		r, ok := rows[kind]
		if !ok {
			t.Fatalf("no %s row in the outbox after the kill: %v", kind, rows)
		}
		// attempts 0 and no last_error: the dispatch never got recorded,
		// and dispatched_at is still the commit's.
		if r.status != "pending" || r.attempts != 0 || r.lastError != "" || !r.dispatched {
			t.Fatalf("%s row after the kill: %+v, want pending, never recorded as dispatched", kind, r)
		}
		if job := held[kindFunction[kind]]; job.OutboxID != r.id || job.MocID != mocID || job.Kind != kind {
			t.Fatalf("the %s invoke in flight carried %+v, want outbox row %s of MOC %s", kind, job, r.id, mocID)
		}
	}
	if n := len(receiver.deliveries(user)); n != 0 {
		t.Fatalf("%d webhook deliveries before the restart", n)
	}
	thumbKey := "test/moc-instructions/" + user + "/" + mocID + "/thumbnail.jpg"
	if _, err := s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(thumbKey)}); err == nil {
		t.Fatalf("thumbnail %s exists before the restart", thumbKey)
	}

	// 2. Restart with the stack's own Invoke API: the Sweeper's schedule
	// finds both rows overdue and dispatches them again.
	start := time.Now()
	p2 := startCrashProcess(t, bin, "second", env, map[string]string{
		"SWEEP_INTERVAL_SECONDS":          "1",
		"OUTBOX_REDISPATCH_AFTER_SECONDS": "3",
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		rows = crashOutbox(t, pool, mocID)
		if rows["thumbnail"].status != "pending" && rows["webhook"].status != "pending" && len(receiver.deliveries(user)) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("60 s after the restart: outbox %+v, %d webhook deliveries", rows, len(receiver.deliveries(user)))
		}
		select {
		case <-p2.done:
			t.Fatalf("the second moc-local exited: %v", p2.err)
		case <-time.After(100 * time.Millisecond): // polling the database
		}
	}
	t.Logf("both pieces of work done %v after the restart", time.Since(start).Round(10*time.Millisecond))
	for _, kind := range []string{"thumbnail", "webhook"} {
		// One dispatch: the Sweeper's (finalize's was never recorded).
		if r := rows[kind]; r.status != "done" || r.attempts != 1 || r.lastError != "" {
			t.Fatalf("%s row after the sweep: %+v, want done after 1 dispatch", kind, r)
		}
	}
	// The Sweeper did it: it logs each row it dispatches again.
	var swept []string
	for line := range strings.Lines(p2.output()) {
		if strings.Contains(line, "outbox row overdue: dispatching again") && strings.Contains(line, "mocId="+mocID) {
			swept = append(swept, line)
		}
	}
	if len(swept) != 2 {
		t.Fatalf("the second moc-local's Sweeper logged %d re-dispatches of MOC %s, want 2: %q", len(swept), mocID, swept)
	}

	got := receiver.deliveries(user)
	if len(got) != 1 {
		t.Fatalf("%d moc.finalized deliveries for MOC %s, want 1", len(got), mocID)
	}
	d := got[0]
	if err := webhook.Verify(crashSecret, d.header, d.body); err != nil {
		t.Fatalf("signature does not verify: %v (headers %v)", err, d.header)
	}
	if id := d.header.Get(webhook.HeaderID); id != rows["webhook"].id {
		t.Fatalf("webhook-id %q, want the outbox row's id %s", id, rows["webhook"].id)
	}
	var p map[string]any
	if err := json.Unmarshal(d.body, &p); err != nil {
		t.Fatal(err)
	}
	if p["event"] != "moc.finalized" || p["mocId"] != mocID || p["userId"] != user || p["sessionId"] != sessionID {
		t.Fatalf("payload %s", d.body)
	}

	cl.base = p2.base
	m := cl.json("GET", "/api/mocs/"+mocID, nil).data(t, 200)
	url, _ := m["thumbnailUrl"].(string)
	if m["thumbnailStatus"] != "ready" || url == "" {
		t.Fatalf("GetMoc after the sweep: thumbnailStatus %v, thumbnailUrl %v", m["thumbnailStatus"], m["thumbnailUrl"])
	}
	out, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(thumbKey)})
	if err != nil {
		t.Fatalf("thumbnail object %s: %v", thumbKey, err)
	}
	stored, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.ContentType) != "image/jpeg" {
		t.Fatalf("thumbnail object's Content-Type %q", aws.ToString(out.ContentType))
	}
	if served := download(t, url); !bytes.Equal(served, stored) {
		t.Fatalf("thumbnailUrl serves %d bytes, the object holds %d", len(served), len(stored))
	}
	thumb, err := jpeg.Decode(bytes.NewReader(stored))
	if err != nil {
		t.Fatalf("thumbnail is not a JPEG: %v", err)
	}
	if b := thumb.Bounds(); b.Dx() != 300 || b.Dy() != 300 {
		t.Fatalf("thumbnail %dx%d, want 300x300", b.Dx(), b.Dy())
	}
	if r, _, b, _ := thumb.At(20, 20).RGBA(); r>>8 < 200 || b>>8 > 60 {
		t.Fatalf("top-left of the thumbnail is not the picture's red: %v", thumb.At(20, 20))
	}
}

// crashSecret signs the test's webhooks (Standard Webhooks: whsec_ and a
// 24-byte key in base64).
const crashSecret = "whsec_Y3Jhc2gtdGVzdC1zZWNyZXQtMDEyMzQ1"

// kindFunction is the function each kind of outbox work is invoked as.
var kindFunction = map[string]string{"thumbnail": "Thumbnail", "webhook": "Webhook"}

// crashRow is an outbox row as the test checks it.
type crashRow struct {
	id, status, lastError string
	attempts              int
	dispatched            bool // dispatched_at is set
}

// crashOutbox returns the MOC's outbox rows by kind.
func crashOutbox(t *testing.T, pool *pgxpool.Pool, mocID string) map[string]crashRow {
	t.Helper()
	rs, err := pool.Query(context.Background(), `SELECT kind, id::text, status, attempts, coalesce(last_error, ''), dispatched_at IS NOT NULL
		FROM outbox WHERE moc_id = $1`, mocID)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	rows := map[string]crashRow{}
	for rs.Next() {
		var kind string
		var r crashRow
		if err := rs.Scan(&kind, &r.id, &r.status, &r.attempts, &r.lastError, &r.dispatched); err != nil {
			t.Fatal(err)
		}
		rows[kind] = r
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// mocLocalBinary builds moc-local into a folder of the test, or returns
// $MOC_LOCAL_BIN.
func mocLocalBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("MOC_LOCAL_BIN"); bin != "" {
		return bin
	}
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	goCmd, err := stack.GoCommand()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "moc-local")
	build := exec.Command(goCmd, "build", "-o", bin, "./local/cmd/moc-local")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build moc-local: %v\n%s", err, out)
	}
	return bin
}

// crashProcess is a moc-local process of the test.
type crashProcess struct {
	name string
	base string // http://host:port of its HTTP API
	cmd  *exec.Cmd
	log  string        // its stdout and stderr
	done chan struct{} // closed once it has exited
	err  error         // its exit, set before done is closed
}

// startCrashProcess starts moc-local serving on free ports with env and
// extra (and nothing of the test's own environment but PATH and TMPDIR),
// and waits until its HTTP API answers. It is interrupted, if still
// running, when t ends.
func startCrashProcess(t *testing.T, bin, name string, env, extra map[string]string) *crashProcess {
	t.Helper()
	dir := t.TempDir()
	port := func() string {
		p, err := stack.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		return "127.0.0.1:" + strconv.Itoa(p)
	}
	httpAddr := port()
	vars := []string{
		"PATH=" + os.Getenv("PATH"), "TMPDIR=" + os.TempDir(), "HOME=" + dir,
		"LOCAL_DATA_DIR=" + filepath.Join(dir, "data"),
		"LOCAL_HTTP_ADDR=" + httpAddr, "LOCAL_WS_ADDR=" + port(), "LOCAL_LAMBDA_ADDR=" + port(),
	}
	for _, m := range []map[string]string{env, extra} {
		for k, v := range m {
			vars = append(vars, k+"="+v)
		}
	}
	p := &crashProcess{name: name, base: "http://" + httpAddr, log: filepath.Join(dir, "moc-local.log"), done: make(chan struct{})}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin)
	p.cmd.Env = vars
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	// It gets SIGTERM should the test process die.
	if err := stack.StartChild(p.cmd); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		stack.StopChild(p.cmd, p.done, os.Interrupt, 30*time.Second)
		if t.Failed() {
			t.Logf("the %s moc-local's output:\n%s", name, benchTail(p.output(), 40))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequest("GET", p.base+"/api/mocs/uploads/sessions/00000000-0000-4000-8000-000000000000", nil)
		req.Header.Set("Authorization", "Bearer crash-probe")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("the %s moc-local did not answer within 60 s", name)
		}
		select {
		case <-p.done:
			t.Fatalf("the %s moc-local exited: %v", name, p.err)
		case <-time.After(100 * time.Millisecond): // polling its port
		}
	}
}

// kill sends the process SIGKILL and waits for it to end.
func (p *crashProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill the %s moc-local: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the %s moc-local still runs 10 s after SIGKILL", p.name)
	}
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the %s moc-local ended by itself (%v), not by the kill", p.name, p.err)
	}
}

func (p *crashProcess) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// waitString receives from ch within d.
func waitString(t *testing.T, ch <-chan string, d time.Duration, what string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(d):
		t.Fatalf("no %s within %v", what, d)
		return ""
	}
}

// heldJob is the payload of an Invoke request the black hole holds.
type heldJob struct {
	OutboxID string `json:"outboxId"`
	Kind     string `json:"kind"`
	MocID    string `json:"mocId"`
}

// blackHole is a Lambda endpoint that reads Invoke requests and never
// answers them: the caller hangs in Invoke until its own deadline, or
// until it dies.
type blackHole struct {
	URL     string
	ln      net.Listener
	mu      sync.Mutex
	held    map[string]heldJob // by function name
	first   time.Time          // when the first request was read
	bad     []string           // requests that were not an asynchronous Invoke
	conns   []net.Conn
	arrived chan struct{} // a request was read (capacity 1)
	wg      sync.WaitGroup
}

func newBlackHole(t *testing.T) *blackHole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &blackHole{URL: "http://" + ln.Addr().String(), ln: ln, held: map[string]heldJob{}, arrived: make(chan struct{}, 1)}
	h.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, conn)
			h.mu.Unlock()
			h.wg.Go(func() { h.hold(conn) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		h.mu.Lock()
		for _, c := range h.conns {
			c.Close()
		}
		h.mu.Unlock()
		h.wg.Wait()
	})
	return h
}

// hold reads the requests of one connection and answers none: it reads
// until the caller hangs up.
func (h *blackHole) hold(conn net.Conn) {
	br := bufio.NewReader(conn)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	body, err := io.ReadAll(req.Body)
	h.mu.Lock()
	if h.first.IsZero() {
		h.first = time.Now()
	}
	fn, ok := strings.CutPrefix(req.URL.Path, "/2015-03-31/functions/")
	fn, ok2 := strings.CutSuffix(fn, "/invocations")
	var job heldJob
	if !ok || !ok2 || req.Method != http.MethodPost || req.Header.Get("X-Amz-Invocation-Type") != "Event" ||
		err != nil || json.Unmarshal(body, &job) != nil {
		h.bad = append(h.bad, fmt.Sprintf("%s %s (%s) %q %v", req.Method, req.URL, req.Header.Get("X-Amz-Invocation-Type"), body, err))
	} else {
		h.held[fn] = job
	}
	h.mu.Unlock()
	select {
	case h.arrived <- struct{}{}:
	default:
	}
	_, _ = io.Copy(io.Discard, br)
}

func (h *blackHole) firstAt() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.first
}

// waitFor waits until the black hole holds an Invoke of each function and
// returns their payloads.
func (h *blackHole) waitFor(t *testing.T, d time.Duration, functions ...string) map[string]heldJob {
	t.Helper()
	timeout := time.After(d)
	for {
		h.mu.Lock()
		held, bad := map[string]heldJob{}, h.bad
		for _, fn := range functions {
			if job, ok := h.held[fn]; ok {
				held[fn] = job
			}
		}
		h.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("the Lambda endpoint got requests that are not asynchronous Invokes: %v", bad)
		}
		if len(held) == len(functions) {
			return held
		}
		select {
		case <-h.arrived:
		case <-timeout:
			t.Fatalf("after %v the Lambda endpoint holds Invokes of %v, want %v", d, held, functions)
		}
	}
}
