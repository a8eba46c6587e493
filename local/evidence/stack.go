// Package evidence runs the seed story (STORY-01727) against a local stack
// it starts itself: `make http-ci` runs __http__/'s requests (httpyac)
// against it, and `make evidence` drives the story's requests from Go and
// writes what happened — every request and response, the WebSocket events,
// the webhook deliveries, the thumbnail's object in S3, the finalize trace
// and the sequential vs parallel finalize timings — into
// docs/evidence/STORY-01727.md.
package evidence

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/mocbuilders/moc-upload/local/devstack"
	"github.com/mocbuilders/moc-upload/local/gateway"
	"github.com/mocbuilders/moc-upload/local/invoke"
	"github.com/mocbuilders/moc-upload/local/wsgateway"
)

// Stack is a running local stack as `make local` serves it: the HTTP API
// (without AWS's payload limits, as the .http file's header asks), the
// WebSocket API and the Lambda Invoke API, each on a free loopback port,
// over a throwaway PostgreSQL and S3 (or the ones Env names).
type Stack struct {
	*devstack.Stack
	HTTP string // http://127.0.0.1:<port>
	WS   string // ws://127.0.0.1:<port>

	dir  string
	stop []func()
}

// StartStack starts a stack whose configuration is env (nothing else of
// the process's environment is read but PATH-like tool lookups). Close it.
func StartStack(ctx context.Context, env map[string]string, log io.Writer) (_ *Stack, err error) {
	s := &Stack{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.dir, err = os.MkdirTemp("", "moc-evidence-"); err != nil {
		return nil, err
	}
	_ = os.Chmod(s.dir, 0o755)
	s.stop = append(s.stop, func() { os.RemoveAll(s.dir) })
	listen := func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
	httpLn, err := listen()
	if err != nil {
		return nil, err
	}
	wsLn, err := listen()
	if err != nil {
		httpLn.Close()
		return nil, err
	}
	lambdaLn, err := listen()
	if err != nil {
		httpLn.Close()
		wsLn.Close()
		return nil, err
	}
	st, err := devstack.Start(ctx, devstack.Options{
		DataDir: s.dir, Fast: true, Log: log,
		Getenv:        func(k string) string { return env[k] },
		WebSocketAddr: wsLn.Addr().String(),
		LambdaAddr:    lambdaLn.Addr().String(),
	})
	if err != nil {
		httpLn.Close()
		wsLn.Close()
		lambdaLn.Close()
		return nil, fmt.Errorf("start the local stack: %w", err)
	}
	s.Stack = st
	s.stop = append(s.stop, st.Close)

	invokeAPI, err := st.InvokeAPI(invoke.Options{})
	if err != nil {
		httpLn.Close()
		wsLn.Close()
		lambdaLn.Close()
		return nil, err
	}
	serve := func(run func(context.Context) error) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = run(ctx) }()
		s.stop = append(s.stop, func() { cancel(); <-done })
	}
	// Stopped last first: the HTTP API, then the WebSocket API, then the
	// Invoke API (the APIs' requests invoke through it).
	serve(func(ctx context.Context) error { return devstack.ServeInvoke(ctx, lambdaLn, invokeAPI) })
	serve(func(ctx context.Context) error { return st.ServeWebSocket(ctx, wsLn, wsgateway.Options{}) })
	serve(func(ctx context.Context) error { return st.Serve(ctx, httpLn, gateway.Options{}) })
	s.HTTP = "http://" + httpLn.Addr().String()
	s.WS = "ws://" + wsLn.Addr().String()
	if err := waitReady(ctx, s.HTTP); err != nil {
		return nil, err
	}
	return s, nil
}

// waitReady polls the HTTP API until it answers (any status), at most 10 s.
func waitReady(ctx context.Context, base string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/mocs/uploads/sessions/00000000-0000-4000-8000-000000000000", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("the local stack's HTTP API did not answer within 10 s")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops what StartStack started, last first.
func (s *Stack) Close() {
	for i := len(s.stop) - 1; i >= 0; i-- {
		s.stop[i]()
	}
	s.stop = nil
}
