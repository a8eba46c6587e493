package progress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// Fakes: connections in memory, a poster whose answer per connection the
// test chooses, and a log handler that keeps the records.

type fakeConns struct {
	mu       sync.Mutex
	bySess   map[string][]string
	listErr  error
	lists    []string // sessions listed, in order
	gone     []string // connections deleted as gone
	graces   []time.Duration
	forgetFn func(id string) error
}

func (f *fakeConns) SessionConnections(_ context.Context, sessionID string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists = append(f.lists, sessionID)
	if f.listErr != nil {
		return nil, f.listErr
	}
	return slices.Clone(f.bySess[sessionID]), nil
}

func (f *fakeConns) DeleteGoneConnection(_ context.Context, id string, minAge time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gone = append(f.gone, id)
	f.graces = append(f.graces, minAge)
	if f.forgetFn != nil {
		return f.forgetFn(id)
	}
	return nil
}

type fakePoster struct {
	mu       sync.Mutex
	got      map[string][]string // connection → messages, in order
	answer   func(ctx context.Context, id string) error
	inFlight atomic.Int32
	maxIn    atomic.Int32
	delay    time.Duration
}

func (p *fakePoster) PostToConnection(ctx context.Context, in *apigatewaymanagementapi.PostToConnectionInput, _ ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.PostToConnectionOutput, error) {
	n := p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	for {
		m := p.maxIn.Load()
		if n <= m || p.maxIn.CompareAndSwap(m, n) {
			break
		}
	}
	if p.delay > 0 {
		time.Sleep(p.delay)
	}
	id := aws.ToString(in.ConnectionId)
	if p.answer != nil {
		if err := p.answer(ctx, id); err != nil {
			return nil, err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.got == nil {
		p.got = map[string][]string{}
	}
	p.got[id] = append(p.got[id], string(in.Data))
	return &apigatewaymanagementapi.PostToConnectionOutput{}, nil
}

func (p *fakePoster) received(id string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got[id]
}

type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// warnings returns the WARN records, each as its message and attributes.
func (h *logRecorder) warnings() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]any
	for _, r := range h.records {
		if r.Level != slog.LevelWarn {
			continue
		}
		m := map[string]any{"msg": r.Message}
		r.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.Any()
			return true
		})
		out = append(out, m)
	}
	return out
}

func newNotifier(conns *fakeConns, poster Poster) (*Notifier, *logRecorder) {
	n := New(conns, poster)
	logs := &logRecorder{}
	n.Logger = slog.New(logs)
	return n, logs
}

func part(session string, n, completed, total int) upload.PartCompleted {
	return upload.PartCompleted{SessionID: session, FileID: "f1", PartNumber: n, ETag: fmt.Sprintf("etag%d", n),
		TotalParts: total, CompletedParts: completed}
}

func partJSON(p upload.PartCompleted) string { return string(mustJSON(NewPartCompletedEvent(p))) }

// Tests.

func TestPercentComplete(t *testing.T) {
	for _, c := range []struct{ completed, total, want int }{
		{1, 10, 10}, {0, 10, 0}, {1, 3, 33}, {2, 3, 66}, {3, 3, 100}, {99, 100, 99},
		{9999, 10000, 99}, {10000, 10000, 100}, {1, 1, 100}, {5, 0, 0}, {4, 3, 100}, {-1, 3, 0},
	} {
		if got := PercentComplete(c.completed, c.total); got != c.want {
			t.Errorf("PercentComplete(%d, %d) = %d, want %d", c.completed, c.total, got, c.want)
		}
	}
}

func TestEventJSON(t *testing.T) {
	got := string(mustJSON(NewPartCompletedEvent(upload.PartCompleted{
		SessionID: "s1", FileID: "f1", PartNumber: 1, ETag: "abc", TotalParts: 10, CompletedParts: 1,
	})))
	want := `{"type":"upload.part.completed","sessionId":"s1","fileId":"f1","partNumber":1,"etag":"abc","totalParts":10,"completedParts":1,"percentComplete":10}`
	if got != want {
		t.Errorf("part event\n got %s\nwant %s", got, want)
	}
	got = string(mustJSON(NewSessionFinalizedEvent(upload.SessionFinalized{SessionID: "s1", MocID: "m1"})))
	want = `{"type":"upload.session.finalized","sessionId":"s1","mocId":"m1","status":"success"}`
	if got != want {
		t.Errorf("finalized event\n got %s\nwant %s", got, want)
	}
}

func TestEveryConnectionGetsEveryEventInOrder(t *testing.T) {
	conns := &fakeConns{bySess: map[string][]string{"s1": {"a", "b", "c"}, "s2": {"z"}}}
	poster := &fakePoster{}
	n, logs := newNotifier(conns, poster)
	parts := []upload.PartCompleted{part("s1", 3, 1, 3), part("s1", 1, 2, 3), part("s1", 2, 3, 3)}
	n.Announce(t.Context(), upload.Events{Parts: parts})

	want := []string{partJSON(parts[0]), partJSON(parts[1]), partJSON(parts[2])}
	for _, id := range []string{"a", "b", "c"} {
		if got := poster.received(id); !reflect.DeepEqual(got, want) {
			t.Errorf("%s received %v, want %v", id, got, want)
		}
	}
	if got := poster.received("z"); got != nil {
		t.Errorf("a connection of another session received %v", got)
	}
	if !reflect.DeepEqual(conns.lists, []string{"s1"}) {
		t.Errorf("sessions listed %v, want [s1] once", conns.lists)
	}
	if w := logs.warnings(); len(w) != 0 {
		t.Errorf("warnings after a clean delivery: %v", w)
	}

	n.Announce(t.Context(), upload.Events{Finalized: &upload.SessionFinalized{SessionID: "s2", MocID: "m1"}})
	if got, want := poster.received("z"), []string{`{"type":"upload.session.finalized","sessionId":"s2","mocId":"m1","status":"success"}`}; !reflect.DeepEqual(got, want) {
		t.Errorf("z received %v, want %v", got, want)
	}
}

func TestOneCallListsEachSessionOnce(t *testing.T) {
	conns := &fakeConns{bySess: map[string][]string{"s1": {"a"}, "s2": {"b"}}}
	poster := &fakePoster{}
	n, _ := newNotifier(conns, poster)
	n.Announce(t.Context(), upload.Events{Parts: []upload.PartCompleted{part("s1", 1, 1, 2), part("s2", 1, 1, 1), part("s1", 2, 2, 2)}})
	if !reflect.DeepEqual(conns.lists, []string{"s1", "s2"}) {
		t.Errorf("sessions listed %v, want [s1 s2]", conns.lists)
	}
	if got := poster.received("a"); len(got) != 2 {
		t.Errorf("a received %d messages, want 2", len(got))
	}
	if got := poster.received("b"); len(got) != 1 {
		t.Errorf("b received %d messages, want 1", len(got))
	}
}

func TestNoConnectionsNoPostNoWarning(t *testing.T) {
	conns := &fakeConns{}
	poster := &fakePoster{}
	n, logs := newNotifier(conns, poster)
	n.Announce(t.Context(), upload.Events{Parts: []upload.PartCompleted{part("s1", 1, 1, 1)}})
	n.Announce(t.Context(), upload.Events{Parts: nil})
	if len(poster.got) != 0 || len(logs.warnings()) != 0 {
		t.Errorf("posts %v, warnings %v; want none", poster.got, logs.warnings())
	}
	if len(conns.lists) != 1 {
		t.Errorf("listed %v; an empty call must not list", conns.lists)
	}
}

func TestGoneConnectionIsForgotten(t *testing.T) {
	for name, gone := range map[string]error{
		"GoneException": &types.GoneException{Message: aws.String("gone")},
		"wrapped":       fmt.Errorf("operation error: %w", &types.GoneException{}),
	} {
		t.Run(name, func(t *testing.T) {
			conns := &fakeConns{bySess: map[string][]string{"s1": {"a", "gone", "b"}}}
			var goneCalls atomic.Int32
			poster := &fakePoster{answer: func(_ context.Context, id string) error {
				if id == "gone" {
					goneCalls.Add(1)
					return gone
				}
				return nil
			}}
			n, logs := newNotifier(conns, poster)
			n.GoneGrace = 7 * time.Second
			n.Announce(t.Context(), upload.Events{Parts: []upload.PartCompleted{part("s1", 1, 1, 2), part("s1", 2, 2, 2)}})
			if !reflect.DeepEqual(conns.gone, []string{"gone"}) || conns.graces[0] != 7*time.Second {
				t.Errorf("deleted as gone %v with grace %v, want [gone] with 7s", conns.gone, conns.graces)
			}
			if goneCalls.Load() != 1 {
				t.Errorf("posted %d times to a gone connection, want 1 (then stop)", goneCalls.Load())
			}
			if len(poster.received("a")) != 2 || len(poster.received("b")) != 2 {
				t.Errorf("the live connections missed events: %v", poster.got)
			}
			if w := logs.warnings(); len(w) != 0 {
				t.Errorf("a 410 is not a failure, but was logged: %v", w)
			}
		})
	}
}

func TestFailedPostsLogOneWarning(t *testing.T) {
	conns := &fakeConns{bySess: map[string][]string{"s1": {"a", "bad1", "bad2", "b"}}}
	boom := errors.New("boom: 500 internal")
	poster := &fakePoster{answer: func(_ context.Context, id string) error {
		if strings.HasPrefix(id, "bad") {
			return boom
		}
		return nil
	}}
	n, logs := newNotifier(conns, poster)
	n.Announce(t.Context(), upload.Events{Parts: []upload.PartCompleted{part("s1", 1, 1, 3), part("s1", 2, 2, 3), part("s1", 3, 3, 3)}})
	if len(poster.received("a")) != 3 || len(poster.received("b")) != 3 {
		t.Errorf("healthy connections missed events: %v", poster.got)
	}
	w := logs.warnings()
	if len(w) != 1 {
		t.Fatalf("%d warnings, want 1: %v", len(w), w)
	}
	if w[0]["failed"] != int64(6) || w[0]["posts"] != int64(12) || w[0]["sent"] != int64(6) || w[0]["firstError"] != boom.Error() {
		t.Errorf("warning = %v, want 6 of 12 failed, first error %q", w[0], boom)
	}
	if len(conns.gone) != 0 {
		t.Errorf("a failing (not gone) connection was deleted: %v", conns.gone)
	}
}

func TestCallIsBoundedInTime(t *testing.T) {
	// Every post hangs until its context ends: the call ends at Timeout.
	conns := &fakeConns{bySess: map[string][]string{"s1": {"a", "b", "c"}}}
	poster := &fakePoster{answer: func(ctx context.Context, _ string) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	n, logs := newNotifier(conns, poster)
	n.Timeout = 150 * time.Millisecond
	start := time.Now()
	n.Announce(t.Context(), upload.Events{Parts: []upload.PartCompleted{part("s1", 1, 1, 2), part("s1", 2, 2, 2)}})
	if took := time.Since(start); took > time.Second {
		t.Errorf("call took %v with a 150ms timeout", took)
	}
	w := logs.warnings()
	if len(w) != 1 || w[0]["failed"] != int64(6) {
		t.Errorf("warnings = %v, want one with 6 failed", w)
	}
}

func TestCallEndsBeforeTheRequestsDeadline(t *testing.T) {
	conns := &fakeConns{bySess: map[string][]string{"s1": {"a"}}}
	poster := &fakePoster{answer: func(ctx context.Context, _ string) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	n, logs := newNotifier(conns, poster)
	n.Timeout = time.Minute
	ctx, cancel := context.WithTimeout(t.Context(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	n.Announce(ctx, upload.Events{Finalized: &upload.SessionFinalized{SessionID: "s1", MocID: "m"}})
	if took := time.Since(start); took > 300*time.Millisecond {
		t.Errorf("call took %v, want about half the 400ms the request had left", took)
	}
	if len(logs.warnings()) != 1 {
		t.Errorf("warnings = %v, want 1", logs.warnings())
	}
}

func TestCancelledRequestStillSends(t *testing.T) {
	conns := &fakeConns{bySess: map[string][]string{"s1": {"a"}}}
	poster := &fakePoster{}
	n, _ := newNotifier(conns, poster)
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // the client went away after the commit
	n.Announce(ctx, upload.Events{Finalized: &upload.SessionFinalized{SessionID: "s1", MocID: "m"}})
	if len(poster.received("a")) != 1 {
		t.Errorf("a received %v, want the event", poster.received("a"))
	}
}

func TestConcurrencyIsBounded(t *testing.T) {
	ids := make([]string, 40)
	for i := range ids {
		ids[i] = fmt.Sprintf("c%02d", i)
	}
	conns := &fakeConns{bySess: map[string][]string{"s1": ids}}
	poster := &fakePoster{delay: 20 * time.Millisecond}
	n, logs := newNotifier(conns, poster)
	n.Concurrency = 5
	start := time.Now()
	n.Announce(t.Context(), upload.Events{Parts: []upload.PartCompleted{part("s1", 1, 1, 1)}})
	took := time.Since(start)
	if m := poster.maxIn.Load(); m > 5 || m < 2 {
		t.Errorf("%d posts in flight at most, want 2..5", m)
	}
	if took > 40*20*time.Millisecond/2 {
		t.Errorf("took %v: posts were not concurrent", took)
	}
	for _, id := range ids {
		if len(poster.received(id)) != 1 {
			t.Errorf("%s received %v", id, poster.received(id))
		}
	}
	if len(logs.warnings()) != 0 {
		t.Errorf("warnings: %v", logs.warnings())
	}
}

func TestListingFailsLogsOneWarning(t *testing.T) {
	conns := &fakeConns{listErr: errors.New("database down")}
	poster := &fakePoster{}
	n, logs := newNotifier(conns, poster)
	n.Announce(t.Context(), upload.Events{Parts: []upload.PartCompleted{part("s1", 1, 1, 2), part("s2", 1, 1, 2)}})
	w := logs.warnings()
	if len(w) != 1 || w[0]["listError"] != "database down" || w[0]["sessionsNotListed"] != int64(2) {
		t.Errorf("warnings = %v, want one naming the listing error", w)
	}
	if len(poster.got) != 0 {
		t.Errorf("posted %v", poster.got)
	}
}

func TestForgetFailureIsLogged(t *testing.T) {
	conns := &fakeConns{bySess: map[string][]string{"s1": {"gone"}},
		forgetFn: func(string) error { return errors.New("delete failed") }}
	poster := &fakePoster{answer: func(context.Context, string) error { return &types.GoneException{} }}
	n, logs := newNotifier(conns, poster)
	n.Announce(t.Context(), upload.Events{Parts: []upload.PartCompleted{part("s1", 1, 1, 2)}})
	w := logs.warnings()
	if len(w) != 1 || w[0]["deleteError"] != "delete failed" || w[0]["gone"] != int64(1) {
		t.Errorf("warnings = %v, want one naming the delete error", w)
	}
}

func TestDisabledWarnsOncePerCall(t *testing.T) {
	logs := &logRecorder{}
	d := Disabled{Logger: slog.New(logs)}
	// A finalize's call: the parts it learnt and the finalized event.
	d.Announce(t.Context(), upload.Events{Parts: []upload.PartCompleted{part("s1", 1, 1, 2), part("s1", 2, 2, 2)},
		Finalized: &upload.SessionFinalized{SessionID: "s1", MocID: "m"}})
	d.Announce(t.Context(), upload.Events{Finalized: &upload.SessionFinalized{SessionID: "s1", MocID: "m"}})
	d.Announce(t.Context(), upload.Events{})
	w := logs.warnings()
	if len(w) != 2 {
		t.Fatalf("%d warnings, want 2 (one per call with events): %v", len(w), w)
	}
	for _, r := range w {
		if !strings.Contains(r["msg"].(string), "no WebSocket endpoint configured") || r["sessionId"] != "s1" {
			t.Errorf("warning = %v", r)
		}
	}
	if w[0]["dropped"] != int64(3) || !reflect.DeepEqual(w[0]["events"], []string{TypePartCompleted, TypeSessionFinalized}) ||
		w[1]["dropped"] != int64(1) || w[1]["event"] != TypeSessionFinalized {
		t.Errorf("warnings = %v, want 3 events dropped (parts, finalized), then 1 (finalized)", w)
	}
}

// One call with a request's parts and its finalized event: each connection
// gets the parts in order, then the finalized event; the session is listed
// once; a failing endpoint makes one warning for the whole call.
func TestPartsThenFinalizedInOneCall(t *testing.T) {
	conns := &fakeConns{bySess: map[string][]string{"s1": {"a", "b", "bad"}}}
	boom := errors.New("boom: 500 internal")
	poster := &fakePoster{answer: func(_ context.Context, id string) error {
		if id == "bad" {
			return boom
		}
		return nil
	}}
	n, logs := newNotifier(conns, poster)
	parts := []upload.PartCompleted{part("s1", 2, 1, 2), part("s1", 1, 2, 2)}
	fin := upload.SessionFinalized{SessionID: "s1", MocID: "m1"}
	n.Announce(t.Context(), upload.Events{Parts: parts, Finalized: &fin})
	want := []string{partJSON(parts[0]), partJSON(parts[1]), string(mustJSON(NewSessionFinalizedEvent(fin)))}
	for _, id := range []string{"a", "b"} {
		if got := poster.received(id); !reflect.DeepEqual(got, want) {
			t.Errorf("%s received %v, want %v", id, got, want)
		}
	}
	if !reflect.DeepEqual(conns.lists, []string{"s1"}) {
		t.Errorf("sessions listed %v, want [s1] once", conns.lists)
	}
	w := logs.warnings()
	if len(w) != 1 {
		t.Fatalf("%d warnings, want 1 for the call: %v", len(w), w)
	}
	if w[0]["failed"] != int64(3) || w[0]["posts"] != int64(9) ||
		!reflect.DeepEqual(w[0]["events"], []string{TypePartCompleted, TypeSessionFinalized}) {
		t.Errorf("warning = %v, want 3 of 9 posts failed, events [part, finalized]", w[0])
	}
}

func TestCheckEndpoint(t *testing.T) {
	for _, ok := range []string{
		"https://abc123.execute-api.eu-west-1.amazonaws.com/prod",
		"http://127.0.0.1:3001",
		"http://localhost:3001/",
	} {
		if err := CheckEndpoint(ok); err != nil {
			t.Errorf("CheckEndpoint(%q) = %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"wss://abc.execute-api.eu-west-1.amazonaws.com/prod": "https://",
		"127.0.0.1:3001":             "https://",
		"ftp://x":                    "https://",
		"https://":                   "no host",
		"https://x/prod?stage=1":     "query",
		"http://[::1":                "not a URL",
		"abc.execute-api.amazonaws":  "https://",
		"https://x.example.com/p#id": "fragment",
	} {
		err := CheckEndpoint(bad)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckEndpoint(%q) = %v, want an error mentioning %q", bad, err, want)
		}
	}
}

func TestExecuteAPIRegion(t *testing.T) {
	for host, want := range map[string]string{
		"abc123.execute-api.eu-west-1.amazonaws.com":    "eu-west-1",
		"ABC123.EXECUTE-API.US-EAST-2.AMAZONAWS.COM":    "us-east-2",
		"abc.execute-api.cn-north-1.amazonaws.com.cn":   "cn-north-1",
		"abc.execute-api.amazonaws.com":                 "",
		"ws.example.com":                                "",
		"127.0.0.1":                                     "",
		"abc.execute-api.eu-west-1.amazonaws.com.evil.": "",
	} {
		if got := executeAPIRegion(host); got != want {
			t.Errorf("executeAPIRegion(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestOpenWithoutEndpointIsDisabled(t *testing.T) {
	p, err := Open(t.Context(), &fakeConns{}, ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(Disabled); !ok {
		t.Errorf("Open without an endpoint = %T, want Disabled", p)
	}
	if _, err := Open(t.Context(), &fakeConns{}, ClientConfig{Endpoint: "wss://x/prod"}); err == nil {
		t.Error("Open with a wss:// endpoint succeeded")
	}
}
