// Package devstack starts the whole service on one machine without Docker:
// a PostgreSQL cluster from the Debian binaries (unless DATABASE_URL is
// set), versitygw as the S3-compatible server (unless S3_ENDPOINT is set),
// the migrations, the bucket (with template.yaml's CORS rule when the S3
// server is the stack's own, so that browsers can PUT to presigned URLs),
// and the local HTTP API and WebSocket API gateways and Lambda Invoke API in
// front of the same Lambda handlers the functions run. `make local`, `make
// seed`, `make replay` and the end-to-end test all start it through Start.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mocbuilders/moc-upload/local/gateway"
	"github.com/mocbuilders/moc-upload/local/invoke"
	"github.com/mocbuilders/moc-upload/local/stack"
	"github.com/mocbuilders/moc-upload/local/wsgateway"
	"github.com/mocbuilders/moc-upload/shared/app"
	"github.com/mocbuilders/moc-upload/shared/app/invoker"
	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/httpapi"
	"github.com/mocbuilders/moc-upload/shared/postgres"
	"github.com/mocbuilders/moc-upload/shared/telemetry"
	"github.com/mocbuilders/moc-upload/shared/thumbnail"
	"github.com/mocbuilders/moc-upload/shared/wsapi"
)

// Options say where the stack keeps its data and which ports it uses.
type Options struct {
	// DataDir holds the PostgreSQL cluster (pg/) and the objects (s3/).
	DataDir string
	// PGPort and S3Port are used when the stack starts its own services.
	// When something already listens there (another make local), it is
	// reused instead. 0 starts the service on a free port, never reusing.
	PGPort, S3Port int
	// Getenv reads the configuration (os.Getenv when nil).
	Getenv func(string) string
	// Log receives the services' own logs (discarded when nil).
	Log io.Writer
	// Fast trades durability for speed (tests).
	Fast bool
	// WebSocketAddr is where the stack's WebSocket API listens (host:port,
	// e.g. the address of the listener given to ServeWebSocket). When set
	// and WEBSOCKET_ENDPOINT is not, the functions post to
	// WEBSOCKET_ENDPOINT=http://<WebSocketAddr>, its management API. Empty:
	// WEBSOCKET_ENDPOINT is as the environment has it (unset: no events).
	WebSocketAddr string
	// LambdaAddr is where the stack's Lambda Invoke API listens (host:port,
	// e.g. the address of the listener given to ServeInvoke). When set and
	// LAMBDA_ENDPOINT is not, the functions invoke their follow-up work at
	// LAMBDA_ENDPOINT=http://<LambdaAddr>. Empty: LAMBDA_ENDPOINT is as the
	// environment has it.
	LambdaAddr string
}

// Stack is a running local stack.
type Stack struct {
	Config app.Config
	App    *app.App
	// Telemetry exports the stack's spans when OTEL_EXPORTER_OTLP_ENDPOINT
	// is set. The stack is one long process, not flushed per invocation as
	// a Lambda is: Flush it before looking for a request's spans.
	Telemetry  *telemetry.Telemetry
	AdminDBURL string // the cluster's postgres database, when the stack started it
	stops      []func()
}

// Start brings the stack up: services, migrations, bucket, application.
func Start(ctx context.Context, o Options) (_ *Stack, err error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	s := &Stack{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	env := map[string]string{}
	getenv := func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return o.Getenv(k)
	}

	if o.Getenv("DATABASE_URL") == "" {
		url, err := s.startPostgres(ctx, o)
		if err != nil {
			return nil, err
		}
		env["DATABASE_URL"] = url
	}
	ownS3 := o.Getenv("S3_ENDPOINT") == ""
	if ownS3 {
		srv, err := s.startS3(ctx, o)
		if err != nil {
			return nil, err
		}
		env["S3_ENDPOINT"] = srv.Endpoint
		env["AWS_ACCESS_KEY_ID"] = srv.AccessKey
		env["AWS_SECRET_ACCESS_KEY"] = srv.SecretKey
		env["AWS_REGION"] = srv.Region
	}
	if o.Getenv("S3_BUCKET") == "" {
		env["S3_BUCKET"] = "moc-uploads-local"
	}
	if o.WebSocketAddr != "" && o.Getenv("WEBSOCKET_ENDPOINT") == "" {
		env["WEBSOCKET_ENDPOINT"] = "http://" + o.WebSocketAddr
	}
	if o.LambdaAddr != "" && o.Getenv("LAMBDA_ENDPOINT") == "" {
		env["LAMBDA_ENDPOINT"] = "http://" + o.LambdaAddr
	}
	if s.Config, err = app.ConfigFrom(getenv); err != nil {
		return nil, err
	}
	if err := postgres.Migrate(ctx, s.Config.DatabaseURL); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	if s.Config.S3Endpoint != "" {
		c := s.Config
		if err := stack.EnsureBucket(ctx, c.S3Endpoint, c.S3AccessKey, c.S3SecretKey, c.S3Region, c.S3Bucket); err != nil {
			return nil, fmt.Errorf("bucket %s: %w", c.S3Bucket, err)
		}
		if ownS3 {
			// Browsers PUT to presigned URLs of this server: give the bucket
			// template.yaml's CORS rule, for LOCAL_CORS_ORIGINS ("*" by
			// default; "off" removes it). A bucket at S3_ENDPOINT is left as
			// it is.
			origins := gateway.ParseCORSOrigins(o.Getenv("LOCAL_CORS_ORIGINS"))
			if err := stack.PutBucketCORS(ctx, c.S3Endpoint, c.S3AccessKey, c.S3SecretKey, c.S3Region, c.S3Bucket, origins); err != nil {
				return nil, fmt.Errorf("bucket %s: %w", c.S3Bucket, err)
			}
		}
	}
	if s.Telemetry, err = telemetry.SetupFrom(ctx, "", getenv); err != nil {
		return nil, err
	}
	s.stops = append(s.stops, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Telemetry.Shutdown(ctx)
	})
	// Every part: the stack runs every function.
	if s.App, err = app.NewWith(ctx, s.Config, app.Parts{Invoker: invoker.New, Thumbnail: thumbnail.Generate}); err != nil {
		return nil, err
	}
	s.stops = append(s.stops, s.App.Close)
	return s, nil
}

func (s *Stack) startPostgres(ctx context.Context, o Options) (string, error) {
	if o.PGPort != 0 && stack.PortOpen(fmt.Sprintf("127.0.0.1:%d", o.PGPort)) {
		// Only if it is PostgreSQL, else say what is there (moc-local
		// reads the port from LOCAL_PG_PORT).
		url, err := stack.ReusePostgres(ctx, o.PGPort, "LOCAL_PG_PORT")
		if err != nil {
			return "", err
		}
		slog.Info("reusing the PostgreSQL already listening", "url", url)
		s.AdminDBURL = url
		return url, nil
	}
	pg, err := stack.StartPostgres(ctx, stack.PostgresOptions{
		DataDir: filepath.Join(o.DataDir, "pg"), Port: o.PGPort, Log: o.Log, Fast: o.Fast,
	})
	if err != nil {
		return "", err
	}
	s.stops = append(s.stops, func() { _ = pg.Stop() })
	s.AdminDBURL = pg.URL
	return pg.URL, nil
}

func (s *Stack) startS3(ctx context.Context, o Options) (*stack.S3Server, error) {
	if o.S3Port != 0 && stack.PortOpen(fmt.Sprintf("127.0.0.1:%d", o.S3Port)) {
		// Only if it is S3 with the development credentials, else say
		// what is there (moc-local reads the port from LOCAL_S3_PORT).
		srv, err := stack.ReuseS3(ctx, o.S3Port, "LOCAL_S3_PORT")
		if err != nil {
			return nil, err
		}
		slog.Info("reusing the S3 server already listening", "port", o.S3Port)
		return srv, nil
	}
	srv, err := stack.StartS3(ctx, filepath.Join(o.DataDir, "s3"), o.S3Port, o.Log)
	if err != nil {
		return nil, err
	}
	s.stops = append(s.stops, func() { _ = srv.Stop() })
	return srv, nil
}

// Gateway returns the local HTTP API: every route invokes its function's
// Lambda handler through aws-lambda-go-api-proxy, as in AWS.
func (s *Stack) Gateway(opts gateway.Options) (http.Handler, error) {
	handlers := map[string]gateway.Handler{}
	for _, rt := range httpapi.Routes {
		h, err := s.App.LambdaHandler(rt.Function)
		if err != nil {
			return nil, err
		}
		handlers[rt.Function] = h
	}
	return gateway.New(handlers, opts)
}

// Serve runs the gateway on ln until ctx ends.
func (s *Stack) Serve(ctx context.Context, ln net.Listener, opts gateway.Options) error {
	h, err := s.Gateway(opts)
	if err != nil {
		return err
	}
	return serveUntil(ctx, ln, h, nil)
}

// serveUntil serves h on ln until ctx ends (or serving fails), then shuts
// the server down (at most 5 s for the requests in flight), runs
// afterShutdown when it is set, and returns.
func serveUntil(ctx context.Context, ln net.Listener, h http.Handler, afterShutdown func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		shutdown, cancelShutdown := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancelShutdown()
		_ = srv.Shutdown(shutdown)
		if afterShutdown != nil {
			afterShutdown()
		}
	}()
	err := srv.Serve(ln)
	cancel()
	<-stopped
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// WebSocketGateway returns the local WebSocket API: every route of
// wsapi.Routes invokes its function's Lambda handler, and the management
// API the functions post to (WEBSOCKET_ENDPOINT) is served on the same
// port. Close it to end its connections.
func (s *Stack) WebSocketGateway(opts wsgateway.Options) (*wsgateway.Gateway, error) {
	handlers := map[string]wsgateway.Handler{}
	for _, rt := range wsapi.Routes {
		h, err := s.App.WebSocketHandler(rt.Function)
		if err != nil {
			return nil, err
		}
		handlers[rt.Function] = h
	}
	return wsgateway.New(handlers, opts), nil
}

// ServeWebSocket runs the WebSocket API on ln until ctx ends; it then
// closes every connection (their $disconnect runs) and returns.
func (s *Stack) ServeWebSocket(ctx context.Context, ln net.Listener, opts wsgateway.Options) error {
	gw, err := s.WebSocketGateway(opts)
	if err != nil {
		ln.Close()
		return err
	}
	// Shutdown stops accepting; upgraded connections are the gateway's.
	return serveUntil(ctx, ln, gw, gw.Close)
}

// AsyncRetryAttempts are the async functions' MaximumRetryAttempts, as
// template.yaml's EventInvokeConfig sets them (Lambda's default, 2, is
// never left in force there).
var AsyncRetryAttempts = map[string]int{
	followup.ThumbnailFunction: 1,
	followup.WebhookFunction:   0,
	followup.SweeperFunction:   0,
}

// AsyncFunctionTimeout is the async functions' Timeout in template.yaml.
const AsyncFunctionTimeout = 60 * time.Second

// InvokeShutdownTimeout bounds how long ServeInvoke waits, once its
// context ends, for the async invocations still running.
const InvokeShutdownTimeout = 30 * time.Second

// InvokeAPI returns the local Lambda Invoke API (what `sam local
// start-lambda` serves) with the handler of each of followup.Functions.
// Unset in opts, Timeout is AsyncFunctionTimeout and MaxRetryAttempts
// AsyncRetryAttempts, as in template.yaml.
func (s *Stack) InvokeAPI(opts invoke.Options) (*invoke.Server, error) {
	handlers := map[string]invoke.Handler{}
	for _, fn := range followup.Functions {
		h, err := s.App.AsyncHandler(fn)
		if err != nil {
			return nil, err
		}
		handlers[fn] = h
	}
	if opts.Timeout == 0 {
		opts.Timeout = AsyncFunctionTimeout
	}
	if opts.MaxRetryAttempts == nil {
		opts.MaxRetryAttempts = maps.Clone(AsyncRetryAttempts)
	}
	if opts.Region == "" {
		opts.Region = s.Config.S3Region
	}
	return invoke.New(handlers, opts), nil
}

// ServeInvoke runs srv (see InvokeAPI) on ln until ctx ends; it then stops
// taking requests, waits at most InvokeShutdownTimeout for the async
// invocations still running (dropping the retries still waiting) and
// returns. Stop the HTTP API first: its requests invoke through srv.
func ServeInvoke(ctx context.Context, ln net.Listener, srv *invoke.Server) error {
	// RequestResponse invocations finish in the shutdown; the async ones
	// still running get InvokeShutdownTimeout (srv.Close logs what it
	// gives up on).
	return serveUntil(ctx, ln, srv, func() {
		wait, cancelWait := context.WithTimeout(context.Background(), InvokeShutdownTimeout)
		defer cancelWait()
		_ = srv.Close(wait)
	})
}

// Close stops what Start started, last first.
func (s *Stack) Close() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
	s.stops = nil
}

// Redacted is a URL without its password, for printing.
func Redacted(url string) string {
	if i := strings.Index(url, "://"); i >= 0 {
		if at := strings.Index(url[i+3:], "@"); at >= 0 {
			userinfo := url[i+3 : i+3+at]
			if u, _, ok := strings.Cut(userinfo, ":"); ok {
				return url[:i+3] + u + ":***" + url[i+3+at:]
			}
		}
	}
	return url
}
