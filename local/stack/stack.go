// Package stack starts the real services the upload service needs on this
// machine, as child processes that die with their parent: PostgreSQL from
// the distribution's server binaries (StartPostgres) and versitygw, an
// S3-compatible server storing objects as plain files (StartS3).
//
// The local stack (`make local`, package devstack) and the integration test
// fixtures (package stacktest) use it; nothing here is mocked. Every child
// is started with a parent-death signal, so a killed test binary or `make
// local` does not leave servers behind, and every start waits, by polling
// with a deadline, until the server answers.
package stack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ModulePath is the module whose checkout RepoRoot looks for.
const ModulePath = "github.com/mocbuilders/moc-upload"

// FreePort returns a TCP port on 127.0.0.1 that nothing uses right now,
// chosen at random below Linux's ephemeral range (32768-60999): ports the
// kernel hands out, for outgoing connections or to other test processes
// asking for port 0, never collide with it, and two processes picking at
// random rarely do. Another process may still take it before the caller
// listens; the Start functions, given port 0, retry with another.
func FreePort() (int, error) {
	for range 100 {
		port := 20000 + rand.IntN(32768-20000)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			ln.Close()
			return port, nil
		}
	}
	return 0, errors.New("find a free port: 100 random ports in 20000-32767 were taken")
}

// startOnFreePort runs start on port, or, when port is 0, on random free
// ports until one works (a few tries: another process may take the port
// between FreePort and the server's bind).
func startOnFreePort[T any](port int, start func(port int) (T, error)) (T, error) {
	if port != 0 {
		return start(port)
	}
	var zero T
	var err error
	for range 3 {
		var p int
		if p, err = FreePort(); err != nil {
			return zero, err
		}
		var v T
		if v, err = start(p); err == nil {
			return v, nil
		}
	}
	return zero, err
}

// PortOpen reports whether something accepts TCP connections at addr
// (host:port), for callers that reuse a service that is already running.
func PortOpen(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// RepoRoot returns the folder of this repository's go.mod (module
// ModulePath), searched from the working directory upwards: tests run in
// their package's folder, commands anywhere in the checkout.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		if modulePath(filepath.Join(dir, "go.mod")) == ModulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%s is not inside a checkout of %s (no go.mod of that module above it)", wd, ModulePath)
		}
		dir = parent
	}
}

// modulePath returns the module path declared by the go.mod file at path,
// or "" when there is none.
func modulePath(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "module" {
			if p, err := strconv.Unquote(fields[1]); err == nil {
				return p
			}
			return fields[1]
		}
	}
	return ""
}

// process is a started child server and how it ended.
type process struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the child has exited
	waitErr error         // cmd.Wait's result, set before done is closed
	logTail *tail
}

// start runs cmd as a child that receives SIGTERM when this process dies.
// Its output goes to logw (when not nil) and to a tail kept for errors.
func start(name string, cmd *exec.Cmd, logw io.Writer) (*process, error) {
	p := &process{name: name, cmd: cmd, done: make(chan struct{}), logTail: &tail{max: 8 << 10}}
	if logw == nil {
		logw = io.Discard
	}
	out := io.MultiWriter(logw, p.logTail)
	cmd.Stdout, cmd.Stderr = out, out
	// Children a killed server leaves behind could hold the output pipe
	// open; do not let Wait hang on them.
	cmd.WaitDelay = 2 * time.Second
	if err := StartChild(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

var spawner struct {
	once sync.Once
	ch   chan func()
}

// StartChild starts cmd so that it gets SIGTERM when this process dies
// (for any reason, SIGKILL included).
func StartChild(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	return startOnSpawnThread(cmd)
}

// startOnSpawnThread starts cmd from one OS thread that lives as long as
// this process. Linux delivers the parent-death signal when the thread
// that forked the child ends, not the process, and the Go runtime ends a
// thread whenever a goroutine locked to it returns; forking from a thread
// locked forever makes Pdeathsig mean "when this process dies".
func startOnSpawnThread(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.ch = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked, on purpose
			for f := range spawner.ch {
				f()
			}
		}()
	})
	errc := make(chan error, 1)
	spawner.ch <- func() { errc <- cmd.Start() }
	return <-errc
}

// exited reports whether the child has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitReady polls ready every 50 ms until it reports true, the child exits,
// ctx ends or timeout passes. A child that is not ready is killed.
func (p *process) waitReady(ctx context.Context, timeout time.Duration, ready func(context.Context) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if p.exited() {
			return p.exitError()
		}
		if ready(ctx) {
			return nil
		}
		select {
		case <-p.done:
			return p.exitError()
		case <-ctx.Done():
			_ = p.stop(syscall.SIGKILL, 5*time.Second)
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s did not answer within %s and was killed; its last output:\n%s", p.name, timeout, p.logTail)
			}
			return fmt.Errorf("%s start-up abandoned: %w", p.name, ctx.Err())
		case <-tick.C:
		}
	}
}

func (p *process) exitError() error {
	return fmt.Errorf("%s exited during start-up (%v); its last output:\n%s", p.name, p.waitErr, p.logTail)
}

// stop sends sig and waits up to grace for the child to exit, then kills
// it. It is a no-op for a child that has already exited.
func (p *process) stop(sig syscall.Signal, grace time.Duration) error {
	if p == nil {
		return nil
	}
	if StopChild(p.cmd, p.done, sig, grace) {
		return fmt.Errorf("%s did not stop within %s of %v and was killed", p.name, grace, sig)
	}
	return nil
}

// StopChild stops a started child: it sends sig, waits up to grace for
// done to be closed (by the caller's goroutine, once cmd.Wait has
// returned), then kills the child and waits for done. It reports whether
// the child had to be killed. A child that has already exited is left
// alone.
func StopChild(cmd *exec.Cmd, done <-chan struct{}, sig os.Signal, grace time.Duration) (killed bool) {
	select {
	case <-done:
		return false
	default:
	}
	_ = cmd.Process.Signal(sig)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C:
		_ = cmd.Process.Kill()
		<-done
		return true
	}
}

// tail keeps the last max bytes written to it, for error messages.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimRight(string(t.buf), "\n")
}

// DescribeListener says, in a few words, what listens at addr (host:port),
// for an error about a port that is taken by something other than what
// the caller wanted: a server that greets first (SSH, SMTP, Redis… say
// who they are), an HTTP server (its status and Server header), one that
// answers an HTTP request otherwise, one that closes the connection, or
// one that accepts and says nothing. It takes at most about two seconds.
func DescribeListener(addr string) string {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "nothing that accepts connections (" + err.Error() + ")"
	}
	defer c.Close()
	buf := make([]byte, 512)
	// Servers of many protocols greet first.
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(buf); n > 0 {
		return fmt.Sprintf("a server that greets with %q", printable(buf[:n], 60))
	} else if err != nil && !isTimeout(err) {
		return "a program that closes the connection before anything is sent"
	}
	// Then ask as a browser would.
	_ = c.SetDeadline(time.Now().Add(1500 * time.Millisecond))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
		return "a program that accepts connections but does not read (" + err.Error() + ")"
	}
	n, err := io.ReadFull(c, buf)
	switch {
	case n == 0 && isTimeout(err):
		return "a program that accepts connections but answers neither PostgreSQL nor HTTP"
	case n == 0:
		return "a program that closes the connection without answering"
	}
	resp := string(buf[:n])
	if !strings.HasPrefix(resp, "HTTP/") {
		return fmt.Sprintf("a server that answers an HTTP request with %q", printable(buf[:n], 60))
	}
	status, rest, _ := strings.Cut(resp, "\r\n")
	desc := "an HTTP server answering " + strings.TrimSpace(strings.TrimPrefix(status, strings.SplitN(status, " ", 2)[0]))
	var details []string
	for _, line := range strings.Split(rest, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if k = strings.ToLower(strings.TrimSpace(k)); k == "server" || k == "content-type" {
			details = append(details, k+": "+strings.TrimSpace(v))
		}
	}
	if len(details) > 0 {
		desc += " (" + strings.Join(details, ", ") + ")"
	}
	return desc
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// printable is b as text, at most max bytes of it, without control
// characters other than spaces.
func printable(b []byte, max int) string {
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(string(b[:min(len(b), max)]), "?"))
	return strings.TrimSpace(s)
}
