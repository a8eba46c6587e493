package stack

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv("STACK_TEST_HELPER_DIR"); dir != "" {
		helperStartServers(dir)
	}
	os.Exit(m.Run())
}

// serviceDir returns a new folder the postgres user can reach (t.TempDir's
// parents are private to the test's user, root in CI).
func serviceDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "moc-stack-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func TestFreePortAndPortOpen(t *testing.T) {
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if PortOpen(addr) {
		t.Fatalf("FreePort gave %d, on which something listens", port)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on the free port: %v", err)
	}
	defer ln.Close()
	if !PortOpen(addr) {
		t.Fatalf("PortOpen(%s) = false while listening", addr)
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if got := modulePath(filepath.Join(root, "go.mod")); got != ModulePath {
		t.Fatalf("RepoRoot() = %s, whose module is %q", root, got)
	}
	if _, err := os.Stat(filepath.Join(root, "tools", "go.mod")); err != nil {
		t.Fatalf("RepoRoot() = %s, without tools/go.mod: %v", root, err)
	}
}

func TestFindPostgresBin(t *testing.T) {
	dir, err := FindPostgresBin()
	if err != nil {
		t.Fatal(err)
	}
	if !hasServerBinaries(dir) {
		t.Fatalf("FindPostgresBin() = %s, without initdb and postgres", dir)
	}
	t.Setenv("PG_BIN", dir)
	if got, err := FindPostgresBin(); err != nil || got != dir {
		t.Fatalf("with PG_BIN=%s: %s, %v", dir, got, err)
	}
	t.Setenv("PG_BIN", t.TempDir())
	if _, err := FindPostgresBin(); err == nil || !strings.Contains(err.Error(), "PG_BIN") {
		t.Fatalf("with PG_BIN an empty folder: %v, want an error naming PG_BIN", err)
	}
}

// A cluster is created, used, found running, stopped, restarted over a
// stale pid file with its data intact, and reports a broken configuration
// with the server's own words.
func TestPostgresLifecycle(t *testing.T) {
	ctx := testContext(t)
	dataDir := filepath.Join(serviceDir(t), "deeper", "pg")
	port := freePort(t)
	begin := time.Now()
	pg, err := StartPostgres(ctx, PostgresOptions{DataDir: dataDir, Port: port, Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("initdb and start: %v", time.Since(begin).Round(time.Millisecond))
	defer pg.Stop()
	want := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	if pg.URL != want {
		t.Fatalf("URL = %s, want %s", pg.URL, want)
	}
	exec1(t, ctx, pg.URL, `CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)`)

	t.Run("databases", func(t *testing.T) {
		url, err := CreateDatabase(ctx, pg.URL, "scratch")
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/scratch?sslmode=disable", port); url != want {
			t.Fatalf("CreateDatabase URL = %s, want %s", url, want)
		}
		if _, err := CreateDatabase(ctx, pg.URL, "scratch"); err == nil {
			t.Fatal("creating an existing database succeeded")
		}
		open := connect(t, ctx, url) // DropDatabase ends this session
		defer open.Close(ctx)
		if err := DropDatabase(ctx, pg.URL, "scratch"); err != nil {
			t.Fatal(err)
		}
		if err := DropDatabase(ctx, pg.URL, "scratch"); err != nil {
			t.Fatalf("dropping a missing database: %v", err)
		}
	})

	t.Run("second server on the same cluster", func(t *testing.T) {
		_, err := StartPostgres(ctx, PostgresOptions{DataDir: dataDir, Port: freePort(t), Fast: true})
		t.Logf("error: %v", err)
		if err == nil || !strings.Contains(err.Error(), "still running") {
			t.Fatalf("got %v, want an error saying a server is still running", err)
		}
	})

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if PortOpen(fmt.Sprintf("127.0.0.1:%d", port)) {
		t.Fatal("the port is still open after Stop")
	}

	t.Run("restart over a stale pid file", func(t *testing.T) {
		// PID 1 is alive but no postgres: PostgreSQL alone would refuse.
		pidFile := filepath.Join(pg.DataDir, "postmaster.pid")
		if err := os.WriteFile(pidFile, []byte("1\n"+pg.DataDir+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		again, err := StartPostgres(ctx, PostgresOptions{DataDir: dataDir, Port: port, Fast: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("restart: %v", time.Since(begin).Round(time.Millisecond))
		defer again.Stop()
		conn := connect(t, ctx, again.URL)
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, `SELECT n FROM kept`).Scan(&n); err != nil || n != 7 {
			t.Fatalf("after a restart: %d, %v", n, err)
		}
	})

	t.Run("early exit shows the server's log", func(t *testing.T) {
		conf := filepath.Join(pg.DataDir, "postgresql.conf")
		f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.WriteString("\nno_such_setting_moc = 1\n")
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		_, err = StartPostgres(ctx, PostgresOptions{DataDir: dataDir, Port: port, Fast: true})
		t.Logf("error: %v", err)
		if err == nil || !strings.Contains(err.Error(), "exited during start-up") || !strings.Contains(err.Error(), "no_such_setting_moc") {
			t.Fatalf("got %v, want the server's complaint about no_such_setting_moc", err)
		}
	})
}

func TestPostgresPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	_, err = StartPostgres(testContext(t), PostgresOptions{DataDir: filepath.Join(serviceDir(t), "pg"), Port: port})
	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("got %v, want an error saying the port is in use", err)
	}
}

func TestPostgresRefusesNonEmptyFolder(t *testing.T) {
	dataDir := filepath.Join(serviceDir(t), "pg")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := StartPostgres(testContext(t), PostgresOptions{DataDir: dataDir, Port: freePort(t), Fast: true})
	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("got %v, want an error saying the folder is not empty", err)
	}
}

func TestPostgresUnreachableFolderAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root runs PostgreSQL as another user")
	}
	private := filepath.Join(serviceDir(t), "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := StartPostgres(testContext(t), PostgresOptions{DataDir: filepath.Join(private, "pg"), Port: freePort(t)})
	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("got %v, want an error saying the postgres user cannot reach the folder", err)
	}
}

func TestS3(t *testing.T) {
	ctx := testContext(t)
	dir := filepath.Join(serviceDir(t), "s3")
	port := freePort(t)
	begin := time.Now()
	srv, err := StartS3(ctx, dir, port, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("start: %v", time.Since(begin).Round(time.Millisecond))
	defer srv.Stop()
	if want := fmt.Sprintf("http://127.0.0.1:%d", port); srv.Endpoint != want || srv.AccessKey != DevAccessKey || srv.SecretKey != DevSecretKey || srv.Region != DevRegion {
		t.Fatalf("got %+v, want %s with the development credentials", srv, want)
	}
	for range 2 { // the second time, the bucket exists
		if err := EnsureBucket(ctx, srv.Endpoint, srv.AccessKey, srv.SecretKey, srv.Region, "photos"); err != nil {
			t.Fatal(err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "photos")); err != nil || !fi.IsDir() {
		t.Fatalf("the bucket is not a folder of the data folder: %v", err)
	}
	if err := EnsureBucket(ctx, srv.Endpoint, srv.AccessKey, "wrong-secret", srv.Region, "other"); err == nil {
		t.Fatal("EnsureBucket with a wrong secret succeeded")
	}

	if _, err := StartS3(ctx, filepath.Join(serviceDir(t), "s3"), port, nil); err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("a second server on the port: %v, want an error saying the port is in use", err)
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if PortOpen(fmt.Sprintf("127.0.0.1:%d", port)) {
		t.Fatal("the port is still open after Stop")
	}
	if err := DevS3(port).Stop(); err != nil {
		t.Fatalf("Stop of a server not started here: %v", err)
	}
}

// The servers die with the process that started them, even when it is
// killed: the test runs a copy of itself that starts both, kills it, and
// waits for them to go.
func TestServersDieWithParent(t *testing.T) {
	dir := serviceDir(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "STACK_TEST_HELPER_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var pgPid, s3Pid int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if n, _ := fmt.Sscanf(sc.Text(), "pids %d %d", &pgPid, &s3Pid); n == 2 {
			break
		}
	}
	if pgPid == 0 || s3Pid == 0 {
		cmd.Process.Kill()
		t.Fatalf("the helper did not report its servers: %v", cmd.Wait())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for _, pid := range []int{pgPid, s3Pid} {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("server PID %d still runs after its parent was killed", pid)
			}
			time.Sleep(20 * time.Millisecond) // polling, with the deadline above
		}
	}
}

// helperStartServers is TestServersDieWithParent's child: it starts both
// servers in dir, prints their PIDs and waits to be killed.
func helperStartServers(dir string) {
	ctx := context.Background()
	pgPort, err1 := FreePort()
	s3Port, err2 := FreePort()
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, err1, err2)
		os.Exit(1)
	}
	pg, err := StartPostgres(ctx, PostgresOptions{DataDir: filepath.Join(dir, "pg"), Port: pgPort, Fast: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s3, err := StartS3(ctx, filepath.Join(dir, "s3"), s3Port, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("pids %d %d\n", pg.proc.cmd.Process.Pid, s3.proc.cmd.Process.Pid)
	select {} // until killed
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

func TestTailKeepsTheEnd(t *testing.T) {
	tl := &tail{max: 5}
	fmt.Fprint(tl, "abc")
	fmt.Fprint(tl, "defg\n")
	if got := tl.String(); got != "defg" {
		t.Fatalf("tail = %q, want %q", got, "defg")
	}
}

func TestSocketDir(t *testing.T) {
	if got := socketDir("/tmp/pg", 5432); got != "/tmp/pg" {
		t.Fatalf("short path: %q", got)
	}
	long := "/tmp/" + strings.Repeat("x", 100)
	if got := socketDir(long, 5432); got != "" {
		t.Fatalf("too long a path: %q, want Unix sockets off", got)
	}
}

func TestDatabaseURL(t *testing.T) {
	got, err := databaseURL("postgres://u:p%40ss@h:5/postgres?sslmode=disable", "test_ab")
	if err != nil || got != "postgres://u:p%40ss@h:5/test_ab?sslmode=disable" {
		t.Fatalf("got %s, %v", got, err)
	}
	if _, err := databaseURL("host=h dbname=x", "y"); err == nil {
		t.Fatal("a key=value DSN was accepted")
	}
}

func TestXattrProbe(t *testing.T) {
	// The test machines' file systems have extended attributes; the probe
	// must say so and leave nothing behind.
	dir := t.TempDir()
	if !xattrsWork(dir) {
		t.Skip("no user extended attributes here; versitygw would use a sidecar folder")
	}
	buf := make([]byte, 64)
	if n, err := syscall.Listxattr(dir, buf); err != nil || n != 0 {
		t.Fatalf("the probe left attributes: %q, %v", buf[:max(n, 0)], err)
	}
}

func connect(t *testing.T, ctx context.Context, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func exec1(t *testing.T, ctx context.Context, url, sql string) {
	t.Helper()
	conn := connect(t, ctx, url)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatal(err)
	}
}

// A folder laid out by earlier versions (the cluster in data/) is used as is.
func TestPrepareDataDirEarlierLayout(t *testing.T) {
	dir := filepath.Join(serviceDir(t), "pg")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "PG_VERSION"), []byte("15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cred, err := serverCredential()
	if err != nil {
		t.Fatal(err)
	}
	got, err := prepareDataDir(dir, cred)
	if err != nil || got != filepath.Join(dir, "data") {
		t.Fatalf("got %s, %v; want %s", got, err, filepath.Join(dir, "data"))
	}
}

// StopChild: a child that ends on the signal is waited for and not
// killed; one that ignores it is killed once the grace has passed; one
// that has already exited is left alone.
func TestStopChild(t *testing.T) {
	start := func(t *testing.T, script string, args ...string) (*exec.Cmd, chan struct{}) {
		t.Helper()
		cmd := exec.Command("sh", append([]string{"-c", script}, args...)...)
		if err := StartChild(cmd); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() { StopChild(cmd, done, syscall.SIGKILL, time.Second) })
		return cmd, done
	}

	t.Run("ends on the signal", func(t *testing.T) {
		cmd, done := start(t, "exec sleep 60")
		if StopChild(cmd, done, syscall.SIGTERM, time.Minute) {
			t.Error("killed a child that ended on SIGTERM")
		}
		if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
			t.Errorf("the child ended with %v, want SIGTERM", cmd.ProcessState)
		}
	})
	t.Run("ignores the signal", func(t *testing.T) {
		// The shell ignores SIGTERM, and makes the file ready once it does.
		ready := filepath.Join(t.TempDir(), "ready")
		cmd, done := start(t, `trap "" TERM; : > "$0"; while :; do sleep 0.05; done`, ready)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(ready); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the shell did not set its trap within 10 s")
			}
		}
		if !StopChild(cmd, done, syscall.SIGTERM, 300*time.Millisecond) {
			t.Error("StopChild did not report the kill of a child that ignores SIGTERM")
		}
		if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Errorf("the child ended with %v, want SIGKILL", cmd.ProcessState)
		}
	})
	t.Run("already exited", func(t *testing.T) {
		cmd, done := start(t, "exit 3")
		<-done
		if StopChild(cmd, done, syscall.SIGTERM, time.Minute) {
			t.Error("killed a child that had already exited")
		}
		if cmd.ProcessState.ExitCode() != 3 {
			t.Errorf("exit code %d, want 3", cmd.ProcessState.ExitCode())
		}
	})
}
