package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/local/stack"
)

// TestProxiedUploadPeakMemory measures the peak resident memory (VmHWM) of
// a real moc-local process — the gateway and the Lambda handlers; its
// PostgreSQL and versitygw are child processes, not counted — while four
// clients upload 256 MiB through it in proxied 5 MiB parts (as
// BenchmarkUpload256MiB/via=proxied, over real HTTP), with AWS's payload
// limits off. Target: 4 clients × 5 MiB × 3 copies + 64 MiB = 124 MiB.
//
// It builds moc-local (or runs $MOC_LOCAL_BIN) and starts a second stack,
// so it only runs when MOC_BENCH_MEMORY is set:
//
//	MOC_BENCH_MEMORY=1 go test -run TestProxiedUploadPeakMemory -v ./local/e2e
//
// The environment reaches moc-local (GOGC, GOMEMLIMIT, GODEBUG=gctrace=1),
// except the variables that would point it at other servers.
func TestProxiedUploadPeakMemory(t *testing.T) {
	if os.Getenv("MOC_BENCH_MEMORY") == "" {
		t.Skip("set MOC_BENCH_MEMORY=1 to measure moc-local's peak memory during a 256 MiB proxied upload")
	}
	const target = benchClients*benchPartSize*3 + 64*mib
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "moc-mem-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	_ = os.Chmod(dir, 0o755) // PostgreSQL runs as another user
	bin := os.Getenv("MOC_LOCAL_BIN")
	if bin == "" {
		goCmd, err := stack.GoCommand()
		if err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(dir, "moc-local")
		build := exec.Command(goCmd, "build", "-o", bin, "./local/cmd/moc-local")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build moc-local: %v\n%s", err, out)
		}
	}
	httpAddr := "127.0.0.1:" + strconv.Itoa(benchFreePort(t))
	env := []string{}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "DATABASE_URL" || k == "S3_ENDPOINT" || k == "S3_BUCKET" ||
			strings.HasPrefix(k, "LOCAL_") || strings.HasPrefix(k, "UPLOAD_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"LOCAL_DATA_DIR="+filepath.Join(dir, "data"),
		"LOCAL_HTTP_ADDR="+httpAddr,
		"LOCAL_PG_PORT="+strconv.Itoa(benchFreePort(t)),
		"LOCAL_S3_PORT="+strconv.Itoa(benchFreePort(t)),
		"LOCAL_AWS_PAYLOAD_LIMITS=off",
		"UPLOAD_PDF_MAX_MB=100",
	)
	logf, err := os.Create(filepath.Join(dir, "moc-local.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin)
	cmd.Dir = root
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		// moc-local stops its PostgreSQL and versitygw on SIGINT.
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			out, _ := os.ReadFile(logf.Name())
			t.Logf("moc-local's output:\n%s", benchTail(string(out), 40))
		}
	}()
	base := "http://" + httpAddr
	benchWaitAPI(t, base, exited)
	pid := cmd.Process.Pid
	idle := benchMustStatusKB(t, pid, "VmHWM")
	idleFile := benchMustStatusKB(t, pid, "RssFile") // mostly the binary's own pages

	// VmRSS and RssAnon (heap, stacks) sampled meanwhile, to see the peak
	// is the upload's and how much of it is the Go heap.
	var maxRSS, maxAnon atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if kb, err := benchStatusKB(pid, "VmRSS"); err == nil && kb > maxRSS.Load() {
				maxRSS.Store(kb)
			}
			if kb, err := benchStatusKB(pid, "RssAnon"); err == nil && kb > maxAnon.Load() {
				maxAnon.Store(kb)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	user := "mem-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	data := pdfBytes(64 * mib)
	decls := make([]fileDecl, benchClients)
	for i := range decls {
		decls[i] = pdfDecl(fmt.Sprintf("m%d.pdf", i), len(data))
	}
	d, err := benchCall(base, user, "POST", "/api/mocs/uploads/sessions", "application/json", benchJSON(t, map[string]any{"files": decls}), 201)
	if err != nil {
		t.Fatal(err)
	}
	sessionID := d["sessionId"].(string)
	var ids []string
	for _, decl := range decls {
		f, err := benchCall(base, user, "POST", "/api/mocs/uploads/sessions/"+sessionID+"/files", "application/json", benchJSON(t, decl), 201)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, f["fileId"].(string))
	}
	start := time.Now()
	if err := benchProxied(base, user, sessionID, ids, data); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	peak := benchMustStatusKB(t, pid, "VmHWM")
	t.Logf("moc-local (pid %d): VmHWM %.1f MiB after start (RssFile %.1f MiB), %.1f MiB after the upload "+
		"(sampled every 5 ms: VmRSS max %.1f MiB, RssAnon max %.1f MiB); 256 MiB in %v (%.0f MiB/s); target %d MiB",
		pid, float64(idle)/1024, float64(idleFile)/1024, float64(peak)/1024, float64(maxRSS.Load())/1024,
		float64(maxAnon.Load())/1024, elapsed.Round(time.Millisecond), 256/elapsed.Seconds(), target/mib)
	if peak*1024 > target {
		t.Errorf("peak memory %.1f MiB is over the target %d MiB", float64(peak)/1024, target/mib)
	}
}

func benchFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// benchWaitAPI waits until the API answers (at most two minutes: moc-local
// creates a PostgreSQL cluster first).
func benchWaitAPI(t *testing.T, base string, exited <-chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/mocs/uploads/sessions/00000000-0000-4000-8000-000000000000", nil)
		req.Header.Set("Authorization", "Bearer mem-probe")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("moc-local exited: %v", err)
		case <-ctx.Done():
			t.Fatal("moc-local did not answer within two minutes")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// benchStatusKB reads a "Name: <n> kB" line of /proc/<pid>/status.
func benchStatusKB(pid int, name string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), name+":"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", name, pid)
}

func benchMustStatusKB(t *testing.T, pid int, name string) int64 {
	t.Helper()
	kb, err := benchStatusKB(pid, name)
	if err != nil {
		t.Fatal(err)
	}
	return kb
}

func benchTail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-lines):], "\n")
}

func benchJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
