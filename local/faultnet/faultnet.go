// Package faultnet gives tests network peers that fail the way a service
// does when it goes away or stops answering: a listener that accepts
// connections and never answers (a stopped process, a black-holed
// network), and a TCP proxy in front of a real server that can be cut (the
// server is gone) or frozen (its connections stay open and nothing passes).
// ReturnsWithin bounds the wait on such a peer, so that a call that never
// returns fails the test instead of hanging it.
//
// It is for tests only (shared/s3blob, shared/postgres, local/stack,
// local/chaos, local/e2e); no production code imports it. Everything
// listens on 127.0.0.1 and is closed when the test ends.
package faultnet

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Serve listens on a free port of 127.0.0.1 and runs handle on each
// connection it accepts, in a goroutine of its own. A connection stays
// open after handle returns unless handle closes it; when t ends the
// listener and every connection are closed.
func Serve(t testing.TB, handle func(net.Conn)) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed { // accepted as the test ended
				mu.Unlock()
				c.Close()
				return
			}
			conns = append(conns, c)
			mu.Unlock()
			go handle(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().(*net.TCPAddr)
}

// Silent is a server that accepts every connection and never reads or
// writes on it, as a stopped process or a black-holed proxy behaves: a
// client without a deadline of its own waits on it for ever.
func Silent(t testing.TB) *net.TCPAddr {
	t.Helper()
	return Serve(t, func(net.Conn) {}) // held open until t ends
}

// Proxy forwards TCP connections to a server until it is cut or frozen.
type Proxy struct {
	ln     net.Listener
	target string
	frozen chan struct{}
	freeze sync.Once

	mu    sync.Mutex
	conns []net.Conn
	cut   bool
}

// NewProxy listens on a free port of 127.0.0.1 and forwards each
// connection to target (host:port). It is cut when t ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, frozen: make(chan struct{})}
	go p.serve()
	t.Cleanup(p.Cut)
	return p
}

// Addr is where the proxy listens (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut is the server going away: every connection is closed and new ones
// are refused. Cutting twice is harmless.
func (p *Proxy) Cut() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Freeze is the server no longer answering: the connections stay open and
// nothing more passes either way. A frozen proxy still accepts new
// connections and freezes them too; Cut ends them.
func (p *Proxy) Freeze() { p.freeze.Do(func() { close(p.frozen) }) }

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.cut { // accepted as the proxy was cut
			p.mu.Unlock()
			c.Close()
			s.Close()
			return
		}
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

// pipe copies src to dst until the proxy freezes; then it holds both open.
func (p *Proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.frozen:
			return // what arrives now is dropped
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				dst.Close()
			}
			return
		}
	}
}

// ReturnsWithin runs call and returns what it returns, failing the test if
// it has not returned by limit: a call that waits for ever on a peer that
// stopped answering is the bug. The limit is a generous bound on the test,
// not a measurement.
func ReturnsWithin[T any](t testing.TB, limit time.Duration, call func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- call() }()
	select {
	case v := <-done:
		return v
	case <-time.After(limit):
		t.Fatalf("the call still waits after %s: nothing ended the wait on a peer that does not answer", limit)
		var none T // not reached: t.Fatalf ends the test's goroutine
		return none
	}
}
