package telemetry

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// export is one request the receiver got.
type export struct {
	path   string
	header http.Header
	body   []byte // decompressed
	req    *coltracepb.ExportTraceServiceRequest
}

// receiver is an OTLP/HTTP receiver: it decodes each protobuf
// ExportTraceServiceRequest and answers as a collector does.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	exports []export
	got     chan struct{}
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	rc := &receiver{got: make(chan struct{}, 100)}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		e := export{path: r.URL.Path, header: r.Header.Clone(), body: b}
		if r.Header.Get("Content-Type") == "application/x-protobuf" {
			e.req = &coltracepb.ExportTraceServiceRequest{}
			if err := proto.Unmarshal(b, e.req); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
			w.Header().Set("Content-Type", "application/x-protobuf")
			_, _ = w.Write(out)
		} else {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte("{}"))
		}
		rc.mu.Lock()
		rc.exports = append(rc.exports, e)
		rc.mu.Unlock()
		rc.got <- struct{}{}
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) all() []export {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.exports)
}

// spans are the spans of every export so far, with their resource's
// attributes.
func (rc *receiver) spans() ([]*tracepb.Span, map[string]*commonpb.AnyValue) {
	var spans []*tracepb.Span
	res := map[string]*commonpb.AnyValue{}
	for _, e := range rc.all() {
		if e.req == nil {
			continue
		}
		for _, rs := range e.req.ResourceSpans {
			for _, kv := range rs.GetResource().GetAttributes() {
				res[kv.Key] = kv.Value
			}
			for _, ss := range rs.ScopeSpans {
				spans = append(spans, ss.Spans...)
			}
		}
	}
	return spans, res
}

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// setup runs SetupFrom with env and undoes what it installed when t ends.
func setup(t *testing.T, function string, env map[string]string) *Telemetry {
	t.Helper()
	tel, err := SetupFrom(t.Context(), function, envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = tel.Shutdown(ctx)
		otel.SetTracerProvider(noop.NewTracerProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
	})
	return tel
}

func TestSpanExportedOnFlush(t *testing.T) {
	rc := newReceiver(t)
	tel := setup(t, "Finalize", map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":     rc.URL + "/otlp/",
		"OTEL_EXPORTER_OTLP_HEADERS":      "x-api-key=s3cr%C3%A9t,X-Tenant = moc ",
		"OTEL_SERVICE_NAME":               "moc-upload-test",
		"OTEL_RESOURCE_ATTRIBUTES":        "deployment.environment.name=test,service.name=ignored",
		"AWS_LAMBDA_FUNCTION_NAME":        "moc-upload-FinalizeFunction-abc",
		"AWS_REGION":                      "eu-west-1",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/moc-upload-FinalizeFunction-abc",
	})
	if !tel.Enabled() {
		t.Fatal("Enabled() = false with an endpoint")
	}
	if _, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider); !ok {
		t.Fatalf("global provider = %T, want the SDK's", otel.GetTracerProvider())
	}
	_, span := otel.Tracer("test").Start(t.Context(), "POST /api/mocs/uploads/finalize")
	span.End()
	if n := len(rc.all()); n != 0 {
		t.Fatalf("%d exports before Flush: the batch processor should hold the span", n)
	}
	if err := tel.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	exports := rc.all()
	if len(exports) != 1 {
		t.Fatalf("%d exports after Flush, want 1", len(exports))
	}
	e := exports[0]
	if e.path != "/otlp/v1/traces" {
		t.Errorf("POSTed to %s, want /otlp/v1/traces (the base URL + the signal's path)", e.path)
	}
	if got := e.header.Get("X-Api-Key"); got != "s3crét" {
		t.Errorf("x-api-key = %q, want the decoded header value", got)
	}
	if got := e.header.Get("X-Tenant"); got != "moc" {
		t.Errorf("X-Tenant = %q", got)
	}
	spans, res := rc.spans()
	if len(spans) != 1 || spans[0].Name != "POST /api/mocs/uploads/finalize" {
		t.Fatalf("spans = %v", spans)
	}
	if got := hex(spans[0].TraceId); got != span.SpanContext().TraceID().String() {
		t.Errorf("trace id %s, want %s", got, span.SpanContext().TraceID())
	}
	for k, want := range map[string]string{
		"service.name": "moc-upload-test", "faas.name": "Finalize", "deployment.environment.name": "test",
		"cloud.provider": "aws", "cloud.platform": "aws_lambda", "cloud.region": "eu-west-1",
		"telemetry.sdk.language": "go",
	} {
		if got := res[k].GetStringValue(); got != want {
			t.Errorf("resource %s = %q, want %q", k, got, want)
		}
	}
	if got := res["faas.max_memory"].GetIntValue(); got != 256<<20 {
		t.Errorf("faas.max_memory = %d, want 256 MiB in bytes", got)
	}
	if got := res["aws.log.group.names"].GetArrayValue().GetValues(); len(got) != 1 ||
		got[0].GetStringValue() != "/aws/lambda/moc-upload-FinalizeFunction-abc" {
		t.Errorf("aws.log.group.names = %v", got)
	}

	// Nothing more to send: a second flush sends nothing.
	if err := tel.Flush(t.Context()); err != nil || len(rc.all()) != 1 {
		t.Errorf("second Flush: %v, %d exports", err, len(rc.all()))
	}
}

func hex(b []byte) string {
	const digits = "0123456789abcdef"
	s := make([]byte, 0, 2*len(b))
	for _, c := range b {
		s = append(s, digits[c>>4], digits[c&15])
	}
	return string(s)
}

// FlushAfter exports the invocation's spans before it returns, its
// answer unchanged, a panic's spans too.
func TestFlushAfter(t *testing.T) {
	rc := newReceiver(t)
	tel := setup(t, "Thumbnail", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": rc.URL + "/custom/path"})
	h := FlushAfter(tel, func(ctx context.Context, in string) (string, error) {
		_, span := otel.Tracer("test").Start(ctx, "invocation "+in)
		defer span.End()
		if in == "panic" {
			panic("boom")
		}
		return "out " + in, errors.New("handler error")
	})
	out, err := h(t.Context(), "1")
	if out != "out 1" || err == nil || err.Error() != "handler error" {
		t.Errorf("h = %q, %v: the answer must pass through", out, err)
	}
	spans, _ := rc.spans()
	if len(spans) != 1 || spans[0].Name != "invocation 1" {
		t.Fatalf("after the invocation: spans %v, want it exported", spans)
	}
	if p := rc.all()[0].path; p != "/custom/path" {
		t.Errorf("POSTed to %s: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as is", p)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic was swallowed")
			}
		}()
		_, _ = h(t.Context(), "panic")
	}()
	if spans, _ := rc.spans(); len(spans) != 2 || spans[1].Name != "invocation panic" {
		t.Errorf("after a panic: spans %v", spans)
	}

	// Off, FlushAfter adds nothing: the handler itself comes back.
	plain := func(context.Context, int) (int, error) { return 0, nil }
	if got := FlushAfter(nil, plain); got == nil {
		t.Fatal("nil")
	}
}

func TestExportEncodings(t *testing.T) {
	rc := newReceiver(t)
	tel := setup(t, "", map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":           rc.URL,
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL":    "http/json",
		"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip",
	})
	_, span := otel.Tracer("test").Start(t.Context(), "json span")
	span.End()
	if err := tel.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	e := rc.all()
	if len(e) != 1 || e[0].header.Get("Content-Type") != "application/json" || e[0].header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("exports %+v, want one gzipped JSON request", e)
	}
	var doc struct {
		ResourceSpans []struct {
			Resource struct {
				Attributes []struct{ Key string } `json:"attributes"`
			} `json:"resource"`
			ScopeSpans []struct {
				Spans []struct{ Name string } `json:"spans"`
			} `json:"scopeSpans"`
		} `json:"resourceSpans"`
	}
	if err := json.Unmarshal(e[0].body, &doc); err != nil || len(doc.ResourceSpans) != 1 ||
		doc.ResourceSpans[0].ScopeSpans[0].Spans[0].Name != "json span" {
		t.Fatalf("body %s: %v", e[0].body, err)
	}
	for _, a := range doc.ResourceSpans[0].Resource.Attributes {
		if a.Key == "faas.name" {
			t.Error("faas.name set for an empty function name")
		}
	}
}

// A collector that accepts the connection and never answers holds a
// flush for TRACE_FLUSH_TIMEOUT_MS, no longer; one that refuses it, not
// at all; and no flush runs past the invocation's deadline.
func TestFlushIsBounded(t *testing.T) {
	hung := make(chan struct{})
	dead := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hung }))
	t.Cleanup(func() { close(hung); dead.Close() })

	tel := setup(t, "Finalize", map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": dead.URL, "TRACE_FLUSH_TIMEOUT_MS": "200",
	})
	flush := func(ctx context.Context) (time.Duration, error) {
		_, span := otel.Tracer("test").Start(ctx, "s")
		span.End()
		start := time.Now()
		err := tel.Flush(ctx)
		return time.Since(start), err
	}
	for i := range 3 { // and again: a hung export does not stack up
		took, err := flush(t.Context())
		if err == nil {
			t.Errorf("flush %d to a collector that never answers: no error", i)
		}
		if took < 150*time.Millisecond || took > time.Second {
			t.Errorf("flush %d took %v, want about the 200ms bound", i, took)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Millisecond)
	defer cancel()
	if took, err := flush(ctx); err == nil || took > 100*time.Millisecond {
		t.Errorf("flush with 120ms to the deadline took %v (%v), want < 70ms + scheduling", took, err)
	}

	// A port nothing listens on: the export fails at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	tel2, err := SetupFrom(t.Context(), "Finalize", envOf(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": closed, "TRACE_FLUSH_TIMEOUT_MS": "2000",
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel2.Shutdown(context.Background()) }()
	_, span := otel.Tracer("test").Start(t.Context(), "s")
	span.End()
	start := time.Now()
	err = tel2.Flush(t.Context())
	if took := time.Since(start); err == nil || took > 500*time.Millisecond {
		t.Errorf("flush to a closed port: %v after %v, want an error well within the bound (no retry)", err, took)
	}
}

// No endpoint: no provider, no exporter, no goroutine, and a Flush that
// returns at once; the propagator is installed anyway.
func TestOffWithoutEndpoint(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"unset":    {"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"},
		"disabled": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"},
		"none":     {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"},
	} {
		t.Run(name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			prev := otel.GetTracerProvider()
			tel := setup(t, "Finalize", env)
			if tel.Enabled() {
				t.Fatal("Enabled() = true")
			}
			if got := otel.GetTracerProvider(); got != prev {
				t.Errorf("global provider replaced by %T", got)
			}
			if after := runtime.NumGoroutine(); after > before {
				t.Errorf("%d goroutines after Setup, %d before", after, before)
			}
			fields := otel.GetTextMapPropagator().Fields()
			if !slices.Contains(fields, "traceparent") || !slices.Contains(fields, "baggage") {
				t.Errorf("propagator fields %v, want W3C traceparent and baggage", fields)
			}
			start := time.Now()
			for range 1000 {
				if err := tel.Flush(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			if took := time.Since(start); took > 10*time.Millisecond {
				t.Errorf("1000 flushes took %v", took)
			}
			if err := tel.Shutdown(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	var nilTel *Telemetry
	if nilTel.Enabled() || nilTel.Flush(t.Context()) != nil || nilTel.Shutdown(t.Context()) != nil {
		t.Error("a nil *Telemetry is not off")
	}
}

func TestSamplerFromEnv(t *testing.T) {
	rc := newReceiver(t)
	remote := func(sampled bool) context.Context {
		var flags trace.TraceFlags
		if sampled {
			flags = trace.FlagsSampled
		}
		sc := trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: flags, Remote: true,
		})
		return trace.ContextWithRemoteSpanContext(context.Background(), sc)
	}
	for _, tc := range []struct {
		sampler, arg           string
		root, parentOn, parOff bool // sampled: a root span, a child of a sampled / unsampled remote parent
	}{
		{"", "", true, true, false}, // parentbased_always_on
		{"always_on", "", true, true, true},
		{"always_off", "", false, false, false},
		{"traceidratio", "0", false, false, false},
		{"traceidratio", "1", true, true, true},
		{"parentbased_traceidratio", "0", false, true, false},
		{"parentbased_always_off", "", false, true, false},
		{"ParentBased_Always_On", "", true, true, false},
	} {
		tel := setup(t, "", map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": rc.URL,
			"OTEL_TRACES_SAMPLER":         tc.sampler, "OTEL_TRACES_SAMPLER_ARG": tc.arg,
		})
		sampled := func(ctx context.Context) bool {
			_, span := otel.Tracer("test").Start(ctx, "s")
			defer span.End()
			return span.SpanContext().IsSampled()
		}
		if got := [3]bool{sampled(context.Background()), sampled(remote(true)), sampled(remote(false))}; got != [3]bool{tc.root, tc.parentOn, tc.parOff} {
			t.Errorf("%s(%s): sampled root, under sampled, under unsampled = %v, want %v",
				tc.sampler, tc.arg, got, [3]bool{tc.root, tc.parentOn, tc.parOff})
		}
		_ = tel.Shutdown(t.Context())
	}
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "grpc://collector:4317"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL grpc is not supported"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, "OTEL_EXPORTER_OTLP_TIMEOUT"},
		{map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "OTEL_EXPORTER_OTLP_COMPRESSION"},
		{map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "authorization"}, "OTEL_EXPORTER_OTLP_HEADERS"},
		{map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "team"}, "OTEL_RESOURCE_ATTRIBUTES"},
		{map[string]string{"OTEL_TRACES_SAMPLER": "xray"}, "OTEL_TRACES_SAMPLER"},
		{map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"}, "OTEL_TRACES_SAMPLER_ARG"},
		{map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"}, "OTEL_TRACES_SAMPLER_ARG"},
		{map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"},
		{map[string]string{"OTEL_SDK_DISABLED": "yes"}, "OTEL_SDK_DISABLED"},
		{map[string]string{"TRACE_FLUSH_TIMEOUT_MS": "0"}, "TRACE_FLUSH_TIMEOUT_MS"},
	} {
		_, err := SetupFrom(t.Context(), "", envOf(tc.env))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error naming %s", tc.env, err, tc.want)
		}
	}
	// A malformed header list is reported by name, never by value.
	_, err := SetupFrom(t.Context(), "", envOf(map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "api-key=%zzsecret"}))
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("error %v shows the header's value", err)
	}
	// Every problem at once.
	_, err = SetupFrom(t.Context(), "", envOf(map[string]string{"OTEL_TRACES_SAMPLER": "x", "TRACE_FLUSH_TIMEOUT_MS": "-1"}))
	if err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_SAMPLER") || !strings.Contains(err.Error(), "TRACE_FLUSH_TIMEOUT_MS") {
		t.Errorf("error %v does not name both", err)
	}
}

func TestLogHandlerAddsIDs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil))).With("function", "Finalize")
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:  trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	line := func(f func()) map[string]any {
		t.Helper()
		buf.Reset()
		f()
		var m map[string]any
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", buf.Bytes(), err)
		}
		return m
	}

	m := line(func() { log.InfoContext(ctx, "with span", "k", "v") })
	if m["trace_id"] != "4bf92f3577b34da6a3ce929d0e0e4736" || m["span_id"] != "00f067aa0ba902b7" ||
		m["function"] != "Finalize" || m["k"] != "v" {
		t.Errorf("with a span: %v", m)
	}
	for name, f := range map[string]func(){
		"no context":      func() { log.Info("no ctx") },
		"no span":         func() { log.InfoContext(context.Background(), "no span") },
		"invalid context": func() { log.InfoContext(trace.ContextWithSpanContext(context.Background(), trace.SpanContext{}), "x") },
	} {
		if m := line(f); m["trace_id"] != nil || m["span_id"] != nil {
			t.Errorf("%s: %v has ids", name, m)
		}
	}
	// Through WithAttrs and WithGroup the handler is still wrapped.
	m = line(func() { log.With("a", 1).WithGroup("g").InfoContext(ctx, "grouped", "k", "v") })
	g, _ := m["g"].(map[string]any)
	if g["trace_id"] != "4bf92f3577b34da6a3ce929d0e0e4736" || g["k"] != "v" || m["a"] != 1.0 {
		t.Errorf("grouped: %v", m)
	}
	// The level check is the wrapped handler's.
	quiet := LogHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if quiet.Enabled(ctx, slog.LevelInfo) || !quiet.Enabled(ctx, slog.LevelError) {
		t.Error("Enabled does not follow the wrapped handler")
	}
}

// The caller's record is not changed: a handler that fans a record out
// gives each its own.
func TestLogHandlerLeavesTheRecord(t *testing.T) {
	var buf bytes.Buffer
	h := LogHandler(slog.NewTextHandler(&buf, nil))
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "m", 0)
	r.AddAttrs(slog.String("k", "v"))
	if err := h.Handle(ctx, r); err != nil {
		t.Fatal(err)
	}
	if r.NumAttrs() != 1 {
		t.Errorf("the record has %d attributes after Handle, want 1", r.NumAttrs())
	}
	if !strings.Contains(buf.String(), "trace_id=01000000000000000000000000000000") {
		t.Errorf("logged %q", buf.String())
	}
}
