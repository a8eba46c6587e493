package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/shared/webhook"
)

const (
	testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	testID     = "0b9e3d52-6a55-4c4e-9f39-0d6c1c7f5a10"
	base       = 10 * time.Millisecond
)

var testPayload = webhook.Payload{
	MocID:     "7c4a5e0e-3c1b-4b8e-bb0b-2b1f7d9f6a01",
	SessionID: "5f0c9a3e-1d2b-4c5d-8e7f-9a0b1c2d3e4f",
	UserID:    "user-1",
	Timestamp: time.Date(2026, 11, 25, 11, 0, 0, 123456000, time.FixedZone("CET", 3600)),
}

const wantBody = `{"event":"moc.finalized","mocId":"7c4a5e0e-3c1b-4b8e-bb0b-2b1f7d9f6a01",` +
	`"sessionId":"5f0c9a3e-1d2b-4c5d-8e7f-9a0b1c2d3e4f","userId":"user-1","timestamp":"2026-11-25T10:00:00.123456Z"}`

// arrival is one request as the receiver saw it.
type arrival struct {
	at     time.Time
	header http.Header
	body   []byte
}

// receiver is a real HTTP server that records every request to / and
// answers the n-th (from 0) with answer(n, w, r).
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	arrivals []arrival
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		n := len(rc.arrivals)
		rc.arrivals = append(rc.arrivals, arrival{at, r.Header.Clone(), body})
		rc.mu.Unlock()
		answer(n, w, r)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) got() []arrival {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]arrival(nil), rc.arrivals...)
}

func status(codes ...int) func(int, http.ResponseWriter, *http.Request) {
	return func(n int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(codes[min(n, len(codes)-1)])
	}
}

// logs captures a Sender's log as JSON lines; warned, when not nil, gets a
// value (without blocking) at each WARN.
type logs struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	warned chan struct{}
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

type signalHandler struct {
	slog.Handler
	l *logs
}

func (h signalHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level == slog.LevelWarn && h.l.warned != nil {
		select {
		case h.l.warned <- struct{}{}:
		default:
		}
	}
	return err
}

func (h signalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return signalHandler{h.Handler.WithAttrs(as), h.l}
}

func (h signalHandler) WithGroup(name string) slog.Handler {
	return signalHandler{h.Handler.WithGroup(name), h.l}
}

func (l *logs) logger() *slog.Logger {
	return slog.New(signalHandler{slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}), l})
}

// at returns the records of a level.
func (l *logs) at(t *testing.T, level string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(l.buf.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["level"] == level {
			out = append(out, rec)
		}
	}
	return out
}

// spacing checks that arrival i+1 came at least want[i] after arrival i.
func spacing(t *testing.T, got []arrival, want ...time.Duration) {
	t.Helper()
	for i, w := range want {
		if gap := got[i+1].at.Sub(got[i].at); gap < w {
			t.Errorf("attempt %d came %v after attempt %d, want ≥ %v", i+2, gap, i+1, w)
		}
	}
}

// retryIns checks the waits the WARN lines announce, exactly: want[i] is
// the retryIn of warns[i] (a duration, in nanoseconds in JSON), and a WARN
// line past want has none (the last attempt, which no retry follows).
// Unlike the arrival times, these are the sender's own numbers: no clock
// makes them wrong.
func retryIns(t *testing.T, warns []map[string]any, want ...time.Duration) {
	t.Helper()
	for i, w := range warns {
		got, ok := w["retryIn"]
		switch {
		case i < len(want) && got != float64(want[i]):
			t.Errorf("WARN %d: retryIn %v, want %v (%d ns)", i+1, got, want[i], want[i].Nanoseconds())
		case i >= len(want) && ok:
			t.Errorf("WARN %d: retryIn %v, want none (no retry follows)", i+1, got)
		}
	}
	if len(warns) < len(want) {
		t.Errorf("%d WARN lines, want at least %d", len(warns), len(want))
	}
}

func TestDeliverSigned(t *testing.T) {
	rc := newReceiver(t, status(http.StatusNoContent))
	s, err := webhook.New(rc.URL, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	var l logs
	s.Logger = l.logger()
	before := time.Now()
	if err := s.Deliver(t.Context(), testID, testPayload); err != nil {
		t.Fatal(err)
	}
	got := rc.got()
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want 1", len(got))
	}
	a := got[0]
	if string(a.body) != wantBody {
		t.Errorf("body\n got %s\nwant %s", a.body, wantBody)
	}
	for name, want := range map[string]string{
		"Content-Type":   "application/json",
		"User-Agent":     webhook.UserAgent,
		"webhook-id":     testID,
		"Content-Length": strconv.Itoa(len(wantBody)),
	} {
		if got := a.header.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	if ts, err := strconv.ParseInt(a.header.Get("webhook-timestamp"), 10, 64); err != nil || ts < before.Unix() || ts > time.Now().Unix() {
		t.Errorf("webhook-timestamp %q, want the attempt's Unix time", a.header.Get("webhook-timestamp"))
	}
	if sig := a.header.Get("webhook-signature"); !strings.HasPrefix(sig, "v1,") {
		t.Errorf("webhook-signature %q, want v1,<base64>", sig)
	}
	if err := webhook.Verify(testSecret, a.header, a.body); err != nil {
		t.Errorf("Verify of the delivery: %v", err)
	}
	tampered := bytes.Replace(a.body, []byte("user-1"), []byte("user-2"), 1)
	if err := webhook.Verify(testSecret, a.header, tampered); !errors.Is(err, webhook.ErrVerification) {
		t.Errorf("Verify of a tampered body = %v, want ErrVerification", err)
	}
	var p webhook.Payload
	if err := json.Unmarshal(a.body, &p); err != nil || p.Event != webhook.EventMocFinalized || !p.Timestamp.Equal(testPayload.Timestamp) {
		t.Errorf("decoded %+v, %v", p, err)
	}
	if w := l.at(t, "WARN"); len(w) != 0 {
		t.Errorf("WARN logs on success: %v", w)
	}
}

func TestDeliverUnsigned(t *testing.T) {
	rc := newReceiver(t, status(http.StatusOK))
	s := &webhook.Sender{URL: rc.URL}
	if err := s.Deliver(t.Context(), testID, testPayload); err != nil {
		t.Fatal(err)
	}
	a := rc.got()[0]
	if a.header.Get("webhook-id") != testID || a.header.Get("webhook-timestamp") == "" || a.header.Values("webhook-signature") != nil {
		t.Errorf("headers %v: want webhook-id and webhook-timestamp, no webhook-signature", a.header)
	}
}

func TestRetryThenSuccess(t *testing.T) {
	rc := newReceiver(t, status(500, 500, 200))
	var l logs
	s := &webhook.Sender{URL: rc.URL, Secret: testSecret, BaseDelay: base, Logger: l.logger()}
	if err := s.Deliver(t.Context(), testID, testPayload); err != nil {
		t.Fatal(err)
	}
	got := rc.got()
	if len(got) != 3 {
		t.Fatalf("%d deliveries, want 3", len(got))
	}
	spacing(t, got, base, 2*base)
	for i, a := range got {
		if id := a.header.Get("webhook-id"); id != testID {
			t.Errorf("attempt %d: webhook-id %q, want %q", i+1, id, testID)
		}
		if !bytes.Equal(a.body, got[0].body) {
			t.Errorf("attempt %d: body %s differs from the first %s", i+1, a.body, got[0].body)
		}
		if err := webhook.Verify(testSecret, a.header, a.body); err != nil {
			t.Errorf("attempt %d: %v", i+1, err)
		}
	}
	warns := l.at(t, "WARN")
	if len(warns) != 2 {
		t.Fatalf("%d WARN lines, want 2: %v", len(warns), warns)
	}
	retryIns(t, warns, base, 2*base)
	for i, w := range warns {
		if w["attempt"] != float64(i+1) || w["status"] != float64(500) || w["mocId"] != testPayload.MocID {
			t.Errorf("WARN %d = %v, want attempt %d, status 500, the mocId", i, w, i+1)
		}
	}
	if e := l.at(t, "ERROR"); len(e) != 0 {
		t.Errorf("ERROR lines: %v", e)
	}
}

func TestExhausted(t *testing.T) {
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down for maintenance", http.StatusInternalServerError)
	})
	var l logs
	// Attempts unset: the default, 4.
	s := &webhook.Sender{URL: rc.URL, Secret: testSecret, BaseDelay: base, Logger: l.logger()}
	err := s.Deliver(t.Context(), testID, testPayload)
	if !errors.Is(err, webhook.ErrExhausted) || errors.Is(err, webhook.ErrRejected) {
		t.Fatalf("Deliver = %v, want ErrExhausted", err)
	}
	var se *webhook.StatusError
	if !errors.As(err, &se) || se.StatusCode != 500 || !strings.Contains(se.Body, "down for maintenance") {
		t.Errorf("Deliver = %v, want a *StatusError 500 with the body", err)
	}
	got := rc.got()
	if len(got) != webhook.DefaultAttempts {
		t.Fatalf("%d deliveries, want %d", len(got), webhook.DefaultAttempts)
	}
	spacing(t, got, base, 2*base, 4*base)
	warns := l.at(t, "WARN")
	if len(warns) != 4 {
		t.Errorf("%d WARN lines, want 4: %v", len(warns), warns)
	}
	retryIns(t, warns, base, 2*base, 4*base)
	errs := l.at(t, "ERROR")
	if len(errs) != 1 || errs[0]["mocId"] != testPayload.MocID {
		t.Errorf("ERROR lines %v, want one with mocId %s", errs, testPayload.MocID)
	}
}

func TestRejected(t *testing.T) {
	for _, code := range []int{400, 401, 404, 410, 422, http.StatusFound} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
				if code == http.StatusFound {
					http.Redirect(w, r, "/elsewhere", code) // not followed: no second request
					return
				}
				w.WriteHeader(code)
			})
			var l logs
			s := &webhook.Sender{URL: rc.URL, Secret: testSecret, BaseDelay: base, Logger: l.logger()}
			err := s.Deliver(t.Context(), testID, testPayload)
			if !errors.Is(err, webhook.ErrRejected) || errors.Is(err, webhook.ErrExhausted) {
				t.Fatalf("Deliver = %v, want ErrRejected", err)
			}
			if se := (*webhook.StatusError)(nil); !errors.As(err, &se) || se.StatusCode != code {
				t.Errorf("Deliver = %v, want a *StatusError %d", err, code)
			}
			if n := len(rc.got()); n != 1 {
				t.Errorf("%d deliveries, want 1", n)
			}
			if e := l.at(t, "ERROR"); len(e) != 1 || e[0]["status"] != float64(code) {
				t.Errorf("ERROR lines %v, want one with status %d", e, code)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name          string
		status        int
		retryAfter    string
		maxRetryAfter time.Duration
		atLeast       time.Duration
		below         time.Duration
	}{
		{"429 honoured", http.StatusTooManyRequests, "1", 0, time.Second, 0},
		{"503 capped", http.StatusServiceUnavailable, "3600", 50 * time.Millisecond, 50 * time.Millisecond, 3 * time.Second},
		{"429 shorter than the backoff", http.StatusTooManyRequests, "0", 0, base, 0},
		{"500 ignores it", http.StatusInternalServerError, "1", 0, base, 900 * time.Millisecond},
		{"cap below the backoff", http.StatusTooManyRequests, "1", time.Millisecond, base, 900 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 0 {
					w.Header().Set("Retry-After", tt.retryAfter)
					w.WriteHeader(tt.status)
				}
			})
			s := &webhook.Sender{URL: rc.URL, BaseDelay: base, MaxRetryAfter: tt.maxRetryAfter, Logger: slog.New(slog.DiscardHandler)}
			if err := s.Deliver(t.Context(), testID, testPayload); err != nil {
				t.Fatal(err)
			}
			got := rc.got()
			if len(got) != 2 {
				t.Fatalf("%d deliveries, want 2", len(got))
			}
			spacing(t, got, tt.atLeast)
			if gap := got[1].at.Sub(got[0].at); tt.below > 0 && gap >= tt.below {
				t.Errorf("second attempt %v after the first, want < %v", gap, tt.below)
			}
		})
	}
}

func TestAttemptTimeout(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		select { // never answers: waits until the sender gives up on it
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before rc.Close
	var l logs
	const timeout = 50 * time.Millisecond
	s := &webhook.Sender{URL: rc.URL, Attempts: 2, BaseDelay: base, AttemptTimeout: timeout, Logger: l.logger()}
	start := time.Now()
	err := s.Deliver(t.Context(), testID, testPayload)
	elapsed := time.Since(start)
	if !errors.Is(err, webhook.ErrExhausted) {
		t.Fatalf("Deliver = %v, want ErrExhausted", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Deliver = %v: an attempt's timeout must not look like the caller's deadline", err)
	}
	if n := len(rc.got()); n != 2 {
		t.Errorf("%d deliveries, want 2", n)
	}
	if elapsed < 2*timeout+base || elapsed > 2*time.Second {
		t.Errorf("Deliver took %v, want about %v", elapsed, 2*timeout+base)
	}
	for _, w := range l.at(t, "WARN") {
		if msg, _ := w["error"].(string); !strings.Contains(msg, "deadline exceeded") {
			t.Errorf("WARN %v: want the timeout as its error", w)
		}
	}
}

func TestNetworkError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // connections are now refused
	var l logs
	s := &webhook.Sender{URL: url + "/hook?token=sekrit", Attempts: 2, BaseDelay: base, Logger: l.logger()}
	err := s.Deliver(t.Context(), testID, testPayload)
	if !errors.Is(err, webhook.ErrExhausted) {
		t.Fatalf("Deliver = %v, want ErrExhausted", err)
	}
	warns := l.at(t, "WARN")
	if len(warns) != 2 || warns[0]["error"] == nil || warns[0]["status"] != nil {
		t.Errorf("WARN lines %v, want 2 with the error and no status", warns)
	}
	if strings.Contains(l.buf.String(), "sekrit") || strings.Contains(err.Error(), "sekrit") {
		t.Errorf("the URL's query is in the log or the error: %v", err)
	}
}

func TestCancelDuringWait(t *testing.T) {
	rc := newReceiver(t, status(500))
	l := logs{warned: make(chan struct{}, 1)}
	s := &webhook.Sender{URL: rc.URL, BaseDelay: time.Hour, Logger: l.logger()}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-l.warned // the first attempt failed; Deliver is about to wait an hour
		cancel()
	}()
	start := time.Now()
	err := s.Deliver(ctx, testID, testPayload)
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Deliver returned %v after the cancel, want at once", elapsed)
	}
	if !errors.Is(err, context.Canceled) || errors.Is(err, webhook.ErrExhausted) {
		t.Errorf("Deliver = %v, want context.Canceled", err)
	}
	if n := len(rc.got()); n != 1 {
		t.Errorf("%d deliveries, want 1", n)
	}
	if e := l.at(t, "ERROR"); len(e) != 0 {
		t.Errorf("ERROR lines %v: a cancelled delivery is not given up", e)
	}
}

func TestDeadlineBeforeWait(t *testing.T) {
	rc := newReceiver(t, status(503))
	s := &webhook.Sender{URL: rc.URL, BaseDelay: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := s.Deliver(ctx, testID, testPayload)
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Deliver took %v, want it to stop before a wait that outlasts the deadline", elapsed)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Deliver = %v, want context.DeadlineExceeded", err)
	}
	if n := len(rc.got()); n != 1 {
		t.Errorf("%d deliveries, want 1", n)
	}
}

func TestCancelledBeforeStart(t *testing.T) {
	rc := newReceiver(t, status(200))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	s := &webhook.Sender{URL: rc.URL, Logger: slog.New(slog.DiscardHandler)}
	if err := s.Deliver(ctx, testID, testPayload); !errors.Is(err, context.Canceled) {
		t.Errorf("Deliver = %v, want context.Canceled", err)
	}
	if n := len(rc.got()); n != 0 {
		t.Errorf("%d deliveries, want 0", n)
	}
}

func TestBadInput(t *testing.T) {
	rc := newReceiver(t, status(200))
	const badSecret = "whsec_c2hvcnQ="
	for _, tt := range []struct {
		name    string
		s       webhook.Sender
		id      string
		p       webhook.Payload
		errConf bool
	}{
		{"bad secret", webhook.Sender{URL: rc.URL, Secret: badSecret}, testID, testPayload, true},
		{"secret without prefix", webhook.Sender{URL: rc.URL, Secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, testID, testPayload, true},
		{"no URL", webhook.Sender{}, testID, testPayload, true},
		{"relative URL", webhook.Sender{URL: "/hooks"}, testID, testPayload, true},
		{"ftp URL", webhook.Sender{URL: "ftp://example.com/"}, testID, testPayload, true},
		{"no id", webhook.Sender{URL: rc.URL}, "", testPayload, false},
		{"id with a dot", webhook.Sender{URL: rc.URL}, "a.b", testPayload, false},
		{"no mocId", webhook.Sender{URL: rc.URL}, testID, webhook.Payload{Timestamp: time.Now()}, false},
		{"no timestamp", webhook.Sender{URL: rc.URL}, testID, webhook.Payload{MocID: "m"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.s.Deliver(t.Context(), tt.id, tt.p)
			if err == nil || errors.Is(err, webhook.ErrConfig) != tt.errConf {
				t.Errorf("Deliver = %v, want an error (ErrConfig: %v)", err, tt.errConf)
			}
			if err != nil && strings.Contains(err.Error(), "c2hvcnQ") {
				t.Errorf("the error shows the secret: %v", err)
			}
			if tt.errConf {
				if _, err := webhook.New(tt.s.URL, tt.s.Secret); !errors.Is(err, webhook.ErrConfig) {
					t.Errorf("New = %v, want ErrConfig", err)
				}
			}
		})
	}
	if n := len(rc.got()); n != 0 {
		t.Errorf("%d deliveries, want 0", n)
	}
}
