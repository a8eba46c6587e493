package app

import (
	"context"
	"net/http"
	"sync/atomic"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/awslabs/aws-lambda-go-api-proxy/core"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/mocbuilders/moc-upload/shared/httpapi"
	"github.com/mocbuilders/moc-upload/shared/wsapi"
)

// tracerName is the instrumentation scope of the invocation spans this
// package starts (the WebSocket and async functions'; otelhttp starts the
// HTTP ones).
const tracerName = "github.com/mocbuilders/moc-upload/shared/app"

// tracer is the global provider's, asked for on each invocation: one kept
// would stay bound to the provider installed when it was made.
func tracer() trace.Tracer { return otel.Tracer(tracerName) }

// Span attributes of an invocation that no semantic convention names.
const (
	// APIGatewayRequestIDKey is API Gateway's id of the request (its
	// apigw-requestid header, $context.requestId in its access logs).
	APIGatewayRequestIDKey = attribute.Key("aws.apigateway.request_id")
	// CorrelationIDKey is the response's X-Correlation-Id: the client's
	// own, else API Gateway's request id, else a new one.
	CorrelationIDKey = attribute.Key("app.correlation_id")
	// ConnectionIDKey is a WebSocket invocation's connection id.
	ConnectionIDKey = attribute.Key("aws.apigateway.connection_id")
	// RouteKeyKey is a WebSocket invocation's route ($connect, …).
	RouteKeyKey = attribute.Key("aws.apigateway.route_key")
)

// traceHTTP wraps h, the handler of rt, so that each request is a server
// span named after the route ("POST /api/mocs/uploads/finalize"), with
// otelhttp's HTTP attributes, http.route, faas.trigger=http, API Gateway's
// request id, the Lambda invocation's (faas.invocation_id, on AWS) and the
// correlation id. The spans of the request's queries and S3 calls are its
// children. The API is public: a traceparent a client sends is a link of
// the span, not its parent, so that no client decides what is sampled.
func traceHTTP(rt httpapi.Route, h http.Handler) http.Handler {
	cold := coldStart()
	annotated := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := cold.Swap(false)
		span := trace.SpanFromContext(r.Context())
		if !span.IsRecording() {
			h.ServeHTTP(w, r)
			return
		}
		attrs := append(invocationAttributes(r.Context(), first), semconv.HTTPRoute(rt.Path), semconv.FaaSTriggerHTTP)
		if gw, ok := core.GetAPIGatewayV2ContextFromContext(r.Context()); ok && gw.RequestID != "" {
			attrs = append(attrs, APIGatewayRequestIDKey.String(gw.RequestID))
		}
		span.SetAttributes(attrs...)
		h.ServeHTTP(w, r)
		if id := w.Header().Get("X-Correlation-Id"); id != "" {
			span.SetAttributes(CorrelationIDKey.String(id))
		}
	})
	name := rt.RouteKey()
	return otelhttp.NewHandler(annotated, name,
		otelhttp.WithSpanNameFormatter(func(string, *http.Request) string { return name }),
		otelhttp.WithPublicEndpointFn(func(*http.Request) bool { return true }),
	)
}

// traceWebSocket wraps h so that each invocation is a server span named
// after function (WsConnect, …), with the route, the connection id, API
// Gateway's and Lambda's request ids; a 5xx answer or an error marks it
// failed.
func traceWebSocket(function string, h wsapi.Handler) wsapi.Handler {
	cold := coldStart()
	return func(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
		first := cold.Swap(false)
		ctx, span := tracer().Start(ctx, function, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		if span.IsRecording() {
			rc := req.RequestContext
			span.SetAttributes(append(invocationAttributes(ctx, first), semconv.FaaSTriggerOther,
				RouteKeyKey.String(rc.RouteKey), ConnectionIDKey.String(rc.ConnectionID),
				APIGatewayRequestIDKey.String(rc.RequestID))...)
		}
		res, err := h(ctx, req)
		if span.IsRecording() {
			span.SetAttributes(semconv.HTTPResponseStatusCode(res.StatusCode))
			if err == nil && res.StatusCode >= 500 {
				span.SetStatus(codes.Error, http.StatusText(res.StatusCode))
			}
		}
		endInvocation(span, err)
		return res, err
	}
}

// startInvocation starts the server span of an async function's
// invocation, named after function, with trigger (faas.trigger). A W3C
// traceparent (a followup.Job's: the dispatch that sent it) makes it a
// span of that trace, a child of the dispatch; package followup's job
// span, a sibling, links to it.
func startInvocation(ctx context.Context, function, traceparent string, first bool, trigger attribute.KeyValue) (context.Context, trace.Span) {
	if traceparent != "" {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
	}
	ctx, span := tracer().Start(ctx, function, trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		span.SetAttributes(append(invocationAttributes(ctx, first), trigger)...)
	}
	return ctx, span
}

// endInvocation marks span failed by err, if any. The caller ends it.
func endInvocation(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
}

// invocationAttributes are the Lambda invocation's: its request id and
// the ARN it was invoked by (none outside Lambda), and whether it is the
// process's first of this handler (faas.coldstart).
func invocationAttributes(ctx context.Context, first bool) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 8)
	attrs = append(attrs, semconv.FaaSColdstart(first))
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		if lc.AwsRequestID != "" {
			attrs = append(attrs, semconv.FaaSInvocationID(lc.AwsRequestID))
		}
		if lc.InvokedFunctionArn != "" {
			attrs = append(attrs, semconv.AWSLambdaInvokedARN(lc.InvokedFunctionArn))
		}
	}
	return attrs
}

// coldStart is true until its handler's first invocation swaps it.
func coldStart() *atomic.Bool {
	var b atomic.Bool
	b.Store(true)
	return &b
}
