package telemetrytest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/mocbuilders/moc-upload/shared/telemetry/telemetrytest"
)

// The OpenTelemetry SDK's own OTLP/HTTP exporter sends two traces; the
// receiver keeps their spans with ids, parents, kinds, times, attributes
// and statuses, and Trace picks the one asked for.
func TestReceiverKeepsExportedSpans(t *testing.T) {
	ctx := context.Background()
	rcv := &telemetrytest.Receiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(srv.URL+"/v1/traces"),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(ctx) }()
	tr := tp.Tracer("test")

	rctx, root := tr.Start(ctx, "POST /x", trace.WithSpanKind(trace.SpanKindServer))
	_, child := tr.Start(rctx, "work", trace.WithAttributes(attribute.String("mocId", "m1"),
		attribute.Int("fileCount", 3), attribute.Bool("resumed", true)))
	child.SetStatus(codes.Error, "failed")
	child.End()
	root.End()
	_, other := tr.Start(ctx, "work", trace.WithAttributes(attribute.String("mocId", "m2")))
	other.End()
	if err := tp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}

	if n := rcv.Count(); n != 3 {
		t.Fatalf("%d spans received, want 3", n)
	}
	if rcv.Exports() != 3 { // a syncer exports each span as it ends
		t.Fatalf("%d exports, want 3", rcv.Exports())
	}
	got := rcv.Trace("work", "mocId", "m1")
	if len(got) != 2 || got[0].Name != "POST /x" || got[1].Name != "work" {
		t.Fatalf("trace of m1: %+v, want POST /x then work", got)
	}
	r, c := got[0], got[1]
	if r.TraceID != root.SpanContext().TraceID().String() || r.SpanID != root.SpanContext().SpanID().String() ||
		r.ParentID != "" || r.Kind != 2 || c.ParentID != r.SpanID || c.Kind != 1 {
		t.Errorf("ids and kinds: root %+v, child %+v", r, c)
	}
	if c.Attrs["mocId"] != "m1" || c.Attrs["fileCount"] != "3" || c.Attrs["resumed"] != "true" || c.Status != "STATUS_CODE_ERROR" {
		t.Errorf("child's attributes %v, status %s", c.Attrs, c.Status)
	}
	if r.Start.IsZero() || r.End.Before(c.End) || c.End.Before(c.Start) {
		t.Errorf("times: root %v…%v, child %v…%v", r.Start, r.End, c.Start, c.End)
	}
	if got := rcv.Trace("work", "mocId", "nope"); got != nil {
		t.Errorf("trace of an unknown id: %+v, want nil", got)
	}

	rcv.Forget()
	if n, tr := rcv.Count(), rcv.Trace("work", "mocId", "m1"); n != 0 || tr != nil {
		t.Errorf("after Forget: %d spans, trace %+v", n, tr)
	}
}

func TestReceiverRefusesWhatIsNotAnExport(t *testing.T) {
	rcv := &telemetrytest.Receiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	for _, req := range []struct{ method, path, body string }{
		{http.MethodGet, "/v1/traces", ""},
		{http.MethodPost, "/v1/metrics", ""},
		{http.MethodPost, "/v1/traces", "\xff not protobuf"},
	} {
		r, err := http.NewRequest(req.method, srv.URL+req.path, strings.NewReader(req.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s %s %q: %s, want 400", req.method, req.path, req.body, resp.Status)
		}
	}
	if rcv.Count() != 0 || rcv.Exports() != 0 {
		t.Errorf("%d spans, %d exports kept from refused requests", rcv.Count(), rcv.Exports())
	}
}
