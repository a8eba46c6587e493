// Command moc-local runs the MOC upload service on this machine, without
// Docker: `make local` (serve), `make seed`, `make replay` and
// `make migrate` all come here.
//
//	moc-local                          start everything, serve the HTTP and WebSocket APIs, Ctrl-C stops
//	moc-local seed                     load the sample session and image file
//	moc-local replay -fn F -event E    run function F's handler on sample event E
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
	"strconv"
	"strings"
	"syscall"

	"github.com/aws/aws-lambda-go/events"

	"github.com/mocbuilders/moc-upload/local/devstack"
	"github.com/mocbuilders/moc-upload/local/gateway"
	"github.com/mocbuilders/moc-upload/local/wsgateway"
	"github.com/mocbuilders/moc-upload/shared/postgres"
)

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
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

func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("http", envOr("LOCAL_HTTP_ADDR", "127.0.0.1:3000"), "address of the HTTP API")
	wsAddr := fs.String("ws", envOr("LOCAL_WS_ADDR", "127.0.0.1:3001"), "address of the WebSocket API and its management API")
	if err := fs.Parse(args); err != nil {
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
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("HTTP API address %s: %w (set LOCAL_HTTP_ADDR or -http)", *addr, err)
	}
	wsln, err := net.Listen("tcp", *wsAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("WebSocket API address %s: %w (set LOCAL_WS_ADDR or -ws)", *wsAddr, err)
	}
	// The functions post progress to this WebSocket API's management API
	// (WEBSOCKET_ENDPOINT, unless the environment sets it).
	opts.WebSocketAddr = wsln.Addr().String()
	st, err := devstack.Start(ctx, opts)
	if err != nil {
		ln.Close()
		wsln.Close()
		return err
	}
	defer st.Close()
	c := st.Config
	fmt.Printf(`
MOC upload service — local stack
  HTTP API     http://%s   (Authorization: Bearer <any user id>)
  WebSocket    ws://%s/?sessionId=<id>&token=<any user id>   (management API: %s)
  PostgreSQL   %s
  S3           %s   bucket %s
  data         %s   (make wipe deletes it; service logs in services.log)
  limits       %s
  CORS         %s
Ctrl-C stops everything.
`, ln.Addr(), wsln.Addr(), wsEndpointBanner(wsln.Addr().String()), devstack.Redacted(c.DatabaseURL),
		orAWS(c.S3Endpoint), c.S3Bucket, opts.DataDir,
		limitsBanner(gw.PayloadLimits), corsBanner(gw.CORSOrigins, os.Getenv("S3_ENDPOINT") == ""))

	// Both APIs run until Ctrl-C; either failing stops the other.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- st.Serve(ctx, ln, gw) }()
	go func() { errc <- st.ServeWebSocket(ctx, wsln, wsgateway.Options{}) }()
	err = <-errc
	cancel()
	if err2 := <-errc; err == nil {
		err = err2
	}
	return err
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

// startStack starts (or joins, see devstack.Options) the local stack.
func startStack(ctx context.Context) (*devstack.Stack, error) {
	opts, err := options()
	if err != nil {
		return nil, err
	}
	return devstack.Start(ctx, opts)
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
	fn := fs.String("fn", "", "function name, e.g. GetSession")
	eventFile := fs.String("event", "", "sample event, e.g. events/GetSession.json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raw, err := os.ReadFile(*eventFile)
	if err != nil {
		return err
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
