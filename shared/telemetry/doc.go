// Package telemetry sets up OpenTelemetry tracing for a function: the
// global TracerProvider that every instrumentation and otel.Tracer(...) in
// the service uses, exporting over OTLP/HTTP, flushed once per Lambda
// invocation, and a log/slog handler that stamps each log line with the
// trace and span it was written in.
//
//	tel, err := telemetry.Setup(ctx, "Finalize") // cold start, before the clients are built
//	slog.SetDefault(slog.New(telemetry.LogHandler(slog.NewJSONHandler(os.Stdout, nil))))
//	lambda.Start(telemetry.FlushAfter(tel, handler)) // spans exported before each invocation returns
//
// # Configuration
//
// The standard OpenTelemetry variables, read once by [Setup] (through the
// getenv given to [SetupFrom], so the local stack and the tests can pass a
// map):
//
//	OTEL_EXPORTER_OTLP_ENDPOINT         OTLP/HTTP base URL, e.g. http://127.0.0.1:4318; spans go
//	                                    to <base>/v1/traces. Unset (and the next one unset):
//	                                    tracing is off, see below
//	OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  the traces URL itself, used as is (wins over the above)
//	OTEL_EXPORTER_OTLP_HEADERS          headers of every export, "k1=v1,k2=v2" (values
//	OTEL_EXPORTER_OTLP_TRACES_HEADERS   percent-encoded), e.g. a vendor's API key; the
//	                                    TRACES_ form wins
//	OTEL_EXPORTER_OTLP_TIMEOUT          one export's limit in milliseconds (default 10000);
//	OTEL_EXPORTER_OTLP_TRACES_TIMEOUT   a flush is bounded by TRACE_FLUSH_TIMEOUT_MS anyway
//	OTEL_EXPORTER_OTLP_COMPRESSION      gzip or none (default none); also _TRACES_COMPRESSION
//	OTEL_EXPORTER_OTLP_PROTOCOL         http/protobuf (default) or http/json; grpc is refused:
//	                                    the gRPC exporter is not linked in (it would pull
//	                                    google.golang.org/grpc into every binary). Also _TRACES_
//	OTEL_SERVICE_NAME                   service.name (default moc-upload)
//	OTEL_RESOURCE_ATTRIBUTES            more resource attributes, "k1=v1,k2=v2"
//	                                    (e.g. deployment.environment.name=prod)
//	OTEL_TRACES_SAMPLER                 always_on, always_off, traceidratio,
//	                                    parentbased_always_on (default),
//	                                    parentbased_always_off, parentbased_traceidratio
//	OTEL_TRACES_SAMPLER_ARG             the ratio of the *traceidratio samplers, 0..1 (default 1)
//	OTEL_TRACES_EXPORTER                otlp (default) or none (tracing off)
//	OTEL_SDK_DISABLED                   true turns tracing off
//
// and one of the service's own:
//
//	TRACE_FLUSH_TIMEOUT_MS  how long an invocation may wait, after its handler, for its spans
//	                        to be exported (default 500); past it they are dropped and the
//	                        invocation returns. Not an OTEL_ name: that prefix is the
//	                        specification's.
//
// A malformed value is an error of Setup that names the variable, and the
// function's cold start fails with it, like any other configuration error.
// The exporter also reads, from the process environment only, the TLS
// variables (OTEL_EXPORTER_OTLP_CERTIFICATE, _CLIENT_CERTIFICATE,
// _CLIENT_KEY and their _TRACES_ forms) and the batch processor the
// OTEL_BSP_* ones. OTEL_PROPAGATORS is not read: the propagators are
// always W3C TraceContext and Baggage.
//
// Resource: service.name, faas.name (the function given to Setup, when not
// empty), telemetry.sdk.*, and in Lambda (AWS_LAMBDA_FUNCTION_NAME set)
// cloud.provider=aws, cloud.platform=aws_lambda, cloud.region (AWS_REGION),
// faas.version, faas.instance (the log stream), faas.max_memory (bytes) and
// aws.log.group.names, so a trace leads to the function's logs.
//
// # Considerations
//
// Tracing off (no endpoint): Setup installs no TracerProvider, so the
// global one stays OpenTelemetry's no-op: no exporter, no goroutine, and
// the instrumentations (otelhttp, otelaws, otelpgx) create non-recording
// spans that cost nanoseconds. The W3C propagator is installed either way,
// so a trace context that comes in still goes out.
//
// Lambda freezes the process between invocations and may discard it
// without notice, so spans still buffered when an invocation returns can
// be lost. [FlushAfter] exports them before the handler's answer goes
// back, bounded by TRACE_FLUSH_TIMEOUT_MS (and by the invocation's
// deadline): a slow or dead collector costs at most that much per
// invocation, never the request. Spans go through a batch span processor:
// ending a span only queues it, and the flush sends all of an
// invocation's spans in one request, where a simple (synchronous)
// processor would make one request per span, on the request's path (a
// finalize ends dozens of query spans). Exports are not retried (a retry's
// back-off, 5 s at first, would never fit in the flush's bound): a failed
// export drops its spans and logs a warning.
//
// Log correlation: [LogHandler] adds trace_id and span_id to a record only
// when it has a context with a span, so log with slog.InfoContext(ctx, …)
// (or Logger.InfoContext) where a request's context is at hand.
package telemetry
