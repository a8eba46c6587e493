package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// defaultExportTimeout is one export's limit without
// OTEL_EXPORTER_OTLP_TIMEOUT: the specification's 10 s.
const defaultExportTimeout = 10 * time.Second

// deadlineMargin is the time a flush leaves before the invocation's
// deadline, for the runtime to send the answer.
const deadlineMargin = 50 * time.Millisecond

// Telemetry is a function's tracing: the TracerProvider Setup installed as
// the global one, or none when tracing is off. A nil *Telemetry is off.
type Telemetry struct {
	provider     *sdktrace.TracerProvider
	flushTimeout time.Duration
}

// Setup reads the configuration from the environment (see the package
// documentation) and sets up tracing for function (faas.name). Call it
// once, at cold start, before building the clients it should trace.
func Setup(ctx context.Context, function string) (*Telemetry, error) {
	return SetupFrom(ctx, function, os.Getenv)
}

// SetupFrom is Setup reading the configuration through getenv. It always
// installs the W3C TraceContext and Baggage propagators as the global
// propagator; with an OTLP endpoint it installs a TracerProvider exporting
// to it as the global one, and OpenTelemetry's error handler logs through
// slog. Without one it installs no provider: the global one stays the
// no-op, and the Telemetry is off (Flush and Shutdown return at once).
// function may be empty (the local stack runs every function in one
// process): the resource then has no faas.name.
func SetupFrom(ctx context.Context, function string, getenv func(string) string) (*Telemetry, error) {
	cfg, err := configFrom(getenv)
	if err != nil {
		return nil, err
	}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	t := &Telemetry{flushTimeout: cfg.flushTimeout}
	if cfg.endpoint == "" {
		return t, nil
	}
	if t.provider, err = newProvider(ctx, function, cfg, getenv); err != nil {
		return nil, err
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		slog.Warn("telemetry: OpenTelemetry error", "err", err)
	}))
	otel.SetTracerProvider(t.provider)
	return t, nil
}

func newProvider(ctx context.Context, function string, cfg config, getenv func(string) string) (*sdktrace.TracerProvider, error) {
	exp, err := newExporter(cfg)
	if err != nil {
		return nil, err
	}
	res, err := newResource(ctx, function, cfg, getenv)
	if err != nil {
		return nil, err
	}
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(cfg.sampler),
	), nil
}

// newResource describes the process: service.name, faas.name, the
// OTEL_RESOURCE_ATTRIBUTES and, in Lambda, the cloud and function
// attributes its environment gives.
func newResource(ctx context.Context, function string, cfg config, getenv func(string) string) (*resource.Resource, error) {
	attrs := append([]attribute.KeyValue(nil), cfg.attributes...)
	attrs = append(attrs, semconv.ServiceName(cfg.serviceName))
	if function != "" {
		attrs = append(attrs, semconv.FaaSName(function))
	}
	attrs = append(attrs, lambdaAttributes(getenv)...)
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attrs...),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}

// lambdaAttributes are the resource attributes of the Lambda environment,
// or none outside Lambda.
func lambdaAttributes(getenv func(string) string) []attribute.KeyValue {
	if getenv("AWS_LAMBDA_FUNCTION_NAME") == "" {
		return nil
	}
	attrs := []attribute.KeyValue{semconv.CloudProviderAWS, semconv.CloudPlatformAWSLambda}
	if v := getenv("AWS_REGION"); v != "" {
		attrs = append(attrs, semconv.CloudRegion(v))
	}
	if v := getenv("AWS_LAMBDA_FUNCTION_VERSION"); v != "" {
		attrs = append(attrs, semconv.FaaSVersion(v))
	}
	if v := getenv("AWS_LAMBDA_LOG_STREAM_NAME"); v != "" {
		attrs = append(attrs, semconv.FaaSInstance(v), semconv.AWSLogStreamNames(v))
	}
	if v := getenv("AWS_LAMBDA_LOG_GROUP_NAME"); v != "" {
		attrs = append(attrs, semconv.AWSLogGroupNames(v))
	}
	if mb, err := strconv.Atoi(getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")); err == nil && mb > 0 {
		attrs = append(attrs, semconv.FaaSMaxMemory(mb<<20))
	}
	return attrs
}

// Enabled reports whether spans are exported: an OTLP endpoint is set.
func (t *Telemetry) Enabled() bool { return t != nil && t.provider != nil }

// Flush exports the spans that ended and are not exported yet, waiting at
// most TRACE_FLUSH_TIMEOUT_MS and never past ctx's deadline (less a
// margin for the answer to go out); a ctx that is cancelled otherwise
// does not stop it. Off, it returns nil at once. The error says the spans
// were not all exported; they are dropped.
func (t *Telemetry) Flush(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	bound := t.flushTimeout
	if deadline, ok := ctx.Deadline(); ok {
		bound = min(bound, time.Until(deadline)-deadlineMargin)
	}
	if bound <= 0 {
		return errors.New("telemetry: flush skipped: the invocation's deadline is too near")
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bound)
	defer cancel()
	if err := t.provider.ForceFlush(fctx); err != nil {
		return fmt.Errorf("telemetry: flush: %w", err)
	}
	return nil
}

// Shutdown flushes and stops the exporter, within ctx; later spans are
// dropped. Off, it returns nil at once.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: shutdown: %w", err)
	}
	return nil
}

// FlushAfter wraps a Lambda handler so that each invocation's spans are
// exported (t.Flush) before it returns, its panics included; a failed
// flush is logged, the handler's answer returned unchanged. With t off it
// returns h itself.
func FlushAfter[E, R any](t *Telemetry, h func(context.Context, E) (R, error)) func(context.Context, E) (R, error) {
	if !t.Enabled() {
		return h
	}
	return func(ctx context.Context, event E) (R, error) {
		defer func() {
			if err := t.Flush(ctx); err != nil {
				slog.WarnContext(ctx, "spans not exported", "err", err)
			}
		}()
		return h(ctx, event)
	}
}
