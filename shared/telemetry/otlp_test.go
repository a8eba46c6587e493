package telemetry

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// recordedSpans are spans with everything OTLP carries: two scopes (one
// with a version and attributes), every attribute type (slices, maps,
// bytes, an empty value, NaN and infinities), events, links (a remote
// one, with a trace state), a remote parent, statuses, dropped counts.
func recordedSpans(t *testing.T) []sdktrace.ReadOnlySpan {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	res := resource.NewWithAttributes("https://opentelemetry.io/schemas/1.43.0",
		attribute.String("service.name", "moc-upload"), attribute.Int("faas.max_memory", 1<<30))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithResource(res),
		sdktrace.WithRawSpanLimits(sdktrace.SpanLimits{AttributeCountLimit: 12, EventCountLimit: 2, LinkCountLimit: 1,
			AttributePerEventCountLimit: 4, AttributePerLinkCountLimit: 4, AttributeValueLengthLimit: -1}))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	ts, _ := trace.ParseTraceState("vendor=abc,other=1")
	remote := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c},
		SpanID:     trace.SpanID{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31},
		TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true,
	})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
	start := time.Unix(1_700_000_000, 123456789)

	a := tp.Tracer("scope-a", trace.WithInstrumentationVersion("1.2.3"),
		trace.WithInstrumentationAttributes(attribute.String("scope.attr", "x")))
	ctx, server := a.Start(ctx, "GET /things/{id}", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start),
		trace.WithLinks(trace.Link{SpanContext: remote, Attributes: []attribute.KeyValue{attribute.Bool("link.ok", true)}},
			trace.Link{SpanContext: remote}), // over the limit of one: dropped
		trace.WithAttributes(
			attribute.String("s", "text"), attribute.String("empty", ""),
			attribute.Bool("b", false), attribute.Int64("i", -42), attribute.Float64("f", 1.5),
			attribute.Float64("nan", math.NaN()), attribute.Float64("inf", math.Inf(1)), attribute.Float64("-inf", math.Inf(-1)),
			attribute.BoolSlice("bs", []bool{true, false}), attribute.Int64Slice("is", []int64{1, -2, 1 << 40}),
			attribute.Float64Slice("fs", []float64{0, 2.25}), attribute.StringSlice("ss", []string{"a", ""}),
		))
	server.SetAttributes(attribute.String("dropped", "over the limit"))
	server.AddEvent("first", trace.WithTimestamp(start.Add(time.Millisecond)), trace.WithAttributes(attribute.Int("n", 1)))
	server.AddEvent("second", trace.WithTimestamp(start.Add(2*time.Millisecond)))
	server.AddEvent("third, dropped", trace.WithTimestamp(start.Add(3*time.Millisecond)))

	b := tp.Tracer("scope-b")
	_, child := b.Start(ctx, "SELECT", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start.Add(time.Millisecond)),
		trace.WithAttributes(attribute.KeyValue{Key: "nothing"}))
	child.SetStatus(codes.Error, "it failed")
	child.End(trace.WithTimestamp(start.Add(5 * time.Millisecond)))
	_, internal := a.Start(ctx, "validate", trace.WithTimestamp(start.Add(6*time.Millisecond)))
	internal.SetStatus(codes.Ok, "")
	internal.End(trace.WithTimestamp(start.Add(7 * time.Millisecond)))
	server.SetStatus(codes.Unset, "")
	server.End(trace.WithTimestamp(start.Add(9 * time.Millisecond)))

	_, consumer := a.Start(context.Background(), "job", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(start))
	consumer.End(trace.WithTimestamp(start.Add(time.Second)))
	return rec.Ended()
}

// captured is what a receiver got: the request's body and Content-Type.
type captured struct {
	body        []byte
	contentType string
}

func captureOne(t *testing.T, export func(url string) error) captured {
	t.Helper()
	var got captured
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.body, _ = io.ReadAll(r.Body)
		got.contentType = r.Header.Get("Content-Type")
	}))
	defer srv.Close()
	if err := export(srv.URL + "/v1/traces"); err != nil {
		t.Fatal(err)
	}
	if got.body == nil {
		t.Fatal("nothing exported")
	}
	return got
}

// The exporter writes the request otlptracehttp (v1.47.0, which it
// replaces) writes for the same spans: the same protobuf message, the same
// OTLP/JSON document.
func TestExporterWritesWhatOTLPTraceHTTPWrites(t *testing.T) {
	spans := recordedSpans(t)
	ctx := t.Context()
	for _, jsonForm := range []bool{false, true} {
		name := map[bool]string{false: "protobuf", true: "json"}[jsonForm]
		t.Run(name, func(t *testing.T) {
			theirs := captureOne(t, func(url string) error {
				enc := otlptracehttp.EncodingProtobuf
				if jsonForm {
					enc = otlptracehttp.EncodingJSON
				}
				exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(url), otlptracehttp.WithEncoding(enc),
					otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
				if err != nil {
					return err
				}
				defer func() { _ = exp.Shutdown(ctx) }()
				return exp.ExportSpans(ctx, spans)
			})
			ours := captureOne(t, func(url string) error {
				exp, err := newExporter(config{endpoint: url, json: jsonForm})
				if err != nil {
					return err
				}
				defer func() { _ = exp.Shutdown(ctx) }()
				return exp.ExportSpans(ctx, spans)
			})
			if ours.contentType != theirs.contentType {
				t.Errorf("Content-Type %q, otlptracehttp's %q", ours.contentType, theirs.contentType)
			}
			if !jsonForm {
				var a, b coltracepb.ExportTraceServiceRequest
				if err := proto.Unmarshal(theirs.body, &a); err != nil {
					t.Fatal(err)
				}
				if err := proto.Unmarshal(ours.body, &b); err != nil {
					t.Fatalf("our request is not protobuf: %v", err)
				}
				if !proto.Equal(&a, &b) {
					t.Errorf("requests differ:\n ours   %v\n theirs %v", &b, &a)
				}
				if len(b.ResourceSpans) != 1 || len(b.ResourceSpans[0].ScopeSpans) != 2 {
					t.Errorf("want one resource with two scopes: %v", &b)
				}
				return
			}
			var a, b any
			if err := json.Unmarshal(theirs.body, &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(ours.body, &b); err != nil {
				t.Fatalf("our request is not JSON: %v", err)
			}
			if !reflect.DeepEqual(a, b) {
				t.Errorf("documents differ:\n ours   %s\n theirs %s", ours.body, theirs.body)
			}
		})
	}
}

// A refusal is an error naming the status and what the receiver said; a
// stopped exporter sends nothing.
func TestExporterRefusedAndStopped(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		http.Error(w, "quota exceeded", http.StatusTooManyRequests)
	}))
	defer srv.Close()
	exp, err := newExporter(config{endpoint: srv.URL + "/v1/traces"})
	if err != nil {
		t.Fatal(err)
	}
	spans := recordedSpans(t)
	err = exp.ExportSpans(t.Context(), spans)
	if err == nil || !strings.Contains(err.Error(), "429") || !strings.Contains(err.Error(), "quota exceeded") {
		t.Errorf("export to a refusing receiver: %v", err)
	}
	if err := exp.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := exp.ExportSpans(t.Context(), spans); err != nil || calls != 1 {
		t.Errorf("after Shutdown: %v, %d calls; want nothing sent", err, calls)
	}
}
