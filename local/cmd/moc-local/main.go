// Command moc-local runs the MOC upload service on this machine, without
// Docker: `make local` (serve), `make seed`, `make replay` and
// `make migrate` all come here.
//
//	moc-local                          start everything, serve the HTTP, WebSocket and Lambda Invoke APIs, Ctrl-C stops
//	moc-local seed                     load the sample rows (local/devstack/seed.sql) and their objects
//	moc-local replay -fn F -event E    run function F's handler on sample event E (an HTTP API event, or an async function's payload)
//	moc-local migrate                  apply migrations to DATABASE_URL
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/mocbuilders/moc-upload/local/devstack"
	"github.com/mocbuilders/moc-upload/local/gateway"
	"github.com/mocbuilders/moc-upload/local/invoke"
	"github.com/mocbuilders/moc-upload/local/wsgateway"
	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/httpapi"
	sharedinvoke "github.com/mocbuilders/moc-upload/shared/invoke"
	"github.com/mocbuilders/moc-upload/shared/postgres"
	"github.com/mocbuilders/moc-upload/shared/telemetry"
	"github.com/mocbuilders/moc-upload/shared/wsapi"
)

func main() {
	// Log lines carry the trace and span ids when tracing is on.
	slog.SetDefault(slog.New(telemetry.LogHandler(slog.NewTextHandler(os.Stderr, nil))))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "moc-local:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args)
	case "seed":
		return seed(ctx)
	case "replay":
		return replay(ctx, args)
	case "migrate":
		url := os.Getenv("DATABASE_URL")
		if url == "" {
			return fmt.Errorf("set DATABASE_URL")
		}
		if err := postgres.Migrate(ctx, url); err != nil {
			return err
		}
		fmt.Println("migrations applied")
		return nil
	}
	return fmt.Errorf("unknown command %q (serve, seed, replay, migrate)", cmd)
}

func options() (devstack.Options, error) {
	dataDir := envOr("LOCAL_DATA_DIR", ".local")
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return devstack.Options{}, err
	}
	logf, err := openLog(abs)
	if err != nil {
		return devstack.Options{}, err
	}
	return devstack.Options{
		DataDir: abs,
		PGPort:  envInt("LOCAL_PG_PORT", 54329),
		S3Port:  envInt("LOCAL_S3_PORT", 7070),
		Log:     logf,
	}, nil
}

func openLog(dataDir string) (*os.File, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(dataDir, "services.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
}

// defaultMemoryLimit is moc-local's soft memory limit when GOMEMLIMIT is
// not set (docs/benchmarks.md, "Peak memory of moc-local" and "moc-local
// after a load of 50 concurrent uploads"). Every proxied part is held
// about three times over while it is in flight (the body, its base64
// event, the decoded body), and with GOGC=100 alone the heap grows to
// twice what was live at the last collection and stays there after a
// load, as nothing allocates to start the next collection (50 concurrent
// uploads left 1.2 GB resident for minutes). The limit makes the collector
// run before the heap outgrows it and the runtime return what is above it
// to the system. 80 MiB was measured: the 256 MiB proxied upload peaks at
// about 107 MiB (target 124) for 4% more CPU, where 64 MiB costs 14% and
// 48 MiB 48%. It is soft: under a load that needs more, the process takes
// more (the collector then runs often but is capped at half the CPU).
const defaultMemoryLimit = 80 << 20

// setMemoryLimit applies defaultMemoryLimit unless GOMEMLIMIT says otherwise.
func setMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}

func serve(ctx context.Context, args []string) error {
	setMemoryLimit()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("http", envOr("LOCAL_HTTP_ADDR", "127.0.0.1:3000"), "address of the HTTP API")
	wsAddr := fs.String("ws", envOr("LOCAL_WS_ADDR", "127.0.0.1:3001"), "address of the WebSocket API and its management API")
	lambdaAddr := fs.String("lambda", envOr("LOCAL_LAMBDA_ADDR", "127.0.0.1:3002"), "address of the Lambda Invoke API")
	if err := fs.Parse(args); err != nil {
		return err
	}
	sweepEvery, err := sweepInterval(os.Getenv("SWEEP_INTERVAL_SECONDS"))
	if err != nil {
		return err
	}
	opts, err := options()
	if err != nil {
		return err
	}
	gw := gateway.Options{
		PayloadLimits: !strings.EqualFold(strings.TrimSpace(os.Getenv("LOCAL_AWS_PAYLOAD_LIMITS")), "off"),
		CORSOrigins:   gateway.ParseCORSOrigins(os.Getenv("LOCAL_CORS_ORIGINS")),
	}
	if err := gateway.CheckCORSOrigins(gw.CORSOrigins); err != nil {
		return fmt.Errorf("LOCAL_CORS_ORIGINS: %w", err)
	}
	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	listen := func(what, addr, how string) (net.Listener, error) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("%s address %s: %w (set %s)", what, addr, err, how)
		}
		listeners = append(listeners, l)
		return l, nil
	}
	ln, err := listen("HTTP API", *addr, "LOCAL_HTTP_ADDR or -http")
	if err != nil {
		return err
	}
	wsln, err := listen("WebSocket API", *wsAddr, "LOCAL_WS_ADDR or -ws")
	if err != nil {
		return err
	}
	lambdaLn, err := listen("Lambda Invoke API", *lambdaAddr, "LOCAL_LAMBDA_ADDR or -lambda")
	if err != nil {
		return err
	}
	// The functions post progress to this WebSocket API's management API
	// (WEBSOCKET_ENDPOINT) and invoke their follow-up work at this Invoke
	// API (LAMBDA_ENDPOINT), unless the environment sets them.
	opts.WebSocketAddr = wsln.Addr().String()
	opts.LambdaAddr = lambdaLn.Addr().String()
	st, err := devstack.Start(ctx, opts)
	if err != nil {
		closeAll()
		return err
	}
	defer st.Close()
	invokeAPI, err := st.InvokeAPI(invoke.Options{})
	if err != nil {
		closeAll()
		return err
	}
	lambdaEndpoint := "http://" + lambdaLn.Addr().String()
	c := st.Config
	// EventBridge's schedule of the Sweeper, played through the Invoke API.
	scheduler, err := sharedinvoke.New(ctx, sharedinvoke.Config{Endpoint: lambdaEndpoint, Region: c.S3Region})
	if err != nil {
		closeAll()
		return err
	}
	fmt.Printf(`
MOC upload service — local stack
  HTTP API     http://%s   (Authorization: Bearer <any user id>)
  WebSocket    ws://%s/?sessionId=<id>&token=<any user id>   (management API: %s)
  Lambda       %s   Invoke API of %s (%s)
               aws lambda invoke --endpoint-url %s --function-name Sweeper out.json
  sweeper      %s
  PostgreSQL   %s
  S3           %s   bucket %s
  data         %s   (make wipe deletes it; service logs in services.log)
  limits       %s
  CORS         %s
Ctrl-C stops everything.
`, ln.Addr(), wsln.Addr(), wsEndpointBanner(wsln.Addr().String()),
		lambdaEndpoint, strings.Join(followup.Functions, ", "), lambdaEndpointBanner(lambdaEndpoint), lambdaEndpoint,
		sweepBanner(sweepEvery), devstack.Redacted(c.DatabaseURL),
		orAWS(c.S3Endpoint), c.S3Bucket, opts.DataDir,
		limitsBanner(gw.PayloadLimits), corsBanner(gw.CORSOrigins, os.Getenv("S3_ENDPOINT") == ""))

	// The HTTP and WebSocket APIs run until Ctrl-C; either failing stops
	// the other. The Invoke API stops after them (their requests invoke
	// through it), then waits for the async invocations still running.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	invokeCtx, stopInvoke := context.WithCancel(context.Background())
	defer stopInvoke()
	errc := make(chan error, 2)
	go func() { errc <- st.Serve(ctx, ln, gw) }()
	go func() { errc <- st.ServeWebSocket(ctx, wsln, wsgateway.Options{}) }()
	invokeErr := make(chan error, 1)
	go func() {
		err := devstack.ServeInvoke(invokeCtx, lambdaLn, invokeAPI)
		if err != nil {
			cancel()
		}
		invokeErr <- err
	}()
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		invoke.Schedule{Function: followup.SweeperFunction, Every: sweepEvery, Invoker: scheduler, Region: c.S3Region}.Run(ctx)
	}()
	err = <-errc
	cancel()
	if err2 := <-errc; err == nil {
		err = err2
	}
	<-swept
	stopInvoke()
	if err2 := <-invokeErr; err == nil {
		err = err2
	}
	return err
}

// sweepInterval reads SWEEP_INTERVAL_SECONDS: how often the local stack
// invokes the Sweeper, as template.yaml's schedule does in AWS (default 60
// seconds locally; "off" or 0: never).
func sweepInterval(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return 60 * time.Second, nil
	case strings.EqualFold(v, "off"):
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("SWEEP_INTERVAL_SECONDS must be a whole number of seconds or off, got %q", v)
	}
	return time.Duration(n) * time.Second, nil
}

func sweepBanner(every time.Duration) string {
	if every <= 0 {
		return "off (SWEEP_INTERVAL_SECONDS=off)"
	}
	return fmt.Sprintf("Sweeper invoked every %s through the Invoke API, as EventBridge's schedule (SWEEP_INTERVAL_SECONDS)", every)
}

// lambdaEndpointBanner says where the functions invoke their follow-up work.
func lambdaEndpointBanner(endpoint string) string {
	if ep := os.Getenv("LAMBDA_ENDPOINT"); ep != "" {
		return "the functions invoke at LAMBDA_ENDPOINT=" + ep
	}
	return "LAMBDA_ENDPOINT=" + endpoint
}

// wsEndpointBanner says where the functions post WebSocket messages.
func wsEndpointBanner(addr string) string {
	if ep := os.Getenv("WEBSOCKET_ENDPOINT"); ep != "" {
		return "http://" + addr + "; the functions post to WEBSOCKET_ENDPOINT=" + ep
	}
	return "WEBSOCKET_ENDPOINT=http://" + addr
}

func limitsBanner(on bool) string {
	if on {
		return "as in AWS: 413 beyond a 10 MB body or a 6 MB Lambda event (LOCAL_AWS_PAYLOAD_LIMITS=off lifts them)"
	}
	return "none (LOCAL_AWS_PAYLOAD_LIMITS=off; AWS refuses bodies over 10 MB and events over 6 MB)"
}

func corsBanner(origins []string, ownS3 bool) string {
	if len(origins) == 0 {
		return "off (LOCAL_CORS_ORIGINS=off)"
	}
	where := "on the HTTP API and the bucket"
	if !ownS3 {
		where = "on the HTTP API (the bucket at S3_ENDPOINT is left as it is)"
	}
	return fmt.Sprintf("origins %s %s (LOCAL_CORS_ORIGINS)", strings.Join(origins, ", "), where)
}

// replayable are the functions replay runs: the HTTP API's and the async
// ones (the WebSocket functions need a connection: make local's WebSocket
// API).
func replayable() []string {
	var names []string
	for _, rt := range httpapi.Routes {
		names = append(names, rt.Function)
	}
	return append(names, followup.Functions...)
}

// notReplayable says why replay does not run a function that exists but
// is none of replayable's: "" for a name that is no function at all.
// TestBootstrapsUnderRIE (functions/bootstrap_test.go) replays their
// sample events under the Lambda Runtime Interface Emulator.
func notReplayable(fn string) string {
	rie := fmt.Sprintf("; `go test -run TestBootstrapsUnderRIE/%s ./functions` replays events/%s.json", fn, fn)
	switch fn {
	case "WsAuthorizer", "HttpAuthorizer":
		return "it is an authorizer, which verifies a real JWT against an identity provider's keys (JWT_ISSUER), and the local stack has none" +
			rie + " with a local one"
	case "Migrate":
		return "it is CloudFormation's custom resource handler, which answers at the event's ResponseURL (a pre-signed S3 URL), not to its caller; " +
			"`make migrate` applies the same migrations" + rie
	}
	for _, rt := range wsapi.Routes {
		if rt.Function == fn {
			return "it is a WebSocket route's function, which needs a connection: `make local`'s WebSocket API gives it one"
		}
	}
	return ""
}

// startStack starts (or joins, see devstack.Options) the local stack,
// saying which it does, and where, first.
func startStack(ctx context.Context) (*devstack.Stack, error) {
	opts, err := options()
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(os.Stderr, joinBanner(opts, os.Getenv))
	return devstack.Start(ctx, opts)
}

// joinBanner says that seed and replay work on the stack `make local`
// runs: its PostgreSQL and S3 when they are on the configured ports, else
// ones started for the command on those ports, with the same data folder.
func joinBanner(o devstack.Options, getenv func(string) string) string {
	pg := fmt.Sprintf("PostgreSQL on 127.0.0.1:%d (LOCAL_PG_PORT)", o.PGPort)
	if getenv("DATABASE_URL") != "" {
		pg = "PostgreSQL at DATABASE_URL"
	}
	s3 := fmt.Sprintf("S3 on 127.0.0.1:%d (LOCAL_S3_PORT)", o.S3Port)
	if getenv("S3_ENDPOINT") != "" {
		s3 = "S3 at S3_ENDPOINT=" + getenv("S3_ENDPOINT")
	}
	return fmt.Sprintf("moc-local: joining the local stack: %s and %s, those of a running `make local` when they answer there, else started for this command with the data in %s (LOCAL_DATA_DIR)",
		pg, s3, o.DataDir)
}

func seed(ctx context.Context) error {
	st, err := startStack(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Seed(ctx); err != nil {
		return err
	}
	fmt.Println("seeded: session", devstack.SeedSessionID, "with image file", devstack.SeedImageFileID,
		"and PDF", devstack.SeedPDFFileID, "for user", devstack.SeedUserID)
	return nil
}

func replay(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fn := fs.String("fn", "", "function name, e.g. GetSession or Sweeper")
	eventFile := fs.String("event", "", "sample event, e.g. events/GetSession.json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Before anything starts: a name replay cannot run is a typo to fix.
	if names := replayable(); !slices.Contains(names, *fn) {
		what := fmt.Sprintf("unknown function %q", *fn)
		if *fn == "" {
			what = "no function given"
		} else if why := notReplayable(*fn); why != "" {
			what = "replay cannot run " + *fn + ": " + why
		}
		return fmt.Errorf("%s: replay runs one of %s (make replay FN=<name>, EVENT=events/<name>.json by default)",
			what, strings.Join(names, ", "))
	}
	raw, err := os.ReadFile(*eventFile)
	if err != nil {
		return err
	}
	if slices.Contains(followup.Functions, *fn) {
		return replayAsync(ctx, *fn, raw)
	}
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(raw, &ev); err != nil {
		return fmt.Errorf("%s is not an API Gateway HTTP API event: %w", *eventFile, err)
	}
	st, err := startStack(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	handler, err := st.App.LambdaHandler(*fn)
	if err != nil {
		return err
	}
	resp, err := handler(ctx, ev)
	if err != nil {
		return err
	}
	out, _ := json.MarshalIndent(resp, "", "  ")
	fmt.Println(string(out))
	return nil
}

// replayAsync runs an async function (followup.Functions) on a payload, as
// one invocation of the Invoke API would, and prints its result.
func replayAsync(ctx context.Context, fn string, payload []byte) error {
	st, err := startStack(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	handler, err := st.App.AsyncHandler(fn)
	if err != nil {
		return err
	}
	out, err := handler(ctx, payload)
	if err != nil {
		return fmt.Errorf("%s failed: %w", fn, err)
	}
	if len(out) == 0 {
		out = []byte("null")
	}
	fmt.Println(string(out))
	return nil
}

func orAWS(endpoint string) string {
	if endpoint == "" {
		return "AWS S3"
	}
	return endpoint
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envInt(k string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(k)); err == nil && n > 0 {
		return n
	}
	return def
}
