package chaos

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/local/faultnet"
)

// echoServer answers each line with itself.
func echoServer(t *testing.T) string {
	t.Helper()
	return faultnet.Serve(t, func(c net.Conn) {
		defer c.Close()
		_, _ = io.Copy(c, c)
	}).String()
}

// roundTrip sends a line and reads it back, within 2 s.
func roundTrip(c net.Conn) (time.Duration, error) {
	start := time.Now()
	_ = c.SetDeadline(start.Add(2 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return 0, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err == nil && line != "ping\n" {
		err = errors.New("echoed " + line)
	}
	return time.Since(start), err
}

func dialProxy(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Each fault does to a connection what its Kind says, and undoing it
// gives the proxy back.
func TestProxyFaults(t *testing.T) {
	p, err := StartProxy("echo", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := roundTrip(dialProxy(t, p)); err != nil {
		t.Fatalf("no fault: %v", err)
	}

	t.Run("latency", func(t *testing.T) {
		c := dialProxy(t, p)
		undo, err := p.Inject(Latency, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		d, err := roundTrip(c)
		if err != nil || d < 300*time.Millisecond { // 300 ± 100 ms each way
			t.Fatalf("round trip %s, %v", d, err)
		}
		if err := undo(); err != nil {
			t.Fatal(err)
		}
		if d, err := roundTrip(c); err != nil || d > 150*time.Millisecond {
			t.Fatalf("after undo: %s, %v", d, err)
		}
	})

	t.Run("reset", func(t *testing.T) {
		c := dialProxy(t, p)
		undo, err := p.Inject(Reset, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := roundTrip(c); err == nil {
			t.Fatal("a connection survived reset_peer")
		}
		if err := undo(); err != nil {
			t.Fatal(err)
		}
		if _, err := roundTrip(dialProxy(t, p)); err != nil {
			t.Fatalf("after undo: %v", err)
		}
	})

	t.Run("freeze", func(t *testing.T) {
		c := dialProxy(t, p)
		undo, err := p.Inject(Freeze, 500*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		defer undo()
		// The answer never comes, on an open connection or a new one; the
		// connections are closed at the window's end.
		for i := range 2 {
			if i == 1 {
				c = dialProxy(t, p)
			}
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			start := time.Now()
			_, _ = c.Write([]byte("ping\n"))
			n, err := c.Read(make([]byte, 8))
			if n != 0 || err == nil || time.Since(start) < 400*time.Millisecond || time.Since(start) > 1500*time.Millisecond {
				t.Fatalf("read %d bytes, %v after %s", n, err, time.Since(start))
			}
		}
		if err := undo(); err != nil {
			t.Fatal(err)
		}
		if _, err := roundTrip(dialProxy(t, p)); err != nil {
			t.Fatalf("after undo: %v", err)
		}
	})

	t.Run("restart", func(t *testing.T) {
		c := dialProxy(t, p)
		addr := p.Addr()
		undo, err := p.Inject(Restart, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := roundTrip(c); err == nil {
			t.Fatal("an open connection survived the restart")
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatal("the stopped proxy took a connection")
		}
		if err := undo(); err != nil {
			t.Fatal(err)
		}
		if p.Addr() != addr {
			t.Fatalf("restarted on %s, was %s", p.Addr(), addr)
		}
		if _, err := roundTrip(dialProxy(t, p)); err != nil {
			t.Fatalf("after restart: %v", err)
		}
	})
}
