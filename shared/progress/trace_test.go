package progress

import (
	"context"
	"errors"
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

func recordSpans(t *testing.T) (*tracetest.InMemoryExporter, trace.Tracer) {
	t.Helper()
	return telemetrytest.RecordSpans(t)
}

func spanAttrs(s tracetest.SpanStub) map[string]any {
	m := map[string]any{}
	for _, kv := range s.Attributes {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

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
	exp, tracer := recordSpans(t)
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
	got := spanAttrs(s)
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
	exp, _ := recordSpans(t)
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
	got := spanAttrs(s)
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
	exp, _ := recordSpans(t)
	n, _ := newNotifier(&fakeConns{}, &fakePoster{})
	n.Announce(t.Context(), upload.Events{Parts: nil})
	if got := exp.GetSpans(); len(got) != 0 {
		t.Errorf("spans %v", got)
	}
}

// Parts of several sessions in one call: the span names them all.
func TestSendSpanSessions(t *testing.T) {
	exp, _ := recordSpans(t)
	n, _ := newNotifier(&fakeConns{bySess: map[string][]string{"s1": {"a"}, "s2": {"b"}}}, &fakePoster{})
	n.Announce(t.Context(), upload.Events{Parts: []upload.PartCompleted{part("s1", 1, 1, 1), part("s2", 1, 1, 1)}})
	spans := sendSpans(exp)
	if len(spans) != 1 {
		t.Fatalf("%d progress.send spans, want 1", len(spans))
	}
	got := spanAttrs(spans[0])
	if ids, _ := got["sessionIds"].([]string); len(ids) != 2 || ids[0] != "s1" || ids[1] != "s2" || got["sessionId"] != nil {
		t.Errorf("attributes %v, want sessionIds [s1 s2]", got)
	}
}

// A request's parts and finalized event are one call: one span, naming
// both kinds of events.
func TestSendSpanPartsAndFinalized(t *testing.T) {
	exp, _ := recordSpans(t)
	n, _ := newNotifier(&fakeConns{bySess: map[string][]string{"s1": {"a"}}}, &fakePoster{})
	n.Announce(t.Context(), upload.Events{Parts: []upload.PartCompleted{part("s1", 1, 1, 1)},
		Finalized: &upload.SessionFinalized{SessionID: "s1", MocID: "m1"}})
	spans := sendSpans(exp)
	if len(spans) != 1 {
		t.Fatalf("%d progress.send spans, want 1", len(spans))
	}
	got := spanAttrs(spans[0])
	if kinds, _ := got["events"].([]string); len(kinds) != 2 || kinds[0] != TypePartCompleted ||
		kinds[1] != TypeSessionFinalized || got["event"] != nil || got["sent"] != int64(2) {
		t.Errorf("attributes %v, want events [part, finalized], 2 sent", got)
	}
}
