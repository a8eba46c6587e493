package faultnet

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

func echo(t *testing.T) string {
	t.Helper()
	return Serve(t, func(c net.Conn) {
		defer c.Close()
		_, _ = io.Copy(c, c)
	}).String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ping sends a line on c and reads the answer, waiting at most wait.
func ping(c net.Conn, wait time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

// A silent server takes the connection and the request and answers
// nothing: only the client's own deadline ends the wait.
func TestSilent(t *testing.T) {
	c := dial(t, Silent(t).String())
	got, err := ping(c, 300*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %q, %v; want the client's deadline", got, err)
	}
}

// The proxy forwards until it is cut (open connections end, new ones are
// refused) or frozen (nothing passes on open or new connections).
func TestProxy(t *testing.T) {
	t.Run("forwards, then cut", func(t *testing.T) {
		p := NewProxy(t, echo(t))
		c := dial(t, p.Addr())
		if got, err := ping(c, 10*time.Second); err != nil || got != "ping\n" {
			t.Fatalf("through the proxy: %q, %v", got, err)
		}
		p.Cut()
		if got, err := ping(c, 10*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("an open connection after the cut: %q, %v; want it closed", got, err)
		}
		if c, err := net.DialTimeout("tcp", p.Addr(), 10*time.Second); err == nil {
			c.Close()
			t.Fatal("the cut proxy took a new connection")
		}
		p.Cut() // harmless twice
	})
	t.Run("frozen", func(t *testing.T) {
		p := NewProxy(t, echo(t))
		open := dial(t, p.Addr())
		if got, err := ping(open, 10*time.Second); err != nil || got != "ping\n" {
			t.Fatalf("before the freeze: %q, %v", got, err)
		}
		p.Freeze()
		p.Freeze() // harmless twice
		for name, c := range map[string]net.Conn{"open": open, "new": dial(t, p.Addr())} {
			if got, err := ping(c, 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("%s connection while frozen: %q, %v; want nothing until the deadline", name, got, err)
			}
		}
	})
}

// ReturnsWithin gives back what the call returns when it returns in time.
// (Its other way out, t.Fatalf, ends the test's goroutine: a test here
// cannot watch it without failing itself.)
func TestReturnsWithin(t *testing.T) {
	if got := ReturnsWithin(t, time.Minute, func() int { return 7 }); got != 7 {
		t.Fatalf("got %d, want 7", got)
	}
}
