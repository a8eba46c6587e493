package functions_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/mocbuilders/moc-upload/local/devstack"
	"github.com/mocbuilders/moc-upload/local/stack"
	"github.com/mocbuilders/moc-upload/shared/auth/authtest"
	"github.com/mocbuilders/moc-upload/shared/telemetry"
	"github.com/mocbuilders/moc-upload/shared/telemetry/telemetrytest"
)

// TestColdStartTracing measures what tracing adds to a function's cold
// start: the real bootstrap (built as for AWS, for this machine), started
// under the AWS Lambda Runtime Interface Emulator, against real PostgreSQL
// and S3 holding the sample rows, once with OTEL_EXPORTER_OTLP_ENDPOINT
// pointing at a local OTLP/HTTP receiver (telemetry.Setup builds the
// exporter, the resource and the batch processor; the first invocation's
// spans are exported before it answers) and once without it (Setup
// installs nothing). Same binary, same environment otherwise.
//
// Skipped unless MOC_BENCH_COLDSTART=1: it is a measurement, not a check
// (about ten seconds once the bootstraps and the emulator are built). MOC_BENCH_COLDSTART_N starts (default 10) of
// each mode, interleaved, the first of each pair alternating;
// MOC_BENCH_COLDSTART_FUNCTIONS the functions (default GetSession,Finalize:
// their sample events, events/<Function>.json; before each start the
// sample rows are reseeded and, for Finalize, the seed image's part
// uploaded, so that every start does the same work: GetSession answers
// 200, Finalize 201).
//
// Each start is timed from the invocation the test sends (the emulator
// starts the function on its first invocation) to
//
//   - init: the function's first GET …/runtime/invocation/next, which is
//     where Lambda's Init Duration ends: configuration, telemetry.Setup,
//     app.New (the pgx pool, the AWS clients) and the runtime's start. The
//     emulator prints an Init Duration too, but starts the init
//     asynchronously and reports well under a millisecond: useless here.
//     The function is started through a shell script that points
//     AWS_LAMBDA_RUNTIME_API at a proxy of the emulator's Runtime API,
//     which notes the time of that first request (the script costs the
//     same in both modes);
//   - first answer: the invocation's answer (init, the first invocation,
//     and with tracing its flush);
//
// then a second, warm invocation of the same event is timed too. The
// figures are logged (medians, min, max; no assertion on them), and each
// start is printed as a benchmark line (BenchmarkColdStart/fn=…/otel=…,
// init-ns/op, first-ns/op, warm-ns/op) for benchstat; the test
// fails only when a start fails or, with tracing on, no span reached the
// receiver. One more start per function, with GODEBUG=inittrace=1, logs
// the Go package initialisation: the share of the packages linked for
// tracing (OpenTelemetry's) is paid with tracing on or off (same binary),
// and is not in the difference.
func TestColdStartTracing(t *testing.T) {
	n, functions := coldStartSettings(t, []string{"GetSession", "Finalize"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	rig := newColdStartRig(t, ctx)
	env := rig.env
	traces := &telemetrytest.Receiver{}
	receiver := httptest.NewServer(traces)
	t.Cleanup(receiver.Close)

	for _, function := range functions {
		t.Run(function, func(t *testing.T) {
			bootstrap := filepath.Join(rig.binDir, function, "bootstrap")
			if err := buildBootstrap(ctx, rig.root, function, bootstrap); err != nil {
				t.Fatal(err)
			}
			info, err := os.Stat(bootstrap)
			if err != nil {
				t.Fatal(err)
			}
			event, err := os.ReadFile(filepath.Join(eventsDir, function+".json"))
			if err != nil {
				t.Fatal(err)
			}
			modes := map[string][]string{
				"otel=off": env,
				"otel=on":  append(env[:len(env):len(env)], "OTEL_EXPORTER_OTLP_ENDPOINT="+receiver.URL),
			}
			samples := map[string][]coldStart{}
			status := 0 // every start must answer as the first did
			for i := range 2 * n {
				// off, on, on, off, off, on, …
				mode := []string{"otel=off", "otel=on"}[(i+i/2)%2]
				rig.reseed(t, ctx, function)
				exports := traces.Exports()
				cs := rig.startCold(t, ctx, bootstrap, function, modes[mode], event, true, nil)
				if status == 0 {
					status = cs.status
				} else if cs.status != status {
					t.Fatalf("%s start %d answered %d, the first start %d", mode, i, cs.status, status)
				}
				if mode == "otel=on" && traces.Exports() == exports {
					t.Fatalf("tracing on, yet no export reached the receiver")
				}
				samples[mode] = append(samples[mode], cs)
			}
			// The package initialisation, once (the same in both modes).
			var inittrace bytes.Buffer
			rig.startCold(t, ctx, bootstrap, function,
				append(env[:len(env):len(env)], "MOC_COLDSTART_GODEBUG=inittrace=1"), event, true, &inittrace)
			all, otelInit, otelPkgs := packageInit(inittrace.String())

			t.Logf("%s: bootstrap %.1f MiB (%s/%s, -s -w); answers %d; %d starts of each mode, medians (min–max):",
				function, float64(info.Size())/(1<<20), runtime.GOOS, runtime.GOARCH, status, n)
			off, on := samples["otel=off"], samples["otel=on"]
			for _, m := range []measure{initToNext, firstAnswer, warmInvocation} {
				t.Logf("  %-34s off %s   on %s   on − off %+.2f ms",
					m.name, spread(off, m.of), spread(on, m.of), ms(median(on, m.of)-median(off, m.of)))
			}
			t.Logf("  Go package init (GODEBUG=inittrace=1, one start): %.2f ms in all, %.2f ms in %d packages linked for tracing",
				all, otelInit, otelPkgs)
			// Each start as a benchmark result line, for benchstat
			// (docs/benchmarks.md).
			for _, mode := range []string{"otel=off", "otel=on"} {
				for _, c := range samples[mode] {
					fmt.Printf("BenchmarkColdStart/fn=%s/%s 1 %d init-ns/op %d first-ns/op %d warm-ns/op\n",
						function, mode, c.init.Nanoseconds(), c.first.Nanoseconds(), c.warm.Nanoseconds())
				}
			}
		})
	}
}

// coldStartSettings skips t unless MOC_BENCH_COLDSTART=1 (a measurement,
// not a check), and reads how many starts to make of each mode or build
// (MOC_BENCH_COLDSTART_N, default 10) and of which functions
// (MOC_BENCH_COLDSTART_FUNCTIONS, comma-separated, default defaults).
func coldStartSettings(t *testing.T, defaults []string) (n int, functions []string) {
	t.Helper()
	if os.Getenv("MOC_BENCH_COLDSTART") != "1" {
		t.Skip("a measurement: MOC_BENCH_COLDSTART=1 runs it (docs/benchmarks.md)")
	}
	n = 10
	if v := os.Getenv("MOC_BENCH_COLDSTART_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("MOC_BENCH_COLDSTART_N=%q: want a whole number ≥ 1", v)
		}
	}
	functions = defaults
	if v := os.Getenv("MOC_BENCH_COLDSTART_FUNCTIONS"); v != "" {
		functions = strings.Split(v, ",")
	}
	return n, functions
}

// coldStartRig is what the cold starts are made with: the emulator, the
// script it starts as the function (writeWrapper), a folder for the
// bootstraps, and the seeded stack with the functions' environment.
type coldStartRig struct {
	root, rieBin, wrapper, binDir string
	st                            *devstack.Stack
	env                           []string
	samplePNG                     []byte // the seed image's bytes
}

func newColdStartRig(t *testing.T, ctx context.Context) *coldStartRig {
	t.Helper()
	rig := &coldStartRig{binDir: t.TempDir()}
	var err error
	if rig.root, err = stack.RepoRoot(); err != nil {
		t.Fatal(err)
	}
	if rig.rieBin, err = stack.ToolBinary(ctx, rieTool); err != nil {
		t.Fatalf("the Lambda Runtime Interface Emulator: %v", err)
	}
	rig.wrapper = writeWrapper(t, rig.binDir)
	// The in-process stack's own logs (the seed part's progress event
	// dropped, …) are not what these tests are about.
	prevLog := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { slog.SetDefault(prevLog) })
	rig.st, rig.env = startSeededStack(t, ctx)
	rig.samplePNG = samplePartBytes(t)
	return rig
}

// reseed puts the sample rows back before a start and, for Finalize, does
// what the replay's steps before it do: uploads the seed image's only
// part, so that it finalizes. Every start then does the same work.
func (rig *coldStartRig) reseed(t *testing.T, ctx context.Context, function string) {
	t.Helper()
	if err := rig.st.Seed(ctx); err != nil {
		t.Fatalf("seed again: %v", err)
	}
	if function == "Finalize" {
		if _, err := rig.st.App.Service.UploadPart(ctx, devstack.SeedUserID, devstack.SeedSessionID,
			devstack.SeedImageFileID, 1, bytes.NewReader(rig.samplePNG), int64(len(rig.samplePNG)), ""); err != nil {
			t.Fatalf("upload the seed image's part: %v", err)
		}
	}
}

// samplePartBytes is the seed image's bytes: events/UploadPart.json's body.
func samplePartBytes(t *testing.T) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(eventsDir, "UploadPart.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ev struct {
		Body            string `json:"body"`
		IsBase64Encoded bool   `json:"isBase64Encoded"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil || !ev.IsBase64Encoded {
		t.Fatalf("events/UploadPart.json: want a base64 body (%v)", err)
	}
	b, err := base64.StdEncoding.DecodeString(ev.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkTelemetrySetup is the part of a cold start that the OTLP
// endpoint adds, in process: telemetry.SetupFrom with an endpoint (the
// exporter, the resource, the TracerProvider and its batch processor's
// goroutine), then Shutdown (nothing to export). endpoint=unset is the
// same call without it (the propagator only). The global provider is put
// back afterwards.
func BenchmarkTelemetrySetup(b *testing.B) {
	ctx := context.Background()
	prev := otel.GetTracerProvider()
	b.Cleanup(func() { otel.SetTracerProvider(prev) })
	for _, bc := range []struct {
		name string
		env  map[string]string
	}{
		{"endpoint=unset", map[string]string{}},
		{"endpoint=set", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
			"AWS_LAMBDA_FUNCTION_NAME": "Finalize", "AWS_REGION": "us-east-1"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				tel, err := telemetry.SetupFrom(ctx, "Finalize", func(k string) string { return bc.env[k] })
				if err != nil {
					b.Fatal(err)
				}
				if err := tel.Shutdown(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// writeWrapper writes the script the emulator starts as the function: it
// points the function at the proxy of the Runtime API and gives it
// MOC_COLDSTART_GODEBUG as GODEBUG (the emulator's own Go runtime must not
// print its package initialisation too), then becomes the bootstrap.
func writeWrapper(t *testing.T, dir string) string {
	t.Helper()
	wrapper := filepath.Join(dir, "bootstrap-via-proxy")
	script := "#!/bin/sh\nAWS_LAMBDA_RUNTIME_API=\"$MOC_COLDSTART_RUNTIME_API\" GODEBUG=\"$MOC_COLDSTART_GODEBUG\" exec \"$MOC_COLDSTART_BOOTSTRAP\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return wrapper
}

// coldStart is one start's timings.
type coldStart struct {
	init, first, warm time.Duration
	// rieInit is the emulator's own measure of the init ("INIT
	// REPORT(durationMs: …)"): from its start of the runtime process to
	// the first GET …/next, without the invocation's way in.
	rieInit time.Duration
	status  int    // the API Gateway response's statusCode, or 0
	answer  []byte // the first invocation's answer
	// phases is the function's "cold start" log line (app.serveLambda):
	// milliseconds of each step of main, nil without one.
	phases map[string]float64
}

// startCold runs the emulator with the function (through the wrapper, the
// Runtime API proxied), invokes event twice (cold, then warm) and stops
// it. apiResponse: the answer must be an API Gateway response (else any
// answer will do: an authorizer's, an async function's). out, when not
// nil, gets the emulator's and the function's output.
func (rig *coldStartRig) startCold(t *testing.T, ctx context.Context, bootstrap, function string, env []string, event []byte, apiResponse bool, out io.Writer) (cs coldStart) {
	t.Helper()
	addr, apiAddr := rieAddrs(t)
	proxy := newRuntimeProxy(t, apiAddr)
	defer proxy.Close()

	env = append(env[:len(env):len(env)],
		"MOC_COLDSTART_RUNTIME_API="+proxy.Listener.Addr().String(),
		"MOC_COLDSTART_BOOTSTRAP="+bootstrap,
	)
	fn := launchRIE(t, ctx, rig.rieBin, rig.wrapper, filepath.Dir(bootstrap), function, addr, apiAddr, env)
	output := fn.out
	defer func() {
		fn.stop()
		all := output.String()
		if out != nil {
			_, _ = io.WriteString(out, all)
		}
		if m := rieInitReport.FindStringSubmatch(all); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			cs.rieInit = time.Duration(v * float64(time.Millisecond))
		}
		cs.phases = coldStartPhases(all)
	}()
	// The function starts on the first invocation.
	invokeURL := fn.url
	invoke := func() (time.Time, time.Duration, int, []byte) {
		ctx, cancel := context.WithTimeout(ctx, invokeTimeout+10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, invokeURL, bytes.NewReader(event))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("invoke: %v\n%s", err, output.String())
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("invoke: %s %v: %s\n%s", resp.Status, err, raw, output.String())
		}
		var answer struct {
			StatusCode int `json:"statusCode"`
		}
		if err := json.Unmarshal(raw, &answer); apiResponse && (err != nil || answer.StatusCode == 0) {
			t.Fatalf("not an API Gateway response (%v): %s\n%s", err, raw, output.String())
		}
		return start, took, answer.StatusCode, raw
	}
	start, first, status, answer := invoke()
	next := proxy.firstNext()
	if next.IsZero() {
		t.Fatalf("the function answered without a GET …/invocation/next through the proxy:\n%s", output.String())
	}
	_, warm, _, _ := invoke()
	cs.init, cs.first, cs.warm, cs.status, cs.answer = next.Sub(start), first, warm, status, answer
	return cs
}

// rieInitReport is the emulator's line about the init.
var rieInitReport = regexp.MustCompile(`INIT REPORT\(durationMs: ([0-9.]+)\)`)

// coldStartPhases reads the function's "cold start" log line (JSON, from
// app.serveLambda): {"msg":"cold start","coldStart":{"<step>Ms":…}}.
func coldStartPhases(output string) map[string]float64 {
	for _, line := range strings.Split(output, "\n") {
		if !strings.Contains(line, `"cold start"`) {
			continue
		}
		var rec struct {
			Msg       string             `json:"msg"`
			ColdStart map[string]float64 `json:"coldStart"`
		}
		if json.Unmarshal([]byte(strings.TrimSpace(line)), &rec) == nil && rec.Msg == "cold start" {
			return rec.ColdStart
		}
	}
	return nil
}

// runtimeProxy forwards the function's Runtime API requests to the
// emulator's and notes when the first GET …/invocation/next arrived.
type runtimeProxy struct {
	*httptest.Server
	next atomic.Pointer[time.Time]
}

func newRuntimeProxy(t *testing.T, apiAddr string) *runtimeProxy {
	t.Helper()
	p := &runtimeProxy{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: apiAddr})
	// The function's last GET …/next is cut when the emulator stops.
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) }
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/runtime/invocation/next") {
			now := time.Now()
			p.next.CompareAndSwap(nil, &now)
		}
		rp.ServeHTTP(w, r)
	}))
	return p
}

func (p *runtimeProxy) firstNext() time.Time {
	if at := p.next.Load(); at != nil {
		return *at
	}
	return time.Time{}
}

// initLine is a line of GODEBUG=inittrace=1: "init <package> @<t> ms, <clock> ms clock, …".
var initLine = regexp.MustCompile(`(?m)^init (\S+) @[0-9.]+ ms, ([0-9.]+) ms clock`)

// otelDep matches the packages the bootstrap links for tracing only:
// OpenTelemetry's and what its OTLP exporter pulls in (protobuf, parts of
// gRPC, grpc-gateway, genproto).
var otelDep = regexp.MustCompile(`^(go\.opentelemetry\.io/|github\.com/exaring/otelpgx|google\.golang\.org/(protobuf|grpc|genproto)|github\.com/grpc-ecosystem/)`)

// packageInit sums the clock time of the package initialisations in out,
// in all and of the tracing packages (otelDep), in milliseconds.
func packageInit(out string) (all, otel float64, otelPkgs int) {
	for _, m := range initLine.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		all += v
		if otelDep.MatchString(m[1]) {
			otel += v
			otelPkgs++
		}
	}
	return all, otel, otelPkgs
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func durations(cs []coldStart, of func(coldStart) time.Duration) []time.Duration {
	out := make([]time.Duration, len(cs))
	for i, c := range cs {
		out[i] = of(c)
	}
	slices.Sort(out)
	return out
}

func median(cs []coldStart, of func(coldStart) time.Duration) time.Duration {
	d := durations(cs, of)
	if len(d)%2 == 1 {
		return d[len(d)/2]
	}
	return (d[len(d)/2-1] + d[len(d)/2]) / 2
}

// spread is the median of one measure over starts, with its min and max.
func spread(cs []coldStart, of func(coldStart) time.Duration) string {
	d := durations(cs, of)
	return fmt.Sprintf("%7.2f ms (%.2f–%.2f)", ms(median(cs, of)), ms(d[0]), ms(d[len(d)-1]))
}

// measure is one of a start's timings, as the tests log it.
type measure struct {
	name string
	of   func(coldStart) time.Duration
}

var (
	initToNext     = measure{"init (to the first /next)", func(c coldStart) time.Duration { return c.init }}
	emulatorInit   = measure{"init (emulator's INIT REPORT)", func(c coldStart) time.Duration { return c.rieInit }}
	firstAnswer    = measure{"first answer (init + invocation)", func(c coldStart) time.Duration { return c.first }}
	warmInvocation = measure{"warm invocation", func(c coldStart) time.Duration { return c.warm }}
)

// TestColdStart measures the cold start of every function (every
// replay of TestBootstrapsUnderRIE, or MOC_BENCH_COLDSTART_FUNCTIONS) as
// TestColdStartTracing does, tracing off: the bootstrap built from this
// tree, and, when MOC_BENCH_COLDSTART_BASELINE names a directory holding
// a bootstrap per function (<dir>/<Function>, built the same way from
// another tree: the one before a change), that one too, the two
// interleaved (baseline, current, current, baseline, …), MOC_BENCH_COLDSTART_N
// starts of each (default 10). Each start is timed as in
// TestColdStartTracing (init: to the first GET …/next; first answer),
// and the emulator's own INIT REPORT is read too. Every start of a
// function must answer as its first did, whichever build: the same
// behaviour. One more start of the current build, with
// GODEBUG=inittrace=1 (the bootstrap's only), gives its Go package
// initialisation; its "cold start" log line, what main spends on each
// step. Skipped unless MOC_BENCH_COLDSTART=1 (docs/benchmarks.md "Cold
// start and binary size").
func TestColdStart(t *testing.T) {
	kinds := map[string]replay{}
	var all []string
	for _, r := range replays {
		kinds[r.function] = r
		all = append(all, r.function)
	}
	n, functions := coldStartSettings(t, all)
	baseline := os.Getenv("MOC_BENCH_COLDSTART_BASELINE")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	rig := newColdStartRig(t, ctx)
	iss := authtest.NewIssuer(t)
	authEnv := []string{"PATH=" + os.Getenv("PATH"), "JWT_ISSUER=" + iss.URL, "JWT_AUDIENCE=" + sampleAudience,
		"AUTH_COOKIE_NAME=" + sampleCookie}

	for _, function := range functions {
		t.Run(function, func(t *testing.T) {
			kind := kinds[function]
			if kind.customResource {
				t.Skip("Migrate runs once per deploy, not on a request's path; its cold start answers a CloudFormation response URL (TestBootstrapsUnderRIE replays it)")
			}
			builds := map[string]string{"current": filepath.Join(rig.binDir, function, "bootstrap")}
			if err := buildBootstrap(ctx, rig.root, function, builds["current"]); err != nil {
				t.Fatal(err)
			}
			variants := []string{"current"}
			if baseline != "" {
				b, err := filepath.Abs(filepath.Join(baseline, function))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(b); err != nil {
					t.Fatalf("MOC_BENCH_COLDSTART_BASELINE: %v", err)
				}
				builds["baseline"] = b
				variants = []string{"baseline", "current"}
			}
			event, err := os.ReadFile(filepath.Join(eventsDir, function+".json"))
			if err != nil {
				t.Fatal(err)
			}
			fnEnv := rig.env
			switch {
			case kind.authorizer:
				fnEnv = authEnv
				event = withToken(t, event, iss.Token(t, devstack.SeedUserID, sampleAudience, nil))
			case kind.cookieAuthorizer:
				fnEnv = authEnv
				event = withCookie(t, event, iss.Token(t, devstack.SeedUserID, sampleAudience, nil), "")
			}
			apiResponse := !kind.authorizer && !kind.cookieAuthorizer && !kind.async
			samples := map[string][]coldStart{}
			var answer string // every start's, whichever build: the first's
			answered := false
			start := func(variant string, extraEnv ...string) coldStart {
				rig.reseed(t, ctx, function)
				cs := rig.startCold(t, ctx, builds[variant], function,
					append(fnEnv[:len(fnEnv):len(fnEnv)], extraEnv...), event, apiResponse, nil)
				got := string(cs.answer)
				if apiResponse {
					got = strconv.Itoa(cs.status)
				}
				if !answered {
					answer, answered = got, true
				} else if got != answer {
					t.Fatalf("%s answered %s, the first start %s", variant, got, answer)
				}
				return cs
			}
			for i := range len(variants) * n {
				// With two builds: baseline, current, current, baseline, …
				v := variants[(i+i/2)%len(variants)]
				samples[v] = append(samples[v], start(v))
			}
			var inittrace bytes.Buffer
			traced := func() coldStart {
				if err := rig.st.Seed(ctx); err != nil {
					t.Fatal(err)
				}
				return rig.startCold(t, ctx, builds["current"], function,
					append(fnEnv[:len(fnEnv):len(fnEnv)], "MOC_COLDSTART_GODEBUG=inittrace=1"), event, apiResponse, &inittrace)
			}()
			all, _, _ := packageInit(inittrace.String())
			top := topInits(inittrace.String(), 4)

			info, err := os.Stat(builds["current"])
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: bootstrap %.2f MB (%s/%s); answers %s; %d starts of each build, medians (min–max):",
				function, float64(info.Size())/1e6, runtime.GOOS, runtime.GOARCH, truncateAnswer(answer), n)
			for _, m := range []measure{initToNext, emulatorInit, firstAnswer} {
				line := fmt.Sprintf("  %-34s", m.name)
				for _, v := range variants {
					line += fmt.Sprintf("  %s %s", v, spread(samples[v], m.of))
				}
				t.Logf("%s", line)
			}
			t.Logf("  current, one start with GODEBUG=inittrace=1: Go package init %.2f ms (most: %s); main's steps (ms): %v",
				all, top, traced.phases)
			for _, v := range variants {
				for _, c := range samples[v] {
					fmt.Printf("BenchmarkColdStart/fn=%s/build=%s 1 %d init-ns/op %d rieinit-ns/op %d first-ns/op\n",
						function, v, c.init.Nanoseconds(), c.rieInit.Nanoseconds(), c.first.Nanoseconds())
				}
			}
		})
	}
}

func truncateAnswer(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// topInits names the k package initialisations that took longest.
func topInits(out string, k int) string {
	type pkg struct {
		name string
		ms   float64
	}
	var all []pkg
	for _, m := range initLine.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		all = append(all, pkg{m[1], v})
	}
	slices.SortFunc(all, func(a, b pkg) int { return cmp.Compare(b.ms, a.ms) })
	var parts []string
	for _, p := range all[:min(k, len(all))] {
		parts = append(parts, fmt.Sprintf("%s %.2f", p.name, p.ms))
	}
	return strings.Join(parts, ", ")
}
