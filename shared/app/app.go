// Package app wires a function: configuration from the environment, the
// PostgreSQL, S3, WebSocket (progress), Lambda (invoke) and webhook
// adapters, the upload service, its HTTP and WebSocket APIs and the async
// functions of its follow-up work. Every Lambda binary and the local stack
// build the same App, once per process, each with the Parts it uses (see
// Parts: what only some functions link).
//
// # Tracing
//
// The App is traced with OpenTelemetry's global provider, which a
// function's main sets up with package telemetry (OTEL_* variables; unset,
// it stays the no-op and tracing costs nothing measurable): every HTTP
// request is a server span named after its route (LambdaHandler), every
// WebSocket and async invocation a span named after its function
// (WebSocketHandler, AsyncHandler; a follow-up job's continues the trace
// of the finalize that made it), and within them each PostgreSQL query
// (otelpgx) and S3, Lambda and API Gateway management call (otelaws) is a
// child span. The local stack calls the same handlers, so it traces the
// same way.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"
	"unsafe"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"
	"github.com/exaring/otelpgx"
	"github.com/google/uuid"
	asmbase64 "github.com/segmentio/asm/base64"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/httpapi"
	"github.com/mocbuilders/moc-upload/shared/postgres"
	"github.com/mocbuilders/moc-upload/shared/progress"
	"github.com/mocbuilders/moc-upload/shared/s3blob"
	"github.com/mocbuilders/moc-upload/shared/secrets"
	"github.com/mocbuilders/moc-upload/shared/telemetry"
	"github.com/mocbuilders/moc-upload/shared/upload"
	"github.com/mocbuilders/moc-upload/shared/webhook"
	"github.com/mocbuilders/moc-upload/shared/wsapi"
)

// App is one process's service and APIs.
type App struct {
	Service *upload.Service
	API     *httpapi.API
	// WebSocket serves the WebSocket API's routes.
	WebSocket *wsapi.API
	// The follow-up work of finalize: the Dispatcher finalize hands its
	// outbox rows to, and the async functions' jobs.
	Dispatcher *followup.Dispatcher
	Thumbnails *followup.Thumbnails
	Webhooks   *followup.Webhooks
	Sweeper    *followup.Sweeper
	store      *postgres.Store
	// phases are how long NewWith's steps took (the cold start's log).
	phases phases
}

// Parts are the adapters that only some functions use, each given by the
// function's main: a package imported is linked into the binary, its
// package initialisation run at every cold start, used or not, so the
// package app imports none of them (docs/benchmarks.md "Cold start and
// binary size"). The local stack, which runs every function in one
// process, gives them all.
type Parts struct {
	// Invoker makes the client that starts the async functions
	// (package invoke, through shared/app/invoker: Lambda's API client):
	// Finalize hands its follow-up work to them, the Sweeper dispatches
	// it again. Without it nothing is dispatched (Service.FollowUps is
	// nil).
	Invoker func(context.Context, Config) (followup.Invoker, error)
	// Thumbnail makes a thumbnail (thumbnail.Generate: the image decoders,
	// the HEIF decoder's WebAssembly runtime): the Thumbnail function's.
	Thumbnail func(r io.Reader, mimeType string) ([]byte, error)
}

// missing names the part function cannot run without, if p lacks it: a
// binary built without it fails at cold start, saying so, rather than
// dropping work.
func (p Parts) missing(function string) error {
	switch {
	case (function == "Finalize" || function == followup.SweeperFunction) && p.Invoker == nil:
		return fmt.Errorf("%s needs app.Parts.Invoker (its main must give invoker.New)", function)
	case function == followup.ThumbnailFunction && p.Thumbnail == nil:
		return fmt.Errorf("%s needs app.Parts.Thumbnail (its main must give thumbnail.Generate)", function)
	}
	return nil
}

// New is NewWith without Parts: nothing dispatched, no thumbnail made.
func New(ctx context.Context, cfg Config) (*App, error) { return NewWith(ctx, cfg, Parts{}) }

// NewWith connects to PostgreSQL and S3 and builds the service, with the
// parts given. Its queries and AWS calls are traced with the global
// OpenTelemetry provider (see "Tracing").
func NewWith(ctx context.Context, cfg Config, parts Parts) (*App, error) {
	var took phases
	step := time.Now()
	store, err := postgres.Open(ctx, cfg.DatabaseURL, postgres.WithTracer(otelpgx.NewTracer()))
	if err != nil {
		return nil, err
	}
	took.mark("postgresMs", &step) // the pool, and one connection (Open pings)
	blob, err := s3blob.New(ctx, s3blob.Config{
		Bucket:          cfg.S3Bucket,
		Endpoint:        cfg.S3Endpoint,
		Region:          cfg.S3Region,
		AccessKeyID:     cfg.S3AccessKey,
		SecretAccessKey: cfg.S3SecretKey,
		SSE:             cfg.S3SSE,
		PublicBaseURL:   cfg.S3PublicBaseURL,
	})
	if err != nil {
		store.Close()
		return nil, err
	}
	took.mark("s3Ms", &step)
	// Every function reports progress, the HTTP ones that record parts or
	// finalize above all: without WEBSOCKET_ENDPOINT each event is dropped
	// with a warning (progress.Disabled).
	prog, err := progress.Open(ctx, store, progress.ClientConfig{
		Endpoint:        cfg.WebSocketEndpoint,
		Region:          cfg.S3Region,
		AccessKeyID:     cfg.S3AccessKey,
		SecretAccessKey: cfg.S3SecretKey,
		SessionToken:    cfg.AWSSessionToken,
	})
	if err != nil {
		store.Close()
		return nil, err
	}
	took.mark("progressMs", &step)
	var dispatcher *followup.Dispatcher
	var followUps upload.FollowUps // nil, not a nil *Dispatcher, without one
	if parts.Invoker != nil {
		invoker, err := parts.Invoker(ctx, cfg)
		if err != nil {
			store.Close()
			return nil, err
		}
		dispatcher = &followup.Dispatcher{
			Invoker:           invoker,
			Store:             store,
			ThumbnailFunction: cfg.ThumbnailFunction,
			WebhookFunction:   cfg.WebhookFunction,
		}
		followUps = dispatcher
		took.mark("invokerMs", &step)
	}
	webhooks := &followup.Webhooks{Store: store}
	if cfg.WebhookURL != "" {
		webhooks.Sender = &webhook.Sender{URL: cfg.WebhookURL, Secret: cfg.WebhookSecret, BaseDelay: cfg.WebhookBaseDelay}
	}
	svc := &upload.Service{
		Store:               store,
		Blob:                blob,
		Limits:              cfg.Limits,
		Stage:               cfg.Stage,
		DownloadURLTTL:      cfg.DownloadURLTTL,
		UploadURLTTL:        cfg.UploadURLTTL,
		FinalizeConcurrency: cfg.FinalizeConcurrency,
		Progress:            prog,
		ThumbnailsEnabled:   cfg.ThumbnailsEnabled,
		WebhookEnabled:      cfg.WebhookURL != "",
		FollowUps:           followUps,
		Now:                 time.Now,
		NewID:               uuid.NewString,
	}
	api := httpapi.New(svc)
	api.MaxBatchBytes = cfg.MaxBatchBytes
	return &App{
		Service: svc, API: api, WebSocket: wsapi.New(svc, store),
		Dispatcher: dispatcher,
		Thumbnails: &followup.Thumbnails{Store: store, Blob: blob, Stage: cfg.Stage, Generate: parts.Thumbnail},
		Webhooks:   webhooks,
		Sweeper:    &followup.Sweeper{Store: store, Dispatcher: dispatcher, RedispatchAfter: cfg.RedispatchAfter},
		store:      store,
		phases:     took,
	}, nil
}

// Close releases the database pool.
func (a *App) Close() { a.store.Close() }

// LambdaHandler is the function's Lambda entry point: the API Gateway HTTP
// API (payload 2.0) event in, the response out, through
// aws-lambda-go-api-proxy exactly as in AWS. Each request is a server span
// named after the route (see traceHTTP).
func (a *App) LambdaHandler(function string) (func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error), error) {
	h, err := a.API.Handler(function)
	if err != nil {
		return nil, err
	}
	rt, _ := httpapi.RouteByFunction(function) // API.Handler found it
	adapter := httpadapter.NewV2(traceHTTP(rt, h))
	return func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		return adapter.ProxyWithContext(ctx, decodeBody(ev))
	}, nil
}

// decodeBody decodes a base64 body (API Gateway sends every binary body so,
// a proxied part among them) before the adapter does: segmentio/asm's
// decoder is about ten times as fast as encoding/base64's, which was half
// the CPU of a proxied part (docs/benchmarks.md, "Getting the bytes in").
// A body that is not base64 is left to the adapter, which refuses it.
func decodeBody(ev events.APIGatewayV2HTTPRequest) events.APIGatewayV2HTTPRequest {
	if !ev.IsBase64Encoded || ev.Body == "" {
		return ev
	}
	body := make([]byte, asmbase64.StdEncoding.DecodedLen(len(ev.Body)))
	n, err := asmbase64.StdEncoding.Decode(body, unsafe.Slice(unsafe.StringData(ev.Body), len(ev.Body)))
	if err != nil {
		return ev
	}
	// The string shares the buffer, which nothing else holds: no copy
	// here (the adapter still makes one of its own).
	ev.Body, ev.IsBase64Encoded = unsafe.String(unsafe.SliceData(body), n), false
	return ev
}

// WebSocketHandler is a WebSocket function's Lambda entry point (WsConnect,
// WsDisconnect, WsDefault): API Gateway's WebSocket event in, the route's
// response out, each invocation a span named after the function. The
// local WebSocket gateway calls the same handlers.
func (a *App) WebSocketHandler(function string) (func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error), error) {
	h, err := a.WebSocket.Handler(function)
	if err != nil {
		return nil, err
	}
	return traceWebSocket(function, h), nil
}

// AsyncHandler is an async function's handler (Thumbnail, Webhook,
// Sweeper): the raw event in, the result out. Thumbnail and Webhook take a
// followup.Job; the Sweeper takes any event (EventBridge's scheduled event)
// and answers its counts as JSON. Each invocation is a server span named
// after the function; a job's is in the trace of the dispatch that sent
// it (its traceparent), a child of the dispatch's span. The Lambda runtime
// (AsyncMain) and the local invoke API call the same handler.
func (a *App) AsyncHandler(function string) (func(ctx context.Context, payload []byte) ([]byte, error), error) {
	switch function {
	case followup.ThumbnailFunction:
		return jobHandler(function, a.Thumbnails.Run), nil
	case followup.WebhookFunction:
		return jobHandler(function, a.Webhooks.Run), nil
	case followup.SweeperFunction:
		cold := coldStart()
		return func(ctx context.Context, _ []byte) (_ []byte, err error) {
			ctx, span := startInvocation(ctx, function, "", cold.Swap(false), semconv.FaaSTriggerTimer)
			defer func() { endInvocation(span, err); span.End() }()
			res, err := a.Sweeper.Run(ctx)
			if err != nil {
				return nil, err
			}
			return json.Marshal(res)
		}, nil
	}
	return nil, fmt.Errorf("no async function %q", function)
}

// jobHandler decodes a Job and runs it, in the invocation's span, in the
// job's trace. An event that is not a Job is an error: no retry can mend it,
// and Lambda hands it to the function's on-failure destination, if any.
func jobHandler(function string, run func(context.Context, followup.Job) error) func(context.Context, []byte) ([]byte, error) {
	cold := coldStart()
	return func(ctx context.Context, payload []byte) (_ []byte, err error) {
		var job followup.Job
		decodeErr := json.Unmarshal(payload, &job)
		ctx, span := startInvocation(ctx, function, job.TraceParent, cold.Swap(false), semconv.FaaSTriggerPubSub)
		defer func() { endInvocation(span, err); span.End() }()
		if decodeErr != nil || job.OutboxID == "" {
			slog.ErrorContext(ctx, "event is not a follow-up job", "function", function, "payload", truncate(payload, 256))
			return nil, fmt.Errorf("%s: the event is not a follow-up job (want {\"outboxId\",\"kind\",\"mocId\"})", function)
		}
		return nil, run(ctx, job)
	}
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// rawHandler is a lambda.Handler: the event's bytes in, the answer's out,
// with no JSON decoding by the runtime.
type rawHandler func(ctx context.Context, payload []byte) ([]byte, error)

func (h rawHandler) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	return h(ctx, payload)
}

// LambdaMain is an HTTP API function's main (functions/<Function>), with
// the parts it uses (Finalize: an Invoker).
func LambdaMain(function string, parts Parts) {
	lambdaMain(function, parts, func(a *App, tel *telemetry.Telemetry) (any, error) {
		return flushed(a.LambdaHandler(function))(tel)
	})
}

// WebSocketMain is a WebSocket API function's main (WsConnect,
// WsDisconnect, WsDefault).
func WebSocketMain(function string) {
	lambdaMain(function, Parts{}, func(a *App, tel *telemetry.Telemetry) (any, error) {
		return flushed(a.WebSocketHandler(function))(tel)
	})
}

// AsyncMain is an async function's main (Thumbnail, Webhook, Sweeper),
// with the parts it uses (Thumbnail: Thumbnail; Sweeper: an Invoker).
func AsyncMain(function string, parts Parts) {
	lambdaMain(function, parts, func(a *App, tel *telemetry.Telemetry) (any, error) {
		h, err := a.AsyncHandler(function)
		if err != nil {
			return nil, err
		}
		return rawHandler(telemetry.FlushAfter(tel, h)), nil
	})
}

// flushed takes a handler lookup's result and gives the handler that
// flushes its spans after each invocation (or the lookup's error).
func flushed[E, R any](h func(context.Context, E) (R, error), err error) func(*telemetry.Telemetry) (any, error) {
	return func(tel *telemetry.Telemetry) (any, error) {
		if err != nil {
			return nil, err
		}
		return telemetry.FlushAfter(tel, h), nil
	}
}

// lambdaMain is all a function's main does: log JSON (with the trace and
// span ids of a record logged with a context), configure tracing and
// connect once (cold start), then serve the handler handlerOf picks —
// wrapped so that each invocation's spans are exported before it returns —
// until the runtime stops the process.
func lambdaMain(function string, parts Parts, handlerOf func(*App, *telemetry.Telemetry) (any, error)) {
	slog.SetDefault(slog.New(telemetry.LogHandler(slog.NewJSONHandler(os.Stdout, nil))).With("function", function))
	if err := serveLambda(context.Background(), function, parts, handlerOf); err != nil {
		slog.Error("cold start failed", "err", err)
		os.Exit(1)
	}
}

func serveLambda(ctx context.Context, function string, parts Parts, handlerOf func(*App, *telemetry.Telemetry) (any, error)) error {
	if err := parts.missing(function); err != nil {
		return err
	}
	began := time.Now()
	var took phases
	step := began
	// Deployed, the credentials are Secrets Manager ARNs (DATABASE_SECRET_ARN,
	// …): read them into the process's environment before anything reads
	// it. Locally none is named and this does nothing.
	if err := secrets.Load(ctx); err != nil {
		return err
	}
	took.mark("secretsMs", &step)
	cfg, cfgErr := ConfigFromEnv()
	// Before New: the clients it builds trace with the provider this
	// installs.
	tel, telErr := telemetry.Setup(ctx, function)
	if err := errors.Join(cfgErr, telErr); err != nil {
		return err
	}
	took.mark("configMs", &step) // the configuration and telemetry.Setup
	a, err := NewWith(ctx, cfg, parts)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	took = append(took, a.phases...)
	step = time.Now()
	handler, err := handlerOf(a, tel)
	if err != nil {
		return err
	}
	took.mark("handlerMs", &step)
	// From main's start (after the Go runtime and the package
	// initialisation) to the runtime's first request for an event.
	took = append(took, slog.Float64("totalMs", float64(time.Since(began).Microseconds())/1000))
	slog.Info("cold start", slog.Group("coldStart", anySlice(took)...))
	lambda.Start(handler)
	return nil
}
