// Package app wires a function: configuration from the environment, the
// PostgreSQL, S3 and WebSocket (progress) adapters, the upload service and
// its HTTP and WebSocket APIs. Every Lambda binary and the local stack
// build the same App, once per process.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"
	"github.com/google/uuid"

	"github.com/mocbuilders/moc-upload/shared/httpapi"
	"github.com/mocbuilders/moc-upload/shared/postgres"
	"github.com/mocbuilders/moc-upload/shared/progress"
	"github.com/mocbuilders/moc-upload/shared/s3blob"
	"github.com/mocbuilders/moc-upload/shared/upload"
	"github.com/mocbuilders/moc-upload/shared/wsapi"
)

// App is one process's service and APIs.
type App struct {
	Service *upload.Service
	API     *httpapi.API
	// WebSocket serves the WebSocket API's routes.
	WebSocket *wsapi.API
	store     *postgres.Store
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
	svc := &upload.Service{
		Store:               store,
		Blob:                blob,
		Limits:              cfg.Limits,
		Stage:               cfg.Stage,
		DownloadURLTTL:      cfg.DownloadURLTTL,
		UploadURLTTL:        cfg.UploadURLTTL,
		FinalizeConcurrency: 8,
		Progress:            prog,
		Now:                 time.Now,
		NewID:               uuid.NewString,
	}
	api := httpapi.New(svc)
	api.MaxBatchBytes = cfg.MaxBatchBytes
	return &App{Service: svc, API: api, WebSocket: wsapi.New(svc, store), store: store}, nil
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

// LambdaMain is all a function's main does: configure, connect once (cold
// start), then serve invocations until the runtime stops the process.
func LambdaMain(function string) {
	slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stdout, nil)).With("function", function))
	if err := runLambda(context.Background(), function); err != nil {
		slog.Error("cold start failed", "err", err)
		os.Exit(1)
	}
}

func runLambda(ctx context.Context, function string) error {
	cfg, err := ConfigFromEnv()
	if err != nil {
		return err
	}
	a, err := New(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	handler, err := a.LambdaHandler(function)
	if err != nil {
		return err
	}
	lambda.Start(handler)
	return nil
}

// WebSocketHandler is a WebSocket function's Lambda entry point (WsConnect,
// WsDisconnect, WsDefault): API Gateway's WebSocket event in, the route's
// response out. The local WebSocket gateway calls the same handlers.
func (a *App) WebSocketHandler(function string) (func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error), error) {
	return a.WebSocket.Handler(function)
}

// WebSocketMain is a WebSocket function's main: configure, connect once
// (cold start), then serve the route's invocations.
func WebSocketMain(function string) {
	slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stdout, nil)).With("function", function))
	if err := runWebSocket(context.Background(), function); err != nil {
		slog.Error("cold start failed", "err", err)
		os.Exit(1)
	}
}

func runWebSocket(ctx context.Context, function string) error {
	if _, ok := wsapi.RouteByFunction(function); !ok {
		return fmt.Errorf("no WebSocket route for function %q", function)
	}
	cfg, err := ConfigFromEnv()
	if err != nil {
		return err
	}
	a, err := New(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	handler, err := a.WebSocketHandler(function)
	if err != nil {
		return err
	}
	lambda.Start(handler)
	return nil
}
