package progress

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mocbuilders/moc-upload/shared/telemetry/telemetrytest"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// These tests install a global TracerProvider: none of them runs in
// parallel (Go runs the parallel tests only after them).

func sendSpans(exp *tracetest.InMemoryExporter) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == spanSend {
			out = append(out, s)
		}
	}
	return out
}

// Each call is one progress.send span under the caller's, and each post is
// made in its context (where the management client's otelaws spans go);
// the messages are the events' JSON, unchanged.
func TestSendSpan(t *testing.T) {
	exp, tracer := telemetrytest.RecordSpans(t)
	conns := &fakeConns{bySess: map[string][]string{"s1": {"a", "gone", "bad", "b"}}}
	var mu sync.Mutex
	var postedUnder []trace.SpanContext
	poster := &fakePoster{answer: func(ctx context.Context, id string) error {
		mu.Lock()
		postedUnder = append(postedUnder, trace.SpanContextFromContext(ctx))
		mu.Unlock()
		switch id {
		case "gone":
			return &types.GoneException{}
		case "bad":
			return errors.New("boom: 500 internal")
		}
		return nil
	}}
	n, _ := newNotifier(conns, poster)

	ctx, request := tracer.Start(t.Context(), "request")
	parts := []upload.PartCompleted{part("s1", 1, 1, 2), part("s1", 2, 2, 2)}
	n.Announce(ctx, upload.Events{Parts: parts})
	request.End()

	spans := sendSpans(exp)
	if len(spans) != 1 {
		t.Fatalf("%d progress.send spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Parent.SpanID() != request.SpanContext().SpanID() || s.SpanContext.TraceID() != request.SpanContext().TraceID() {
		t.Errorf("progress.send's parent = %s, want the request's span", s.Parent.SpanID())
	}
	want := map[string]any{"event": TypePartCompleted, "sessionId": "s1", "connections": int64(4),
		"sent": int64(4), "gone": int64(1), "failed": int64(2)}
	got := telemetrytest.Attrs(s)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("attribute %s = %v, want %v", k, got[k], v)
		}
	}
	if s.Status.Code != codes.Error {
		t.Errorf("status = %s, want Error: messages were not delivered", s.Status.Code)
	}
	if len(s.Events) == 0 || s.Events[0].Name != "exception" {
		t.Errorf("events = %+v, want the first error recorded", s.Events)
	}
	mu.Lock()
	for _, sc := range postedUnder {
		if !sc.Equal(s.SpanContext) {
			t.Errorf("a post was made under %s, not progress.send %s", sc.SpanID(), s.SpanContext.SpanID())
		}
	}
	mu.Unlock()
	if got := poster.received("a"); len(got) != 2 || got[0] != partJSON(parts[0]) || got[1] != partJSON(parts[1]) {
		t.Errorf("connection a got %v, want the events' JSON", got)
	}
}

// A call that delivered everything, gone connections aside, is not an
// error; a call without a span in its context starts a trace.
func TestSendSpanDelivered(t *testing.T) {
	exp, _ := telemetrytest.RecordSpans(t)
	conns := &fakeConns{bySess: map[string][]string{"s1": {"a", "gone"}}}
	poster := &fakePoster{answer: func(_ context.Context, id string) error {
		if id == "gone" {
			return &types.GoneException{}
		}
		return nil
	}}
	n, _ := newNotifier(conns, poster)
	n.Announce(context.Background(), upload.Events{Finalized: &upload.SessionFinalized{SessionID: "s1", MocID: "m1"}})
	spans := sendSpans(exp)
	if len(spans) != 1 {
		t.Fatalf("%d progress.send spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Status.Code != codes.Unset || s.Parent.IsValid() {
		t.Errorf("status %s, parent %v; want Unset, a root", s.Status.Code, s.Parent)
	}
	got := telemetrytest.Attrs(s)
	if got["event"] != TypeSessionFinalized || got["connections"] != int64(2) || got["sent"] != int64(1) ||
		got["gone"] != int64(1) || got["failed"] != int64(0) {
		t.Errorf("attributes %v", got)
	}

	// Connections not listed: status Error.
	exp.Reset()
	conns.listErr = errors.New("db down")
	n.Announce(context.Background(), upload.Events{Finalized: &upload.SessionFinalized{SessionID: "s1", MocID: "m1"}})
	if spans := sendSpans(exp); len(spans) != 1 || spans[0].Status.Code != codes.Error {
		t.Errorf("spans %+v, want one with status Error", spans)
	}
}

// Nothing to send: no span.
func TestNoEventsNoSpan(t *testing.T) {
	exp, _ := telemetrytest.RecordSpans(t)
	n, _ := newNotifier(&fakeConns{}, &fakePoster{})
	n.Announce(t.Context(), upload.Events{Parts: nil})
	if got := exp.GetSpans(); len(got) != 0 {
		t.Errorf("spans %v", got)
	}
}

// Parts of several sessions in one call: the span names them all.
func TestSendSpanSessions(t *testing.T) {
	exp, _ := telemetrytest.RecordSpans(t)
	n, _ := newNotifier(&fakeConns{bySess: map[string][]string{"s1": {"a"}, "s2": {"b"}}}, &fakePoster{})
	n.Announce(t.Context(), upload.Events{Parts: []upload.PartCompleted{part("s1", 1, 1, 1), part("s2", 1, 1, 1)}})
	spans := sendSpans(exp)
	if len(spans) != 1 {
		t.Fatalf("%d progress.send spans, want 1", len(spans))
	}
	got := telemetrytest.Attrs(spans[0])
	if ids, _ := got["sessionIds"].([]string); len(ids) != 2 || ids[0] != "s1" || ids[1] != "s2" || got["sessionId"] != nil {
		t.Errorf("attributes %v, want sessionIds [s1 s2]", got)
	}
}

// A request's parts and finalized event are one call: one span, naming
// both kinds of events.
func TestSendSpanPartsAndFinalized(t *testing.T) {
	exp, _ := telemetrytest.RecordSpans(t)
	n, _ := newNotifier(&fakeConns{bySess: map[string][]string{"s1": {"a"}}}, &fakePoster{})
	n.Announce(t.Context(), upload.Events{Parts: []upload.PartCompleted{part("s1", 1, 1, 1)},
		Finalized: &upload.SessionFinalized{SessionID: "s1", MocID: "m1"}})
	spans := sendSpans(exp)
	if len(spans) != 1 {
		t.Fatalf("%d progress.send spans, want 1", len(spans))
	}
	got := telemetrytest.Attrs(spans[0])
	if kinds, _ := got["events"].([]string); len(kinds) != 2 || kinds[0] != TypePartCompleted ||
		kinds[1] != TypeSessionFinalized || got["event"] != nil || got["sent"] != int64(2) {
		t.Errorf("attributes %v, want events [part, finalized], 2 sent", got)
	}
}

// The real management API client (NewClient) makes each post an
// OpenTelemetry client span (otelaws), a child of progress.send.
func TestRealClientPostIsAChildSpan(t *testing.T) {
	exp, tracer := telemetrytest.RecordSpans(t) // before NewClient: otelaws takes the provider then
	store := openStore(t)
	api := newManagementAPI(t, "/dev")
	s1 := newSession(t, store, "u1")
	connect(t, store, "c1=", "u1", s1)
	n, _ := newClientNotifier(t, store, ClientConfig{Endpoint: api.endpoint()})

	ctx, request := tracer.Start(t.Context(), "request")
	n.Announce(ctx, upload.Events{Finalized: &upload.SessionFinalized{SessionID: s1, MocID: "m1"}})
	request.End()

	send := sendSpans(exp)
	if len(send) != 1 {
		t.Fatalf("%d progress.send spans, want 1", len(send))
	}
	var posts []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Parent.SpanID() == send[0].SpanContext.SpanID() {
			posts = append(posts, s)
		}
	}
	if len(posts) != 1 || posts[0].SpanKind != trace.SpanKindClient || !strings.Contains(posts[0].Name, "PostToConnection") {
		t.Errorf("children of progress.send: %+v, want one client span of PostToConnection", posts)
	}
	if got := api.received("c1="); len(got) != 1 {
		t.Errorf("c1= received %v, want the finalized event", got)
	}
}
