package telemetrytest

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TB is the part of testing.TB RecordSpans uses (this package does not
// import testing: moc-evidence links it).
type TB interface {
	Helper()
	Cleanup(func())
}

// RecordSpans installs, until t ends, a global TracerProvider that keeps
// every span in memory as soon as it ends, and the W3C trace-context and
// baggage propagators; it returns the spans' exporter and a tracer of that
// provider. The previous provider and propagator come back at the end.
// Tests that call it must not run in parallel. Clients that take their
// tracer from the global provider when they are built (otelaws, otelpgx)
// must be built after.
func RecordSpans(t TB) (*tracetest.InMemoryExporter, trace.Tracer) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
	})
	return exp, tp.Tracer("test")
}

// Attrs is a recorded span's attributes by key, with Go values (string,
// int64, bool, []string, …) to compare against.
func Attrs(s tracetest.SpanStub) map[string]any {
	m := make(map[string]any, len(s.Attributes))
	for _, kv := range s.Attributes {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}
