// Package stack starts the real services the upload service needs on this
// machine, as child processes that die with their parent: PostgreSQL from
// the Debian server binaries and versitygw, an S3-compatible server.
// The local stack (`make local`) and the integration tests use it; nothing
// here is mocked.
package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// FreePort asks the kernel for a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// PortOpen reports whether something accepts TCP connections at addr.
func PortOpen(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// RepoRoot is the folder of this module's go.mod, found from the working
// directory upwards (tests run in their package's folder).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/mocbuilders/moc-upload\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("stack: not inside the moc-upload repository")
		}
		dir = parent
	}
}

// process is a started child and how it ended.
type process struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	logTail *tail
}

// start runs cmd as a child that gets SIGTERM when this process dies.
func start(name string, cmd *exec.Cmd, logw io.Writer) (*process, error) {
	p := &process{name: name, cmd: cmd, done: make(chan struct{}), logTail: &tail{max: 4096}}
	if logw == nil {
		logw = io.Discard
	}
	cmd.Stdout = io.MultiWriter(logw, p.logTail)
	cmd.Stderr = cmd.Stdout
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// waitReady polls ready until it succeeds, the process exits, or the
// deadline passes.
func (p *process) waitReady(ctx context.Context, timeout time.Duration, ready func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready() {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited during start-up (%v); its last output:\n%s", p.name, p.waitErr, p.logTail)
		case <-ctx.Done():
			p.stop(syscall.SIGKILL, time.Second)
			return fmt.Errorf("%s did not become ready within %s; its last output:\n%s", p.name, timeout, p.logTail)
		case <-tick.C:
		}
	}
}

// stop sends sig and waits up to grace, then kills.
func (p *process) stop(sig syscall.Signal, grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %s and was killed", p.name, grace)
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
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
