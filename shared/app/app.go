// Package app wires a function: configuration from the environment, the
// PostgreSQL, S3, WebSocket (progress), Lambda (invoke) and webhook
// adapters, the upload service, its HTTP and WebSocket APIs and the async
// functions of its follow-up work. Every Lambda binary and the local stack
// build the same App, once per process.
package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"
	"github.com/google/uuid"

	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/httpapi"
	"github.com/mocbuilders/moc-upload/shared/invoke"
	"github.com/mocbuilders/moc-upload/shared/postgres"
	"github.com/mocbuilders/moc-upload/shared/progress"
	"github.com/mocbuilders/moc-upload/shared/s3blob"
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
}

// New connects to PostgreSQL and S3 and builds the service.
func New(ctx context.Context, cfg Config) (*App, error) {
	store, err := postgres.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
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
	invoker, err := invoke.New(ctx, invoke.Config{
		Endpoint:        cfg.LambdaEndpoint,
		Region:          cfg.S3Region,
		AccessKeyID:     cfg.S3AccessKey,
		SecretAccessKey: cfg.S3SecretKey,
		SessionToken:    cfg.AWSSessionToken,
	})
	if err != nil {
		store.Close()
		return nil, err
	}
	dispatcher := &followup.Dispatcher{
		Invoker:           invoker,
		Store:             store,
		ThumbnailFunction: cfg.ThumbnailFunction,
		WebhookFunction:   cfg.WebhookFunction,
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
		FinalizeConcurrency: 8,
		Progress:            prog,
		ThumbnailsEnabled:   cfg.ThumbnailsEnabled,
		WebhookEnabled:      cfg.WebhookURL != "",
		FollowUps:           dispatcher,
		Now:                 time.Now,
		NewID:               uuid.NewString,
	}
	api := httpapi.New(svc)
	api.MaxBatchBytes = cfg.MaxBatchBytes
	return &App{
		Service: svc, API: api, WebSocket: wsapi.New(svc, store),
		Dispatcher: dispatcher,
		Thumbnails: &followup.Thumbnails{Store: store, Blob: blob, Stage: cfg.Stage},
		Webhooks:   webhooks,
		Sweeper:    &followup.Sweeper{Store: store, Dispatcher: dispatcher, RedispatchAfter: cfg.RedispatchAfter},
		store:      store,
	}, nil
}

// Close releases the database pool.
func (a *App) Close() { a.store.Close() }

// LambdaHandler is the function's Lambda entry point: the API Gateway HTTP
// API (payload 2.0) event in, the response out, through
// aws-lambda-go-api-proxy exactly as in AWS.
func (a *App) LambdaHandler(function string) (func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error), error) {
	h, err := a.API.Handler(function)
	if err != nil {
		return nil, err
	}
	return httpadapter.NewV2(h).ProxyWithContext, nil
}

// WebSocketHandler is a WebSocket function's Lambda entry point (WsConnect,
// WsDisconnect, WsDefault): API Gateway's WebSocket event in, the route's
// response out. The local WebSocket gateway calls the same handlers.
func (a *App) WebSocketHandler(function string) (func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error), error) {
	return a.WebSocket.Handler(function)
}

// AsyncHandler is an async function's handler (Thumbnail, Webhook,
// Sweeper): the raw event in, the result out. Thumbnail and Webhook take a
// followup.Job; the Sweeper takes any event (EventBridge's scheduled event)
// and answers its counts as JSON. The Lambda runtime (AsyncMain) and the
// local invoke API call the same handler.
func (a *App) AsyncHandler(function string) (func(ctx context.Context, payload []byte) ([]byte, error), error) {
	switch function {
	case followup.ThumbnailFunction:
		return jobHandler(function, a.Thumbnails.Run), nil
	case followup.WebhookFunction:
		return jobHandler(function, a.Webhooks.Run), nil
	case followup.SweeperFunction:
		return func(ctx context.Context, _ []byte) ([]byte, error) {
			res, err := a.Sweeper.Run(ctx)
			if err != nil {
				return nil, err
			}
			return json.Marshal(res)
		}, nil
	}
	return nil, fmt.Errorf("no async function %q", function)
}

// jobHandler decodes a Job and runs it. An event that is not a Job is an
// error: no retry can mend it, and Lambda hands it to the function's
// on-failure destination, if any.
func jobHandler(function string, run func(context.Context, followup.Job) error) func(context.Context, []byte) ([]byte, error) {
	return func(ctx context.Context, payload []byte) ([]byte, error) {
		var job followup.Job
		if err := json.Unmarshal(payload, &job); err != nil || job.OutboxID == "" {
			slog.Error("event is not a follow-up job", "function", function, "payload", truncate(payload, 256))
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

// LambdaMain is an HTTP API function's main (functions/<Function>).
func LambdaMain(function string) {
	lambdaMain(function, func(a *App) (any, error) { return a.LambdaHandler(function) })
}

// WebSocketMain is a WebSocket API function's main (WsConnect,
// WsDisconnect, WsDefault).
func WebSocketMain(function string) {
	lambdaMain(function, func(a *App) (any, error) { return a.WebSocketHandler(function) })
}

// AsyncMain is an async function's main (Thumbnail, Webhook, Sweeper).
func AsyncMain(function string) {
	lambdaMain(function, func(a *App) (any, error) {
		h, err := a.AsyncHandler(function)
		return rawHandler(h), err
	})
}

// lambdaMain is all a function's main does: log JSON, configure and connect
// once (cold start), then serve the handler handlerOf picks until the
// runtime stops the process.
func lambdaMain(function string, handlerOf func(*App) (any, error)) {
	slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stdout, nil)).With("function", function))
	if err := serveLambda(context.Background(), handlerOf); err != nil {
		slog.Error("cold start failed", "err", err)
		os.Exit(1)
	}
}

func serveLambda(ctx context.Context, handlerOf func(*App) (any, error)) error {
	cfg, err := ConfigFromEnv()
	if err != nil {
		return err
	}
	a, err := New(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	handler, err := handlerOf(a)
	if err != nil {
		return err
	}
	lambda.Start(handler)
	return nil
}
