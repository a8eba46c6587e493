package followup

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// tracerName names the package's tracer; the spans are described in the
// package documentation (Tracing).
const tracerName = "github.com/mocbuilders/moc-upload/shared/followup"

// spanName is the name of the spans of a kind of work: its dispatch's and
// its job's ("" for a kind not known).
func spanName(kind string) string {
	switch kind {
	case KindThumbnail:
		return "generate.thumbnail"
	case KindWebhook:
		return "send.webhook"
	}
	return ""
}

// spanSweep is the Sweeper's run.
const spanSweep = "outbox.sweep"

// Outcomes of a job, its span's outcome attribute, besides the status its
// row ends with (StatusDone, StatusFailed: see finished).
const (
	outcomeRetry   = "retry"
	outcomeSkipped = "skipped"
)

// Attribute keys.
const (
	attrMocID           = attribute.Key("mocId")
	attrOutboxID        = attribute.Key("outboxId")
	attrKind            = attribute.Key("kind")
	attrAttempts        = attribute.Key("attempts")
	attrOutcome         = attribute.Key("outcome")
	attrReason          = attribute.Key("reason")
	attrThumbnailStatus = attribute.Key("thumbnailStatus")
	attrRedispatched    = attribute.Key("redispatched")
	attrDispatchErrors  = attribute.Key("dispatchErrors")
	attrGivenUp         = attribute.Key("givenUp")
	attrExpiredConns    = attribute.Key("expiredConnections")
)

// tracer is asked for on each use, not kept: a kept one would stay bound
// to the first TracerProvider installed.
func tracer() trace.Tracer { return otel.Tracer(tracerName) }

// TraceParent is the W3C traceparent of ctx's span, "" when it has none:
// what a Job and an outbox row carry.
func TraceParent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c.Get("traceparent")
}

// remoteContext is the span context a traceparent names (invalid for "" or
// a malformed one).
func remoteContext(traceParent string) trace.SpanContext {
	if traceParent == "" {
		return trace.SpanContext{}
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceParent})
	return trace.SpanContextFromContext(ctx)
}

func jobSpanAttrs(job Job) []attribute.KeyValue {
	return []attribute.KeyValue{attrMocID.String(job.MocID), attrOutboxID.String(job.OutboxID), attrKind.String(job.Kind)}
}

// startDispatch starts the producer span of job's dispatch to function,
// under ctx's span. The job's TraceParent, when it has one, is the trace
// that made the work (a re-dispatch): the span links to it.
func startDispatch(ctx context.Context, job Job, function string) (context.Context, trace.Span) {
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(jobSpanAttrs(job)...),
		trace.WithAttributes(semconv.FaaSInvokedName(function), semconv.FaaSInvokedProviderAWS),
	}
	if origin := remoteContext(job.TraceParent); origin.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: origin}))
	}
	return tracer().Start(ctx, spanName(job.Kind), opts...)
}

// startJob starts the consumer span of a job a function of kind runs: a
// child of the dispatch that sent it (job.TraceParent), linked to ctx's
// span, the invocation's; without a traceparent, a child of ctx's span.
func startJob(ctx context.Context, kind string, job Job) (context.Context, trace.Span) {
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(jobSpanAttrs(job)...)}
	if origin := remoteContext(job.TraceParent); origin.IsValid() {
		if own := trace.SpanContextFromContext(ctx); own.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: own}))
		}
		ctx = trace.ContextWithRemoteSpanContext(ctx, origin)
	}
	return tracer().Start(ctx, spanName(kind), opts...)
}

// endJob ends a job's span: err, the error Run returns, means the job is
// to be retried.
func endJob(span trace.Span, err error) {
	if err != nil {
		span.SetAttributes(attrOutcome.String(outcomeRetry))
	}
	endSpan(span, err)
}

// endSpan ends span, recording err.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// skipped marks ctx's job span: there was nothing to do.
func skipped(ctx context.Context, why string) {
	trace.SpanFromContext(ctx).SetAttributes(attrOutcome.String(outcomeSkipped), attrReason.String(why))
}

// retrying marks ctx's job span: the attempt did not finish the work.
func retrying(ctx context.Context, why string) {
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attrOutcome.String(outcomeRetry), attrReason.String(why))
	span.SetStatus(codes.Error, why)
}

// finished marks ctx's job span with the outcome its row was ended with;
// ended is false when another run had ended it already.
func finished(ctx context.Context, o Outcome, ended bool) {
	span := trace.SpanFromContext(ctx)
	if !ended {
		span.SetAttributes(attrOutcome.String(outcomeSkipped), attrReason.String("another run finished the row"))
		return
	}
	attrs := []attribute.KeyValue{attrOutcome.String(o.Status)}
	if o.LastError != "" {
		attrs = append(attrs, attrReason.String(o.LastError))
	}
	if o.Thumbnail != nil {
		attrs = append(attrs, attrThumbnailStatus.String(o.Thumbnail.Status))
	}
	span.SetAttributes(attrs...)
	if o.Status == StatusFailed {
		span.SetStatus(codes.Error, o.LastError)
	}
}
