package functions_test

// TestBootstrapsUnderRIE runs the real Lambda binaries: each function is
// built as AWS builds it (a static bootstrap, the Makefile's GOFLAGS_LAMBDA, here for the
// host's architecture), started under the AWS Lambda Runtime Interface
// Emulator, and sent its sample event from events/ against real PostgreSQL
// and S3 holding the sample rows (devstack's Seed). Nothing is mocked: this
// covers the cold start (configuration from the environment, connections),
// the aws-lambda-go runtime loop and the API Gateway payload 2.0 adapter
// that the in-process tests bypass. The two authorizers (WsAuthorizer's
// token query parameter, HttpAuthorizer's cookie) verify tokens against a
// local identity provider (authtest: a JWKS server and its signing key),
// which the test starts and points JWT_ISSUER at. The follow-up functions
// (followup.Functions) get their events as Lambda's Invoke API hands them
// over: a followup.Job, EventBridge's scheduled event. Migrate gets
// CloudFormation's Create request for SchemaMigration, its ResponseURL a
// local HTTP server standing in for the pre-signed S3 URL.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-lambda-go/events"
	"github.com/jackc/pgx/v5"

	"github.com/mocbuilders/moc-upload/local/devstack"
	"github.com/mocbuilders/moc-upload/local/devstack/devstacktest"
	"github.com/mocbuilders/moc-upload/local/logbuf"
	"github.com/mocbuilders/moc-upload/local/stack"
	"github.com/mocbuilders/moc-upload/local/stacktest"
	"github.com/mocbuilders/moc-upload/shared/auth/authtest"
	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/httpapi"
	"github.com/mocbuilders/moc-upload/shared/wsapi"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

// riePackage is what the tools module builds into .bin/aws-lambda-rie.
const riePackage = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"

// invokeTimeout bounds one invocation, cold start included; the emulator
// is told the same (AWS_LAMBDA_FUNCTION_TIMEOUT), so a hung function ends
// with its "Task timed out" rather than the test's deadline.
const invokeTimeout = 30 * time.Second

// replay is one sample event and what the function must answer. The order
// matters: the upload path builds on the seed rows and on the steps before
// it. The WebSocket client connects to the seed session first (its token
// verified by the authorizer) and pings; the seed image's one part is then
// presigned while it is not uploaded yet (PresignPart, PresignParts),
// uploaded by the batch route, uploaded again by UploadPart (re-uploading a
// part replaces it), then the file is completed and the session finalized
// (announced to the connection, or logged as not sent: no
// WEBSOCKET_ENDPOINT here); the client disconnects last. Finalize queues
// no follow-up work here (thumbnails and the webhook are off, as by
// default), so the Sweeper finds nothing to do; the Thumbnail and Webhook
// jobs name the seed's existing MOC but an outbox row that does not exist
// (its MOC deleted, say), which their functions end as a no-op.
type replay struct {
	function string
	status   int
	check    func(t *testing.T, body []byte) // nil: the status says it all
	// reseed resets the sample rows first (devstack's Seed), for an event
	// the steps before would refuse: RegisterFile adds a file to the sample
	// session, which Finalize has completed by then.
	reseed bool
	// webSocket marks a WebSocket route's function: API Gateway reads only
	// its status and body (no Content-Type needed).
	webSocket bool
	// authorizer marks the WebSocket authorizer: it gets only its own
	// environment (the local issuer) and answers a policy or an error, not
	// a proxy response (replayAuthorizer).
	authorizer bool
	// cookieAuthorizer marks the HTTP API's cookie authorizer: its own
	// environment too, and a simple response (isAuthorized) or an error
	// (replayCookieAuthorizer).
	cookieAuthorizer bool
	// customResource marks Migrate, CloudFormation's custom resource: it
	// answers at the event's ResponseURL, on a database of its own
	// (replayCustomResource).
	customResource bool
	// async marks a follow-up function: its answer is no proxy response
	// but its handler's result, which must equal answer: empty for the
	// jobs (they return only an error), the Sweeper's counts in JSON. An
	// error fails the replay. checkDB (when set) looks at the rows it may
	// have changed (replayAsync).
	async   bool
	answer  string
	checkDB func(t *testing.T, ctx context.Context, db *pgx.Conn)
}

// sampleAudience is the audience of the sample events' tokens
// (samconfig.toml's placeholder app client id).
const sampleAudience = "replace-with-app-client-id"

var replays = []replay{
	{function: "WsAuthorizer", authorizer: true},
	{function: "HttpAuthorizer", cookieAuthorizer: true},
	{function: "WsConnect", status: http.StatusOK, webSocket: true},
	{function: "WsDefault", status: http.StatusOK, webSocket: true, check: func(t *testing.T, body []byte) {
		var msg map[string]any
		if err := json.Unmarshal(body, &msg); err != nil || msg["type"] != "pong" {
			t.Errorf("body %s, want {\"type\":\"pong\"} (%v)", body, err)
		}
	}},
	{function: "GetSession", status: http.StatusOK, check: func(t *testing.T, body []byte) {
		if got := successData(t, body)["sessionId"]; got != devstack.SeedSessionID {
			t.Errorf("data.sessionId = %v, want the seed session %s", got, devstack.SeedSessionID)
		}
	}},
	{function: "PresignPart", status: http.StatusOK, check: func(t *testing.T, body []byte) {
		checkPresignedPart(t, successData(t, body))
	}},
	{function: "PresignParts", status: http.StatusOK, check: func(t *testing.T, body []byte) {
		// The event asks for part 1, the seed image's only part.
		parts, _ := successData(t, body)["parts"].([]any)
		if len(parts) != 1 {
			t.Fatalf("data.parts = %v, want part 1 only: %s", parts, body)
		}
		p, _ := parts[0].(map[string]any)
		checkPresignedPart(t, p)
	}},
	{function: "UploadPartsBatch", status: http.StatusOK, check: func(t *testing.T, body []byte) {
		// One form part, part1: the sample PNG.
		parts, _ := successData(t, body)["parts"].([]any)
		if len(parts) != 1 {
			t.Fatalf("data.parts = %v, want part 1 only: %s", parts, body)
		}
		p, _ := parts[0].(map[string]any)
		if p["partNumber"] != 1.0 || p["size"] != 67.0 || p["error"] != nil {
			t.Errorf("data.parts[0] = %v, want part 1 of 67 bytes uploaded", p)
		}
		if e, _ := p["etag"].(string); e == "" {
			t.Errorf("data.parts[0].etag is empty: %s", body)
		}
	}},
	{function: "UploadPart", status: http.StatusOK, check: func(t *testing.T, body []byte) {
		// The sample PNG is 67 bytes, sent base64-encoded in the event.
		d := successData(t, body)
		if d["partNumber"] != 1.0 || d["size"] != 67.0 {
			t.Errorf("data = %v, want part 1 of 67 bytes", d)
		}
		if e, _ := d["etag"].(string); e == "" {
			t.Errorf("data.etag is empty: %s", body)
		}
	}},
	{function: "CompleteFile", status: http.StatusOK, check: func(t *testing.T, body []byte) {
		d := successData(t, body)
		if d["fileId"] != devstack.SeedImageFileID {
			t.Errorf("data.fileId = %v, want the seed image %s", d["fileId"], devstack.SeedImageFileID)
		}
		if u, _ := d["fileUrl"].(string); u == "" {
			t.Errorf("data.fileUrl is empty: %s", body)
		}
	}},
	{function: "Finalize", status: http.StatusCreated, check: func(t *testing.T, body []byte) {
		if s, _ := successData(t, body)["slug"].(string); s == "" {
			t.Errorf("data.slug is empty: %s", body)
		}
	}},
	{function: "GetMoc", status: http.StatusOK, check: func(t *testing.T, body []byte) {
		// The seed story's MOC (devstack.SeedMocID), with its image and PDF.
		if d := successData(t, body); d["id"] != devstack.SeedMocID {
			t.Errorf("data.id = %v, want the seed MOC %s", d["id"], devstack.SeedMocID)
		}
	}},
	{function: "CreateSession", status: http.StatusCreated, check: func(t *testing.T, body []byte) {
		if s, _ := successData(t, body)["sessionId"].(string); s == "" {
			t.Errorf("data.sessionId is empty: %s", body)
		}
	}},
	{function: "RegisterFile", status: http.StatusCreated, check: func(t *testing.T, body []byte) {
		if s, _ := successData(t, body)["fileId"].(string); s == "" {
			t.Errorf("data.fileId is empty: %s", body)
		}
	}, reseed: true},
	{function: "AbortSession", status: http.StatusNoContent}, // the seed's session of its own
	{function: "WsDisconnect", status: http.StatusOK, webSocket: true},
	// The follow-up functions, on the rows the steps above left: no
	// outbox row at all.
	{function: followup.SweeperFunction, async: true, checkDB: outboxUntouched,
		// Its counts (followup.SweepResult): nothing to do.
		answer: `{"redispatched":0,"dispatchErrors":0,"givenUp":0}`},
	{function: followup.ThumbnailFunction, async: true, checkDB: func(t *testing.T, ctx context.Context, db *pgx.Conn) {
		outboxUntouched(t, ctx, db)
		// The job's MOC keeps the seed's thumbnail: none made, none failed.
		var status string
		var url *string
		if err := db.QueryRow(ctx, `SELECT thumbnail_status, thumbnail_url FROM moc_instructions WHERE id = $1`, seedMocID).Scan(&status, &url); err != nil {
			t.Fatalf("the seed MOC %s: %v", seedMocID, err)
		}
		if status != "none" || url != nil {
			t.Errorf("the seed MOC's thumbnail: status %q, url %v; want none and NULL (a job without its outbox row does nothing)", status, url)
		}
	}},
	{function: followup.WebhookFunction, async: true, checkDB: outboxUntouched},
	// On an empty database of its own: the seed's is migrated already.
	{function: "Migrate", customResource: true},
}

// seedMocID is the seed's existing MOC ("Existing MOC Title"), which the
// sample jobs (events/Thumbnail.json, events/Webhook.json) name.
const seedMocID = "ffffffff-ffff-4fff-8fff-ffffffffffff"

// outboxUntouched checks that the outbox is still empty: Finalize queued
// nothing (both features off), and a job whose row does not exist does not
// make one.
func outboxUntouched(t *testing.T, ctx context.Context, db *pgx.Conn) {
	t.Helper()
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		t.Fatalf("count the outbox rows: %v", err)
	}
	if n != 0 {
		t.Errorf("%d outbox rows, want none", n)
	}
}

func TestBootstrapsUnderRIE(t *testing.T) {
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// Every function: the routes' and the others', each a folder with its
	// main.go (so a new one without a replay fails here).
	functions := []string{"WsAuthorizer", "HttpAuthorizer", "Migrate"}
	for _, rt := range httpapi.Routes {
		functions = append(functions, rt.Function)
	}
	for _, rt := range wsapi.Routes {
		functions = append(functions, rt.Function)
	}
	functions = append(functions, followup.Functions...)
	mains, err := filepath.Glob(filepath.Join("*", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mains {
		if f := filepath.Dir(m); !slices.Contains(functions, f) {
			t.Errorf("functions/%s is a function no list here names: add it (and its replay)", f)
		}
	}
	if len(replays) != len(functions) {
		t.Errorf("%d replays for %d functions: every function's sample event must be replayed", len(replays), len(functions))
	}
	for _, f := range functions {
		found := false
		for _, r := range replays {
			found = found || r.function == f
		}
		if !found {
			t.Errorf("function %s has no replay in TestBootstrapsUnderRIE", f)
		}
	}

	// Build the emulator and the bootstraps while the services start. The
	// builds share Go's build cache; two at a time keep the machine usable.
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	binDir := t.TempDir()
	type built struct {
		path string
		err  error
	}
	var wg sync.WaitGroup
	// Should the stack fail to start, stop the builds before t.TempDir goes.
	defer func() { cancel(); wg.Wait() }()
	bootstraps := make(map[string]*built, len(replays))
	sem := make(chan struct{}, 2)
	for _, r := range replays {
		b := &built{path: filepath.Join(binDir, r.function, "bootstrap")}
		bootstraps[r.function] = b
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			b.err = buildBootstrap(ctx, root, r.function, b.path)
		})
	}
	rie := &built{}
	wg.Go(func() { rie.path, rie.err = stack.ToolBinary(ctx, rieTool) })

	st, env := startSeededStack(t, ctx)
	t.Logf("PostgreSQL and S3 seeded in %v", time.Since(begin).Round(time.Millisecond))

	wg.Wait()
	if rie.err != nil {
		t.Fatalf("the Lambda Runtime Interface Emulator: %v", rie.err)
	}
	for _, r := range replays {
		if err := bootstraps[r.function].err; err != nil {
			t.Fatalf("%s: %v", r.function, err)
		}
	}
	t.Logf("emulator and %d bootstraps ready in %v", len(replays), time.Since(begin).Round(time.Millisecond))

	for _, r := range replays {
		t.Run(r.function, func(t *testing.T) {
			event, err := os.ReadFile(filepath.Join(eventsDir, r.function+".json"))
			if err != nil {
				t.Fatal(err)
			}
			if r.reseed {
				if err := st.Seed(ctx); err != nil {
					t.Fatalf("seed again: %v", err)
				}
			}
			if r.authorizer || r.cookieAuthorizer {
				// The identity provider the authorizer trusts (one each, so
				// each one's JWKS fetches are its own), as in AWS only its
				// settings: JWT_ISSUER (whose /.well-known/jwks.json the JWKS
				// is), JWT_AUDIENCE and, for the cookie, the template's
				// default AuthCookieName.
				iss := authtest.NewIssuer(t)
				authEnv := []string{"PATH=" + os.Getenv("PATH"), "JWT_ISSUER=" + iss.URL, "JWT_AUDIENCE=" + sampleAudience,
					"AUTH_COOKIE_NAME=" + sampleCookie}
				fn := startRIE(t, ctx, rie.path, bootstraps[r.function].path, r.function, authEnv)
				if r.authorizer {
					replayAuthorizer(t, ctx, fn, event, iss)
				} else {
					replayCookieAuthorizer(t, ctx, fn, event, iss)
				}
				if t.Failed() {
					t.Logf("%s", fn.output())
				}
				return
			}
			if r.customResource {
				// As deployed, only the database's address (there through
				// DATABASE_SECRET_ARN): a fresh, empty database.
				dbURL := stacktest.Postgres(t)
				migrateEnv := []string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + dbURL}
				fn := startRIE(t, ctx, rie.path, bootstraps[r.function].path, r.function, migrateEnv)
				replayCustomResource(t, ctx, fn, event, dbURL)
				if t.Failed() {
					t.Logf("%s", fn.output())
				}
				return
			}
			if r.async {
				fn := startRIE(t, ctx, rie.path, bootstraps[r.function].path, r.function, env)
				replayAsync(t, ctx, fn, event, r.answer, st.Config.DatabaseURL, r.checkDB)
				if t.Failed() {
					t.Logf("%s", fn.output())
				}
				return
			}
			fn := startRIE(t, ctx, rie.path, bootstraps[r.function].path, r.function, env)
			resp := fn.invoke(t, ctx, event)
			if resp.StatusCode != r.status {
				t.Fatalf("status %d, want %d; body: %s\n%s", resp.StatusCode, r.status, resp.Body, fn.output())
			}
			if ct := header(resp.Headers, "Content-Type"); !r.webSocket && resp.Body != "" && !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			body := []byte(resp.Body)
			if resp.IsBase64Encoded {
				if body, err = base64.StdEncoding.DecodeString(resp.Body); err != nil {
					t.Fatalf("isBase64Encoded, but the body is not base64: %v", err)
				}
			}
			if r.check != nil {
				r.check(t, body)
			}
			if t.Failed() {
				t.Logf("%s", fn.output())
			}
		})
	}
}

// replayAsync sends a follow-up function its sample event, as Lambda hands
// over an async invocation's payload, and checks that it ended without an
// error (which comes back as {"errorType": …, "errorMessage": …} and, in
// AWS, makes Lambda retry), with the answer want (JSON-equal; "": no
// answer), and that it logged nothing at ERROR (a job its function
// refuses, such as one of another kind, is dropped with an ERROR log and
// no error). checkDB then reads the database.
func replayAsync(t *testing.T, ctx context.Context, fn *rieFunction, event []byte, want, dbURL string, checkDB func(*testing.T, context.Context, *pgx.Conn)) {
	t.Helper()
	raw := fn.invokeRaw(t, ctx, event)
	var fail struct {
		ErrorMessage *string `json:"errorMessage"`
	}
	if json.Unmarshal(raw, &fail) == nil && fail.ErrorMessage != nil {
		t.Fatalf("the invocation failed: %s", raw)
	}
	if want == "" {
		if len(bytes.TrimSpace(raw)) > 0 {
			t.Errorf("the function answered %s, want no answer", raw)
		}
	} else {
		var g, w any
		if err := json.Unmarshal(raw, &g); err != nil {
			t.Errorf("the answer %q is not JSON: %v", raw, err)
		} else if err := json.Unmarshal([]byte(want), &w); err != nil || !reflect.DeepEqual(g, w) {
			t.Errorf("the function answered %s, want %s", bytes.TrimSpace(raw), want)
		}
	}
	for _, line := range strings.Split(fn.out.String(), "\n") {
		var rec struct {
			Level string `json:"level"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == "ERROR" {
			t.Errorf("logged at ERROR: %s", line)
		}
	}
	if checkDB == nil {
		return
	}
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	checkDB(t, ctx, db)
}

// startSeededStack gives the functions a fresh database and bucket, migrated
// and holding the sample rows the events refer to, and returns the
// functions' environment for them.
func startSeededStack(t *testing.T, ctx context.Context) (*devstack.Stack, []string) {
	t.Helper()
	st, vars := devstacktest.Seeded(t, ctx)
	// Only these, not the test's environment: a developer's UPLOAD_* or
	// S3_PUBLIC_BASE_URL must not change what the functions do here.
	env := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	// No function here should invoke another (no follow-up work is
	// queued); should one try, it meets a closed local port rather than
	// AWS Lambda.
	env = append(env, "LAMBDA_ENDPOINT=http://"+freeAddr(t))
	return st, env
}

// buildBootstrap builds functions/<function> as the Makefile does for AWS
// (CGO_ENABLED=0 and its GOFLAGS_LAMBDA), but for this machine's OS and
// architecture.
func buildBootstrap(ctx context.Context, root, function, out string) error {
	flags, err := lambdaBuildFlags(root)
	if err != nil {
		return err
	}
	if err := buildFor(ctx, root, function, out, runtime.GOOS, runtime.GOARCH, flags); err != nil {
		return fmt.Errorf("build the bootstrap: %w", err)
	}
	return nil
}

// rie is the emulator, built into .bin/ from the tools module when missing.
var rieTool = stack.Tool{Name: "aws-lambda-rie", Package: riePackage, Env: "AWS_LAMBDA_RIE", BuildTime: "about half a minute"}

// rieFunction is one function running under the emulator.
type rieFunction struct {
	url  string
	cmd  *exec.Cmd
	done chan struct{}  // closed when the emulator has exited
	out  *logbuf.Buffer // the emulator's and the function's output
}

// startRIE runs the emulator with bootstrap as the function's runtime and
// returns once the emulator accepts connections. The function itself
// starts on the first invocation (the emulator initialises lazily). The
// emulator is stopped when t ends, and dies with the test binary.
func startRIE(t *testing.T, ctx context.Context, rieBin, bootstrap, function string, env []string) *rieFunction {
	t.Helper()
	addr, apiAddr := rieAddrs(t)
	fn := launchRIE(t, ctx, rieBin, bootstrap, filepath.Dir(bootstrap), function, addr, apiAddr, env)
	t.Cleanup(fn.stop)
	return fn
}

// rieAddrs gives an emulator two distinct free loopback addresses: its
// own and its Runtime API's, which the function polls. The Runtime API
// defaults to 127.0.0.1:9001: each emulator gets its own so that none
// meets another one's function.
func rieAddrs(t *testing.T) (addr, apiAddr string) {
	t.Helper()
	addr, apiAddr = freeAddr(t), freeAddr(t)
	for apiAddr == addr {
		apiAddr = freeAddr(t)
	}
	return addr, apiAddr
}

// launchRIE starts the emulator on addr, its Runtime API on apiAddr, with
// program (a bootstrap, or a wrapper around one) as the function's runtime,
// run in dir, and returns once the emulator accepts connections. The
// caller stops it (stop); it also dies with the test binary. A start that
// fails stops it and fails t.
func launchRIE(t *testing.T, ctx context.Context, rieBin, program, dir, function, addr, apiAddr string, env []string) *rieFunction {
	t.Helper()
	cmd := exec.Command(rieBin,
		"--runtime-interface-emulator-address", addr,
		"--runtime-api-address", apiAddr,
		program)
	cmd.Dir = dir
	cmd.Env = append(env[:len(env):len(env)],
		"AWS_LAMBDA_FUNCTION_NAME="+function,
		"AWS_LAMBDA_FUNCTION_TIMEOUT="+strconv.Itoa(int(invokeTimeout/time.Second)),
	)
	fn := &rieFunction{
		url:  "http://" + addr + "/2015-03-31/functions/function/invocations",
		cmd:  cmd,
		done: make(chan struct{}),
		out:  &logbuf.Buffer{},
	}
	cmd.Stdout, cmd.Stderr = fn.out, fn.out
	cmd.WaitDelay = 2 * time.Second
	if err := stack.StartChild(cmd); err != nil {
		t.Fatalf("start aws-lambda-rie: %v", err)
	}
	go func() {
		_ = cmd.Wait()
		close(fn.done)
	}()

	ready, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var d net.Dialer
		if c, err := d.DialContext(ready, "tcp", addr); err == nil {
			c.Close()
			return fn
		}
		select {
		case <-fn.done:
			t.Fatalf("aws-lambda-rie exited during start-up (%v):\n%s", cmd.ProcessState, fn.output())
		case <-ready.Done():
			fn.stop()
			t.Fatalf("aws-lambda-rie did not listen on %s within 10s:\n%s", addr, fn.output())
		case <-tick.C:
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// invoke sends the event as the Lambda Invoke API would and decodes the
// function's answer, which must be an API Gateway proxy response (payload
// 2.0; a WebSocket function's has the same fields).
func (fn *rieFunction) invoke(t *testing.T, ctx context.Context, event []byte) events.APIGatewayV2HTTPResponse {
	t.Helper()
	raw := fn.invokeRaw(t, ctx, event)
	var out events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(raw, &out); err != nil || out.StatusCode == 0 {
		// A handler's error comes back as {"errorType": …, "errorMessage": …}.
		t.Fatalf("the function did not answer with an API Gateway response (%v): %s\n%s", err, raw, fn.output())
	}
	return out
}

// invokeRaw sends the event as the Lambda Invoke API would and returns the
// function's answer as it is: its result, or its error as
// {"errorType": …, "errorMessage": …}.
func (fn *rieFunction) invokeRaw(t *testing.T, ctx context.Context, event []byte) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, invokeTimeout+10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fn.url, bytes.NewReader(event))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("invoke: %v\n%s", err, fn.output())
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("invoke: read the answer: %v\n%s", err, fn.output())
	}
	t.Logf("invoked in %v (cold start included)", time.Since(start).Round(time.Millisecond))
	if resp.StatusCode != http.StatusOK {
		// A failed cold start (the function exited) is a 502 with an empty
		// body; the reason is in the function's output.
		t.Fatalf("the emulator answered %s: %s\n%s", resp.Status, raw, fn.output())
	}
	return raw
}

// replayAuthorizer sends the WebSocket authorizer its sample event three
// times, on one warm function: with a token the local issuer signed for the
// seed user (an Allow policy for the sample's method ARN, principalId and
// context userId the user; the JWKS fetched once, at cold start), without
// a token, and with the sample's own token, which no key of the issuer
// signed (both the error "Unauthorized", API Gateway's 401).
func replayAuthorizer(t *testing.T, ctx context.Context, fn *rieFunction, sample []byte, iss *authtest.Issuer) {
	t.Helper()
	var methodArn struct {
		MethodArn string `json:"methodArn"`
	}
	if err := json.Unmarshal(sample, &methodArn); err != nil || methodArn.MethodArn == "" {
		t.Fatalf("the sample has no methodArn (%v)", err)
	}

	raw := fn.invokeRaw(t, ctx, withToken(t, sample, iss.Token(t, devstack.SeedUserID, sampleAudience, nil)))
	var allow events.APIGatewayCustomAuthorizerResponse
	if err := json.Unmarshal(raw, &allow); err != nil {
		t.Fatalf("not an authorizer response (%v): %s", err, raw)
	}
	st := allow.PolicyDocument.Statement
	if allow.PrincipalID != devstack.SeedUserID || allow.Context["userId"] != devstack.SeedUserID ||
		len(st) != 1 || st[0].Effect != "Allow" || !slices.Equal(st[0].Action, []string{"execute-api:Invoke"}) ||
		!slices.Equal(st[0].Resource, []string{methodArn.MethodArn}) {
		t.Errorf("with a good token: %s; want Allow execute-api:Invoke on %s for %s, context userId", raw, methodArn.MethodArn, devstack.SeedUserID)
	}
	if n := iss.JWKSRequests(); n != 1 {
		t.Errorf("the JWKS was fetched %d times, want once (at cold start)", n)
	}

	for name, event := range map[string][]byte{
		"without a token":         withToken(t, sample, ""),
		"with the sample's token": sample,
	} {
		raw := fn.invokeRaw(t, ctx, event)
		var fail struct {
			ErrorMessage string `json:"errorMessage"`
		}
		if err := json.Unmarshal(raw, &fail); err != nil || fail.ErrorMessage != "Unauthorized" {
			t.Errorf("%s: %s; want the error \"Unauthorized\" (API Gateway's 401)", name, raw)
		}
	}
}

// withToken returns the authorizer event with its token query parameter
// replaced, or removed when token is empty.
func withToken(t *testing.T, event []byte, token string) []byte {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal(event, &ev); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"queryStringParameters", "multiValueQueryStringParameters"} {
		q, _ := ev[field].(map[string]any)
		if q == nil {
			q = map[string]any{}
			ev[field] = q
		}
		switch {
		case token == "":
			delete(q, "token")
		case field == "queryStringParameters":
			q["token"] = token
		default:
			q["token"] = []string{token}
		}
	}
	out, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sampleCookie is the cookie events/HttpAuthorizer.json carries its token
// in: the template's default AuthCookieName (auth.DefaultCookieName).
const sampleCookie = "access_token"

// replayCookieAuthorizer sends the HTTP API's cookie authorizer its sample
// event on one warm function: with the sample's cookie holding a token the
// local issuer signed for the seed user, and with no cookie but that token
// as the Authorization bearer (both isAuthorized with context userId the
// user; the JWKS fetched once, at cold start); then with the sample's own
// cookie (a token no key of the issuer signed), an expired token, and no
// token at all (each the error "Unauthorized", API Gateway's 401).
func replayCookieAuthorizer(t *testing.T, ctx context.Context, fn *rieFunction, sample []byte, iss *authtest.Issuer) {
	t.Helper()
	good := iss.Token(t, devstack.SeedUserID, sampleAudience, nil)
	for name, event := range map[string][]byte{
		"with a good cookie":               withCookie(t, sample, good, ""),
		"with a good bearer and no cookie": withCookie(t, sample, "", "Bearer "+good),
	} {
		raw := fn.invokeRaw(t, ctx, event)
		var allow events.APIGatewayV2CustomAuthorizerSimpleResponse
		if err := json.Unmarshal(raw, &allow); err != nil {
			t.Fatalf("%s: not a simple authorizer response (%v): %s", name, err, raw)
		}
		if !allow.IsAuthorized || allow.Context["userId"] != devstack.SeedUserID || len(allow.Context) != 1 {
			t.Errorf("%s: %s; want isAuthorized true, context {\"userId\": %q}", name, raw, devstack.SeedUserID)
		}
	}
	if n := iss.JWKSRequests(); n != 1 {
		t.Errorf("the JWKS was fetched %d times, want once (at cold start)", n)
	}

	expired := iss.Token(t, devstack.SeedUserID, sampleAudience, map[string]any{
		"iat": time.Now().Add(-2 * time.Hour), "exp": time.Now().Add(-time.Hour),
	})
	for name, event := range map[string][]byte{
		"with the sample's cookie": sample,
		"with an expired token":    withCookie(t, sample, expired, ""),
		"without a token":          withCookie(t, sample, "", ""),
	} {
		raw := fn.invokeRaw(t, ctx, event)
		var fail struct {
			ErrorMessage string `json:"errorMessage"`
		}
		if err := json.Unmarshal(raw, &fail); err != nil || fail.ErrorMessage != "Unauthorized" {
			t.Errorf("%s: %s; want the error \"Unauthorized\" (API Gateway's 401)", name, raw)
		}
	}
}

// withCookie returns the cookie authorizer's event with the token of its
// sampleCookie cookie replaced, or that cookie removed when token is empty
// (its other cookies kept), and with an authorization header when
// authorization is not empty. The sample must have the cookie: a rewrite
// that finds nothing to rewrite would test nothing.
func withCookie(t *testing.T, event []byte, token, authorization string) []byte {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal(event, &ev); err != nil {
		t.Fatal(err)
	}
	// Payload 2.0 hands the Cookie header over as the cookies list.
	cookies, _ := ev["cookies"].([]any)
	var kept []any
	found := false
	for _, c := range cookies {
		if s, _ := c.(string); strings.HasPrefix(s, sampleCookie+"=") {
			found = true
			if token != "" {
				kept = append(kept, sampleCookie+"="+token)
			}
			continue
		}
		kept = append(kept, c)
	}
	if !found {
		t.Fatalf("the sample has no %s cookie: %v", sampleCookie, cookies)
	}
	ev["cookies"] = kept
	if authorization != "" {
		headers, _ := ev["headers"].(map[string]any)
		if headers == nil {
			headers = map[string]any{}
			ev["headers"] = headers
		}
		headers["authorization"] = authorization
	}
	out, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// replayCustomResource sends Migrate its sample event, CloudFormation's
// Create request for SchemaMigration, with the ResponseURL replaced by a
// local server that records what is PUT there (in AWS, a pre-signed S3
// URL CloudFormation reads). The function must answer there, once, with
// SUCCESS for the request (its ids echoed, the schema's fixed physical id)
// and SchemaVersion the number of migrations, having migrated its empty
// database (dbURL: its tables are there); its own result is
// cfn.LambdaWrap's reason, "" when the answer was delivered.
func replayCustomResource(t *testing.T, ctx context.Context, fn *rieFunction, sample []byte, dbURL string) {
	t.Helper()
	type put struct {
		method, contentType string
		body                []byte
	}
	var mu sync.Mutex
	var puts []put
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		puts = append(puts, put{r.Method, r.Header.Get("Content-Type"), body})
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)

	var ev cfn.Event
	if err := json.Unmarshal(sample, &ev); err != nil {
		t.Fatalf("the sample is not a CloudFormation custom resource request: %v", err)
	}
	if ev.RequestType != cfn.RequestCreate || ev.ResourceType != "Custom::SchemaMigration" || ev.LogicalResourceID != "SchemaMigration" {
		t.Fatalf("the sample is %s of %s %s, want Create of Custom::SchemaMigration SchemaMigration", ev.RequestType, ev.ResourceType, ev.LogicalResourceID)
	}
	var raw map[string]any
	if err := json.Unmarshal(sample, &raw); err != nil {
		t.Fatal(err)
	}
	raw["ResponseURL"] = srv.URL + "/cloudformation-custom-resource-response?X-Amz-Signature=local"
	event, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}

	if answer := bytes.TrimSpace(fn.invokeRaw(t, ctx, event)); string(answer) != `""` {
		t.Errorf("the function answered %s, want \"\" (LambdaWrap's reason: the response was delivered)", answer)
	}
	mu.Lock()
	got := slices.Clone(puts)
	mu.Unlock()
	if len(got) != 1 || got[0].method != http.MethodPut {
		t.Fatalf("%d requests to the ResponseURL, want one PUT: %+v", len(got), got)
	}
	var resp cfn.Response
	if err := json.Unmarshal(got[0].body, &resp); err != nil {
		t.Fatalf("the response %s: %v", got[0].body, err)
	}
	if resp.Status != cfn.StatusSuccess || resp.PhysicalResourceID != "moc-upload-schema" ||
		resp.RequestID != ev.RequestID || resp.LogicalResourceID != ev.LogicalResourceID || resp.StackID != ev.StackID {
		t.Errorf("the response %s; want SUCCESS for request %s of %s in %s, physical id moc-upload-schema", got[0].body, ev.RequestID, ev.LogicalResourceID, ev.StackID)
	}
	migrations, err := filepath.Glob("../shared/postgres/migrations/*.sql")
	if err != nil || len(migrations) == 0 {
		t.Fatalf("the migrations: %v %v", migrations, err)
	}
	if v := resp.Data["SchemaVersion"]; v != float64(len(migrations)) {
		t.Errorf("data SchemaVersion %v, want %d (one per file in shared/postgres/migrations)", v, len(migrations))
	}
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	for _, table := range []string{"upload_sessions", "upload_session_files", "websocket_connections", "outbox"} {
		var ok bool
		if err := db.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&ok); err != nil || !ok {
			t.Errorf("no table %s after the migration (%v)", table, err)
		}
	}
}

// stop ends the emulator (SIGTERM, which also ends the function, then
// SIGKILL after 5 seconds).
func (fn *rieFunction) stop() {
	stack.StopChild(fn.cmd, fn.done, syscall.SIGTERM, 5*time.Second)
}

func (fn *rieFunction) output() string {
	return "aws-lambda-rie output:\n" + strings.TrimRight(fn.out.String(), "\n")
}

func header(h map[string]string, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// samplePNGMD5 is the Content-MD5 of the seed image's bytes (the sample
// PNG of events/UploadPart.json), which the presign events send.
const samplePNGMD5 = "VRVFxA6tbkThqtSGIRok2g=="

// checkPresignedPart checks a presigned PUT of the seed image's part 1,
// asked for with samplePNGMD5: an S3 UploadPart URL, the headers to send
// (the signature covers Content-MD5) and a future expiry.
func checkPresignedPart(t *testing.T, p map[string]any) {
	t.Helper()
	if p["partNumber"] != 1.0 {
		t.Errorf("partNumber = %v, want 1", p["partNumber"])
	}
	if p["method"] != http.MethodPut {
		t.Errorf("method = %v, want PUT", p["method"])
	}
	raw, _ := p["url"].(string)
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		t.Errorf("url = %q, want an absolute URL (%v)", raw, err)
	} else if q := u.Query(); q.Get("partNumber") != "1" || q.Get("uploadId") == "" {
		t.Errorf("url = %q, want an UploadPart of part 1 (partNumber and uploadId in the query)", raw)
	}
	headers, _ := p["headers"].(map[string]any)
	var md5 any
	for k, v := range headers {
		if strings.EqualFold(k, "Content-MD5") {
			md5 = v
		}
	}
	if md5 != samplePNGMD5 {
		t.Errorf("headers = %v, want Content-MD5 %s (asked for, so signed)", p["headers"], samplePNGMD5)
	}
	exp, _ := p["expiresAt"].(string)
	if at, err := time.Parse(time.RFC3339Nano, exp); err != nil {
		t.Errorf("expiresAt %q: %v", exp, err)
	} else if !at.After(time.Now()) {
		t.Errorf("expiresAt %s is not in the future", exp)
	}
}

// successData checks the contract's success envelope and returns its data.
func successData(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var env struct {
		Success   bool           `json:"success"`
		Data      map[string]any `json:"data"`
		Timestamp string         `json:"timestamp"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("not the success envelope (%v): %s", err, body)
	}
	if !env.Success || env.Data == nil {
		t.Fatalf("want success true and data: %s", body)
	}
	if _, err := time.Parse(time.RFC3339Nano, env.Timestamp); err != nil {
		t.Errorf("timestamp %q: %v", env.Timestamp, err)
	}
	return env.Data
}
