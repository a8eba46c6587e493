package app

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"
	"github.com/exaring/otelpgx"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mocbuilders/moc-upload/local/stacktest"
	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/httpapi"
	"github.com/mocbuilders/moc-upload/shared/postgres"
	"github.com/mocbuilders/moc-upload/shared/s3blob"
	"github.com/mocbuilders/moc-upload/shared/telemetry/telemetrytest"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// Instrumentation scopes of the spans the libraries start.
const (
	pgxScope = "github.com/exaring/otelpgx"
	awsScope = "go.opentelemetry.io/contrib/instrumentation/github.com/aws/aws-sdk-go-v2/otelaws"
)

// recordSpans installs, for the rest of t, a global TracerProvider that
// keeps every span in memory (as soon as it ends) and the W3C propagator.
// Build the App after: its clients take their tracers from the global
// provider when they are built.
func recordSpans(t testing.TB) *tracetest.InMemoryExporter {
	t.Helper()
	exp, _ := telemetrytest.RecordSpans(t)
	return exp
}

// testApp is an App over a fresh database and bucket, and its Config.
func testApp(t testing.TB, extra ...string) (*App, Config) {
	t.Helper()
	dbURL := stacktest.Postgres(t)
	if err := postgres.Migrate(context.Background(), dbURL); err != nil {
		t.Fatal(err)
	}
	s3env := stacktest.S3(t)
	env := map[string]string{
		"DATABASE_URL": dbURL, "S3_BUCKET": s3env.Bucket, "S3_ENDPOINT": s3env.Endpoint,
		"AWS_ACCESS_KEY_ID": s3env.AccessKey, "AWS_SECRET_ACCESS_KEY": s3env.SecretKey, "AWS_REGION": s3env.Region,
		"STAGE": "tracetest",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	cfg, err := ConfigFrom(envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a, cfg
}

// openSession makes a session with one registered PDF (a multipart
// upload in S3) and returns its id and the file's.
func openSession(t testing.TB, a *App, user string) (sessionID, fileID string) {
	t.Helper()
	ctx := context.Background()
	spec := upload.FileSpec{Category: upload.CategoryInstruction, Name: "a.pdf", Size: 100, Type: "application/pdf", Ext: "pdf"}
	sess, err := a.Service.CreateSession(ctx, user, []upload.FileSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := a.Service.RegisterFile(ctx, user, sess.ID, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sess.ID, reg.File.ID
}

// httpEvent is API Gateway's event for a GET of path on route rt, by user.
func httpEvent(rt httpapi.Route, path, user string, headers map[string]string) events.APIGatewayV2HTTPRequest {
	return events.APIGatewayV2HTTPRequest{
		Version: "2.0", RouteKey: rt.RouteKey(), RawPath: path, Headers: headers,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey: rt.RouteKey(), RequestID: "gw-" + uuid.NewString(), Stage: "$default",
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: rt.Method, Path: path},
			Authorizer: &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
				JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{Claims: map[string]string{"sub": user}},
			},
		},
	}
}

func attr(s sdktrace.ReadOnlySpan, key attribute.Key) attribute.Value {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// descendsFrom reports whether s is root or, through the spans' parents,
// one of its descendants.
func descendsFrom(s sdktrace.ReadOnlySpan, root sdktrace.ReadOnlySpan, all []sdktrace.ReadOnlySpan) bool {
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, x := range all {
		byID[x.SpanContext().SpanID()] = x
	}
	for cur := s; cur != nil; cur = byID[cur.Parent().SpanID()] {
		if cur.SpanContext().Equal(root.SpanContext()) {
			return true
		}
		if !cur.Parent().IsValid() {
			return false
		}
	}
	return false
}

func snapshots(exp *tracetest.InMemoryExporter) []sdktrace.ReadOnlySpan {
	return exp.GetSpans().Snapshots()
}

// One GET of a session through the function's Lambda handler: a server
// span named after the route, the parent of the request's queries and S3
// calls, with the route, API Gateway's request id, the invocation's and
// the correlation id; a client's traceparent is a link, not the parent.
func TestHTTPServerSpanParentsQueriesAndS3Calls(t *testing.T) {
	exp := recordSpans(t)
	a, _ := testApp(t)
	sessionID, _ := openSession(t, a, "u1")
	h, err := a.LambdaHandler("GetSession")
	if err != nil {
		t.Fatal(err)
	}
	exp.Reset()

	rt, _ := httpapi.RouteByFunction("GetSession")
	const clientParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	ev := httpEvent(rt, "/api/mocs/uploads/sessions/"+sessionID, "u1", map[string]string{
		"x-correlation-id": "corr-trace-1", "traceparent": clientParent,
	})
	ctx := lambdacontext.NewContext(t.Context(), &lambdacontext.LambdaContext{
		AwsRequestID: "lambda-req-1", InvokedFunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:GetSession"})
	res, err := h(ctx, ev)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GetSession = %d %s, %v", res.StatusCode, res.Body, err)
	}

	spans := snapshots(exp)
	var server sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.SpanKind() == trace.SpanKindServer {
			if server != nil {
				t.Fatalf("two server spans: %s, %s", server.Name(), s.Name())
			}
			server = s
		}
	}
	if server == nil {
		t.Fatalf("no server span among %d spans", len(spans))
	}
	if want := "GET /api/mocs/uploads/sessions/{sessionId}"; server.Name() != want {
		t.Errorf("server span %q, want %q", server.Name(), want)
	}
	for key, want := range map[attribute.Key]string{
		"http.route":                "/api/mocs/uploads/sessions/{sessionId}",
		"http.request.method":       "GET",
		APIGatewayRequestIDKey:      ev.RequestContext.RequestID,
		CorrelationIDKey:            "corr-trace-1",
		"faas.invocation_id":        "lambda-req-1",
		"aws.lambda.invoked_arn":    "arn:aws:lambda:us-east-1:123456789012:function:GetSession",
		"faas.trigger":              "http",
		"url.path":                  "/api/mocs/uploads/sessions/" + sessionID,
		"http.response.status_code": "200",
	} {
		if got := attr(server, key).String(); got != want {
			t.Errorf("server span %s = %q, want %q", key, got, want)
		}
	}
	if !attr(server, "faas.coldstart").AsBool() {
		t.Error("the handler's first invocation is not marked faas.coldstart")
	}
	if server.Parent().IsValid() {
		t.Errorf("server span's parent %v: a client's traceparent must not be the parent", server.Parent())
	}
	if links := server.Links(); len(links) != 1 || links[0].SpanContext.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("links %v, want the client's trace", links)
	}

	var pgx, s3calls []string
	for _, s := range spans {
		switch s.InstrumentationScope().Name {
		case pgxScope:
			pgx = append(pgx, s.Name())
		case awsScope:
			s3calls = append(s3calls, s.Name())
		default:
			continue
		}
		if s.SpanContext().TraceID() != server.SpanContext().TraceID() || !descendsFrom(s, server, spans) {
			t.Errorf("span %s (%s) is not under the server span", s.Name(), s.InstrumentationScope().Name)
		}
	}
	if !slices.Contains(pgx, "SELECT") {
		t.Errorf("pgx spans %q, want the session's SELECT", pgx)
	}
	if !slices.Contains(s3calls, "S3.ListParts") {
		t.Errorf("S3 spans %q, want S3.ListParts (the registered file's upload)", s3calls)
	}

	// The second invocation is warm.
	exp.Reset()
	if _, err := h(t.Context(), httpEvent(rt, "/api/mocs/uploads/sessions/"+sessionID, "u1", nil)); err != nil {
		t.Fatal(err)
	}
	for _, s := range snapshots(exp) {
		if s.SpanKind() == trace.SpanKindServer && attr(s, "faas.coldstart").AsBool() {
			t.Error("the second invocation is marked faas.coldstart")
		}
	}
}

// A presigned URL is computed, not sent: no S3 span, and no trace header
// is signed into it (a browser's PUT carries none).
func TestPresignIsNotTraced(t *testing.T) {
	exp := recordSpans(t)
	a, _ := testApp(t)
	sessionID, fileID := openSession(t, a, "u1")
	h, err := a.LambdaHandler("PresignPart")
	if err != nil {
		t.Fatal(err)
	}
	exp.Reset()
	rt, _ := httpapi.RouteByFunction("PresignPart")
	res, err := h(t.Context(), httpEvent(rt, "/api/mocs/uploads/sessions/"+sessionID+"/files/"+fileID+"/parts/1/url", "u1", nil))
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("PresignPart = %d %s, %v", res.StatusCode, res.Body, err)
	}
	for _, s := range snapshots(exp) {
		if s.InstrumentationScope().Name == awsScope {
			t.Errorf("span %s for a presign", s.Name())
		}
	}
	var body struct {
		Data struct {
			URL string `json:"url"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(res.Body), &body); err != nil || body.Data.URL == "" {
		t.Fatalf("body %s: %v", res.Body, err)
	}
	u, err := url.Parse(body.Data.URL)
	if err != nil {
		t.Fatal(err)
	}
	if signed := u.Query().Get("X-Amz-SignedHeaders"); strings.Contains(signed, "traceparent") || strings.Contains(signed, "baggage") {
		t.Errorf("X-Amz-SignedHeaders = %q", signed)
	}
}

// WebSocket and async invocations are server spans named after their
// function; a job's continues the trace of its traceparent, where its
// queries are too.
func TestInvocationSpans(t *testing.T) {
	exp := recordSpans(t)
	a, _ := testApp(t)
	ws, err := a.WebSocketHandler("WsDefault")
	if err != nil {
		t.Fatal(err)
	}
	res, err := ws(t.Context(), events.APIGatewayWebsocketProxyRequest{
		Body: `{"action":"ping"}`,
		RequestContext: events.APIGatewayWebsocketProxyRequestContext{
			RouteKey: "$default", ConnectionID: "conn-1", RequestID: "ws-req-1", Authorizer: map[string]any{"userId": "u1"}},
	})
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("WsDefault = %d, %v", res.StatusCode, err)
	}
	spans := snapshots(exp)
	if len(spans) != 1 || spans[0].Name() != "WsDefault" || spans[0].SpanKind() != trace.SpanKindServer ||
		attr(spans[0], ConnectionIDKey).AsString() != "conn-1" || attr(spans[0], RouteKeyKey).AsString() != "$default" ||
		attr(spans[0], APIGatewayRequestIDKey).AsString() != "ws-req-1" {
		t.Errorf("WsDefault spans %v", spans)
	}

	// A job of an outbox row that does not exist: a no-op, which reads
	// the row first.
	exp.Reset()
	thumb, err := a.AsyncHandler(followup.ThumbnailFunction)
	if err != nil {
		t.Fatal(err)
	}
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	job, _ := json.Marshal(followup.Job{OutboxID: uuid.NewString(), Kind: followup.KindThumbnail, MocID: uuid.NewString(), TraceParent: parent})
	if _, err := thumb(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	spans = snapshots(exp)
	var inv sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == followup.ThumbnailFunction {
			inv = s
		}
	}
	if inv == nil {
		t.Fatalf("no Thumbnail span among %d", len(spans))
	}
	if inv.SpanKind() != trace.SpanKindServer || inv.Parent().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		inv.Parent().SpanID().String() != "00f067aa0ba902b7" || attr(inv, "faas.trigger").AsString() != "pubsub" {
		t.Errorf("Thumbnail span kind %v, parent %v: want a server span under the job's traceparent", inv.SpanKind(), inv.Parent())
	}
	// The job's work is in the same trace (package followup's job span
	// holds its queries).
	queries := 0
	for _, s := range spans {
		if s.InstrumentationScope().Name == pgxScope {
			queries++
			if s.SpanContext().TraceID() != inv.SpanContext().TraceID() {
				t.Errorf("query span %s not in the job's trace", s.Name())
			}
		}
	}
	if queries == 0 {
		t.Error("no query span in the job's trace")
	}

	// An event that is not a job fails its span.
	exp.Reset()
	if _, err := thumb(t.Context(), []byte(`{"hello":1}`)); err == nil {
		t.Fatal("a bad event succeeded")
	}
	if spans := snapshots(exp); len(spans) != 1 || spans[0].Status().Code != codes.Error || spans[0].Parent().IsValid() {
		t.Errorf("bad event spans %v", spans)
	}

	// The Sweeper: a root server span over its queries.
	exp.Reset()
	sweep, err := a.AsyncHandler(followup.SweeperFunction)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sweep(t.Context(), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	spans = snapshots(exp)
	i := slices.IndexFunc(spans, func(s sdktrace.ReadOnlySpan) bool { return s.Name() == followup.SweeperFunction })
	if i < 0 || spans[i].Parent().IsValid() || attr(spans[i], "faas.trigger").AsString() != "timer" {
		t.Fatalf("Sweeper spans %v", spans)
	}
}

// removeOTel takes otelaws's middlewares out of every call's stack: the S3
// client of the uninstrumented baseline.
func removeOTel(stack *middleware.Stack) error {
	_, _ = stack.Initialize.Remove("OTelInitializeMiddlewareBefore")
	_, _ = stack.Initialize.Remove("OTelInitializeMiddlewareAfter")
	_, _ = stack.Finalize.Remove("OTelFinalizeMiddleware")
	_, _ = stack.Deserialize.Remove("OTelDeserializeMiddleware")
	return nil
}

// BenchmarkGetSessionNoopTracing measures what the instrumentation costs
// when tracing is off (no OTEL_EXPORTER_OTLP_ENDPOINT: the global provider
// is OpenTelemetry's no-op): one GetSession (two transactions, an S3
// ListParts) through the function's Lambda handler as App builds it —
// otelhttp server span, otelpgx tracer, otelaws middlewares — against a
// baseline run in the same process: the same service and handler without
// any of them. Run it alone, so that no test has installed a provider:
//
//	go test -run '^$' -bench NoopTracing ./shared/app/
func BenchmarkGetSessionNoopTracing(b *testing.B) {
	if _, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider); ok {
		b.Fatal("a recording TracerProvider is installed: run the benchmark alone (-run '^$')")
	}
	a, cfg := testApp(b)
	sessionID, _ := openSession(b, a, "u1")
	rt, _ := httpapi.RouteByFunction("GetSession")
	ev := httpEvent(rt, "/api/mocs/uploads/sessions/"+sessionID, "u1", map[string]string{"x-correlation-id": "bench"})

	instrumented, err := a.LambdaHandler("GetSession")
	if err != nil {
		b.Fatal(err)
	}

	// The baseline: the same service over a store without a tracer and
	// an S3 client without otelaws, served without otelhttp.
	ctx := context.Background()
	store, err := postgres.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	blobCfg := s3blob.Config{
		Bucket: cfg.S3Bucket, Endpoint: cfg.S3Endpoint, Region: cfg.S3Region,
		AccessKeyID: cfg.S3AccessKey, SecretAccessKey: cfg.S3SecretKey, SSE: cfg.S3SSE,
	}
	traced, err := s3blob.NewClient(ctx, blobCfg)
	if err != nil {
		b.Fatal(err)
	}
	plain := s3.New(traced.Options(), func(o *s3.Options) { o.APIOptions = append(o.APIOptions, removeOTel) })
	svc := *a.Service
	svc.Store = store
	svc.Blob = s3blob.NewWithClient(plain, s3.NewPresignClient(plain), blobCfg)
	h, err := httpapi.New(&svc).Handler("GetSession")
	if err != nil {
		b.Fatal(err)
	}
	baseline := httpadapter.NewV2(h).ProxyWithContext

	for _, bc := range []struct {
		name string
		h    func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error)
	}{{"baseline", baseline}, {"instrumented", instrumented}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, err := bc.h(ctx, ev)
				if err != nil || res.StatusCode != http.StatusOK {
					b.Fatalf("%d %s, %v", res.StatusCode, res.Body, err)
				}
			}
		})
	}
}

// BenchmarkNoopInstrumentation measures each instrumentation alone with
// the no-op provider, without I/O, to give BenchmarkGetSessionNoopTracing's
// noisy difference its parts: a request through the Lambda adapter with and
// without traceHTTP (otelhttp), one query's otelpgx hooks, one S3 call's
// otelaws middlewares against a canned answer. Run it alone (-run '^$').
func BenchmarkNoopInstrumentation(b *testing.B) {
	if _, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider); ok {
		b.Fatal("a recording TracerProvider is installed: run the benchmark alone (-run '^$')")
	}
	ctx := context.Background()
	rt, _ := httpapi.RouteByFunction("GetSession")
	ev := httpEvent(rt, "/api/mocs/uploads/sessions/5f0c9a3e-1d2b-4c5d-8e7f-9a0b1c2d3e4f", "u1", map[string]string{"x-correlation-id": "bench"})
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Correlation-Id", "bench")
		w.WriteHeader(http.StatusOK)
	})
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{{"http/baseline", ok}, {"http/otelhttp", traceHTTP(rt, ok)}} {
		h := httpadapter.NewV2(bc.h).ProxyWithContext
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h(ctx, ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}

	b.Run("pgx/otelpgx", func(b *testing.B) {
		tr := otelpgx.NewTracer()
		data := pgx.TraceQueryStartData{SQL: "SELECT id FROM upload_sessions WHERE id = $1"}
		b.ReportAllocs()
		for b.Loop() {
			qctx := tr.TraceQueryStart(ctx, nil, data)
			tr.TraceQueryEnd(qctx, nil, pgx.TraceQueryEndData{})
		}
	})

	canned := smithyhttp.ClientDoFunc(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil {
			_, _ = io.Copy(io.Discard, r.Body)
		}
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/xml"}},
			Body: io.NopCloser(strings.NewReader(`<ListPartsResult><Bucket>b</Bucket><Key>k</Key><UploadId>u</UploadId></ListPartsResult>`))}, nil
	})
	traced, err := s3blob.NewClient(ctx, s3blob.Config{Bucket: "b", Endpoint: "http://127.0.0.1:1", AccessKeyID: "k", SecretAccessKey: "s"})
	if err != nil {
		b.Fatal(err)
	}
	in := &s3.ListPartsInput{Bucket: aws.String("b"), Key: aws.String("k"), UploadId: aws.String("u")}
	for _, bc := range []struct {
		name string
		c    *s3.Client
	}{
		{"s3/baseline", s3.New(traced.Options(), func(o *s3.Options) { o.HTTPClient = canned; o.APIOptions = append(o.APIOptions, removeOTel) })},
		{"s3/otelaws", s3.New(traced.Options(), func(o *s3.Options) { o.HTTPClient = canned })},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.c.ListParts(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
