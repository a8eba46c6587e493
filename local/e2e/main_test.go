// Package e2e drives the local stack over HTTP as a client would: real
// gateway, real Lambda handlers through aws-lambda-go-api-proxy, real
// PostgreSQL and a real S3-compatible server.
package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mocbuilders/moc-upload/local/devstack"
	"github.com/mocbuilders/moc-upload/local/gateway"
	"github.com/mocbuilders/moc-upload/local/invoke"
	"github.com/mocbuilders/moc-upload/local/wsgateway"
)

var (
	st *devstack.Stack
	// server plays API Gateway without its payload limits (the old
	// contract's proxied 5 MiB parts); awsServer with them, as `make local`.
	server    *httptest.Server
	awsServer *httptest.Server
	// wsURL is the local WebSocket API (ws://…/), whose management API the
	// stack's functions post progress events to.
	wsURL string
	// invokeAPI is the local Lambda invoke API the functions start the
	// async functions (Thumbnail, Webhook) through; Wait waits for them.
	invokeAPI *invoke.Server
	db        *pgxpool.Pool
	s3c       *s3.Client
)

// Settings of the stack under test; the daily limit is low so that the
// 429 is reachable, the PDF limit high enough for a 100 MiB upload.
var testEnv = map[string]string{
	"UPLOAD_RATE_LIMIT_PER_DAY": "5",
	"UPLOAD_PDF_MAX_MB":         "100",
	"S3_BUCKET":                 "e2e-uploads",
	"STAGE":                     "test",
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx := context.Background()
	// The gateway logs every request; the tests' own output is enough.
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	dir, err := os.MkdirTemp("", "moc-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	_ = os.Chmod(dir, 0o755)
	// The webhook receiver runs for the whole package: every finalize
	// sends moc.finalized to it.
	hooks = newHookReceiver()
	defer hooks.Close()
	testEnv["MOC_FINALIZE_WEBHOOK_URL"] = hooks.URL + "/hooks/moc-finalized"
	testEnv["MOC_FINALIZE_WEBHOOK_SECRET"] = hookSecret
	testEnv["WEBHOOK_RETRY_BASE_DELAY_MS"] = "50"
	// Spans go to a real OTLP/HTTP receiver.
	traces = newTraceReceiver()
	defer traces.Close()
	testEnv["OTEL_EXPORTER_OTLP_ENDPOINT"] = traces.URL
	testEnv["OTEL_SERVICE_NAME"] = "moc-upload-e2e"
	wsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	lambdaLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	st, err = devstack.Start(ctx, devstack.Options{
		DataDir: dir, Fast: true, // ports 0: free ones, never a running server's
		Getenv:        func(k string) string { return testEnv[k] },
		WebSocketAddr: wsLn.Addr().String(),
		LambdaAddr:    lambdaLn.Addr().String(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start the local stack:", err)
		return 1
	}
	defer st.Close()
	wsCtx, stopWS := context.WithCancel(ctx)
	wsDone := make(chan error, 1)
	go func() { wsDone <- st.ServeWebSocket(wsCtx, wsLn, wsgateway.Options{}) }()
	// Before the stack closes: the $disconnect handlers need the database.
	defer func() { stopWS(); <-wsDone }()
	wsURL = "ws://" + wsLn.Addr().String() + "/"
	// A failing Thumbnail is retried at once, not after Lambda's minute.
	if invokeAPI, err = st.InvokeAPI(invoke.Options{RetryDelays: []time.Duration{0}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	invCtx, stopInvoke := context.WithCancel(ctx)
	invDone := make(chan error, 1)
	go func() { invDone <- devstack.ServeInvoke(invCtx, lambdaLn, invokeAPI) }()
	defer func() { stopInvoke(); <-invDone }()
	gw, err := st.Gateway(gateway.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	server = httptest.NewServer(gw)
	defer server.Close()
	awsGW, err := st.Gateway(gateway.Options{PayloadLimits: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	awsServer = httptest.NewServer(awsGW)
	defer awsServer.Close()
	if db, err = pgxpool.New(ctx, st.Config.DatabaseURL); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer db.Close()
	c := st.Config
	s3c = s3.New(s3.Options{
		BaseEndpoint: aws.String(c.S3Endpoint), Region: c.S3Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(c.S3AccessKey, c.S3SecretKey, ""),
	})
	return m.Run()
}

func newClient(t *testing.T, user string) client {
	return client{t: t, base: server.URL, user: user}
}

// newAWSClient talks to the gateway that enforces AWS's payload limits.
func newAWSClient(t *testing.T, user string) client {
	return client{t: t, base: awsServer.URL, user: user}
}

// userFor gives each test its own user, so daily limits and titles of one
// test never meet another's, nor those of the same test's earlier runs
// (go test -count=N runs it again against the same stack).
func userFor(t *testing.T) string {
	users.Lock()
	defer users.Unlock()
	if id, ok := users.byTest[t]; ok {
		return id
	}
	id := "e2e-" + strings.NewReplacer("/", "-", " ", "-", "#", "-").Replace(strings.ToLower(t.Name()))
	users.runs[id]++
	if n := users.runs[id]; n > 1 {
		id += "-run" + strconv.Itoa(n)
	}
	users.byTest[t] = id
	return id
}

var users = struct {
	sync.Mutex
	byTest map[*testing.T]string
	runs   map[string]int
}{byTest: map[*testing.T]string{}, runs: map[string]int{}}

// snapshot summarises every table and the bucket, so a test can assert
// that a refused request changed nothing.
func snapshot(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, q := range []string{
		`SELECT 'sessions', count(*), coalesce(max(updated_at)::text, '') FROM upload_sessions`,
		`SELECT 'files', count(*), coalesce(max(updated_at)::text, '') FROM upload_session_files`,
		`SELECT 'parts', count(*), coalesce(max(updated_at)::text, '') FROM upload_session_parts`,
		`SELECT 'mocs', count(*), coalesce(max(updated_at)::text, '') FROM moc_instructions`,
		`SELECT 'moc_files', count(*), coalesce(max(updated_at)::text, '') FROM moc_files`,
		`SELECT 'daily', count(*), coalesce(sum(count)::text, '') FROM user_daily_uploads`,
	} {
		var name, last string
		var n int
		if err := db.QueryRow(ctx, q).Scan(&name, &n, &last); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s=%d@%s ", name, n, last)
	}
	bucket := aws.String(st.Config.S3Bucket)
	objs, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range objs.Contents {
		keys = append(keys, aws.ToString(o.Key)+":"+aws.ToString(o.ETag))
	}
	ups, err := s3c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range ups.Uploads {
		keys = append(keys, "upload:"+aws.ToString(u.UploadId))
	}
	sort.Strings(keys)
	fmt.Fprintf(&b, "objects=%v", keys)
	return b.String()
}

// unchanged fails when fn changed any row or object.
func unchanged(t *testing.T, fn func()) {
	t.Helper()
	before := snapshot(t)
	fn()
	if after := snapshot(t); after != before {
		t.Fatalf("state changed:\nbefore %s\nafter  %s", before, after)
	}
}
