package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/mocbuilders/moc-upload/local/gateway"
	"github.com/mocbuilders/moc-upload/local/slowblob"
	"github.com/mocbuilders/moc-upload/shared/app"
	"github.com/mocbuilders/moc-upload/shared/app/invoker"
	"github.com/mocbuilders/moc-upload/shared/telemetry"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// BenchmarkFinalizeTracing is the cost of tracing on finalize, as a
// client sees it: POST /api/mocs/uploads/finalize through the local
// gateway (the Lambda handler behind aws-lambda-go-api-proxy) for a session
// of one 1 MiB PDF and ten 256 KiB images (BenchmarkFinalize's), each
// iteration a new user and session (made, not timed, through an App that
// records no span, so that the finalize's spans are all there is to
// export).
//
//   - tracing=off (baseline): an App built, and run, while the global
//     TracerProvider is OpenTelemetry's no-op, which is what a function
//     without OTEL_EXPORTER_OTLP_ENDPOINT runs. otelpgx and otelaws keep the
//     provider that was global when their client was made (app.New), so
//     swapping the global provider around a traced App would still record
//     its queries' and S3 calls' spans; an App made under the no-op records
//     none.
//   - tracing=on: an App built under the stack's provider (the global one
//     here), which exports over OTLP/HTTP (protobuf) to the package's
//     receiver (traces), and, inside the timer, st.Telemetry.Flush after
//     each finalize, as FlushAfter makes a Lambda wait for it before it
//     answers.
//
// Both Apps are the stack's configuration, database and bucket, behind the
// stack's gateway code, each on its own httptest server. s3rtt=0: local S3
// (well under a millisecond a call); s3rtt=20ms adds 20 ms to each S3 call
// finalize makes (slowblob.Blob, as BenchmarkFinalize), about what a Lambda
// sees from S3.
//
// After each finalize, not timed: the Webhook function it queued is waited
// for (the local invoke API) and the provider flushed, so that the timed
// flush carries the finalize's spans only. Metrics: flush-ms/op (the timed
// flush alone, tracing=on), spans/op (spans the receiver got from the
// timed finalize and flush; tracing=off must export none) and cpu-ms/op
// (this process's CPU time, all threads, in the timed part: the handler,
// the gateway, the export and the receiver's decoding, not PostgreSQL's
// nor the S3 server's; steadier than wall time on a shared machine). The
// spans of the first traced finalize are logged, counted by name.
//
// -bench.rounds N runs N rounds of every variant
// (…/round=N/s3rtt=…/tracing=…), interleaved, which of off and on goes
// first swapped every round; `benchstat -col /tracing -row /s3rtt -ignore
// /round` pools them (docs/benchmarks.md).
func BenchmarkFinalizeTracing(b *testing.B) {
	if !st.Telemetry.Enabled() {
		b.Skip("the stack's tracing is off (no OTEL_EXPORTER_OTLP_ENDPOINT)")
	}
	setup := benchApp(b, false, 0)
	type variant struct {
		rtt     time.Duration
		off, on *tracingApp
	}
	var variants []variant
	for _, rtt := range []time.Duration{0, 20 * time.Millisecond} {
		variants = append(variants, variant{rtt, benchApp(b, false, rtt), benchApp(b, true, rtt)})
	}
	for r := 1; r <= *benchRounds; r++ {
		b.Run(fmt.Sprintf("round=%d", r), func(b *testing.B) {
			for _, v := range variants {
				b.Run(fmt.Sprintf("s3rtt=%s", v.rtt), func(b *testing.B) {
					off := func(b *testing.B) {
						restore := noopProvider()
						defer restore()
						benchFinalizeTracing(b, setup.app.Service, v.off.url, nil)
					}
					on := func(b *testing.B) { benchFinalizeTracing(b, setup.app.Service, v.on.url, st.Telemetry) }
					if r%2 == 1 {
						b.Run("tracing=off", off)
						b.Run("tracing=on", on)
					} else {
						b.Run("tracing=on", on)
						b.Run("tracing=off", off)
					}
				})
			}
		})
	}
}

// noopProvider makes the global TracerProvider the no-op and returns the
// function that puts the previous one back.
func noopProvider() (restore func()) {
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(noop.NewTracerProvider())
	return func() { otel.SetTracerProvider(prev) }
}

// tracingApp is an App of the stack's configuration behind a gateway.
type tracingApp struct {
	app *app.App
	url string
}

// benchApp builds an App on the stack's database and bucket, under the
// global provider (traced) or the no-op (not), S3 calls of finalize
// slowed by rtt, and a gateway in front of it.
func benchApp(b *testing.B, traced bool, rtt time.Duration) *tracingApp {
	b.Helper()
	if !traced {
		restore := noopProvider()
		defer restore()
	}
	a, err := app.NewWith(context.Background(), st.Config, app.Parts{Invoker: invoker.New})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(a.Close)
	if rtt > 0 {
		a.Service.Blob = slowblob.Blob{Blob: a.Service.Blob, Delay: rtt}
	}
	s := *st // the same stack, its gateway in front of a
	s.App = a
	gw, err := s.Gateway(gateway.Options{})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	b.Cleanup(srv.Close)
	return &tracingApp{app: a, url: srv.URL}
}

// benchFinalizeTracing finalizes through base with the sessions made by
// setup, an untraced App's service, under the no-op provider (so that the
// spans of the finalize are all there is to export); tel (nil: tracing
// off) is flushed after each finalize, in the timer.
func benchFinalizeTracing(b *testing.B, setup *upload.Service, base string, tel *telemetry.Telemetry) {
	ctx := context.Background()
	sizes := []int{1 * mib}
	for range 10 {
		sizes = append(sizes, 256<<10)
	}
	settle := func() {
		benchIdle(b)
		if err := st.Telemetry.Flush(ctx); err != nil {
			b.Fatalf("flush (not timed): %v", err)
		}
	}
	// One finalize first, not timed: the App's pool connects to PostgreSQL
	// on first use.
	restore := noopProvider()
	warm := "bench-" + uuid.NewString()
	warmSession, _ := benchSession(b, setup, warm, sizes[:1], false)
	restore()
	body, _ := json.Marshal(map[string]any{"uploadSessionId": warmSession, "title": "Warm-up"})
	if _, err := benchCall(base, warm, "POST", "/api/mocs/uploads/finalize", "application/json", body, 201); err != nil {
		b.Fatal(err)
	}
	settle()
	var flushed, cpu time.Duration
	var spans int
	logged := false
	for b.Loop() {
		b.StopTimer()
		user := "bench-" + uuid.NewString()
		restore := noopProvider()
		sessionID, _ := benchSession(b, setup, user, sizes, false)
		restore()
		body, _ := json.Marshal(map[string]any{"uploadSessionId": sessionID, "title": "Bench"})
		settle()
		before, cpu0 := traces.Count(), processCPU()
		b.StartTimer()
		if _, err := benchCall(base, user, "POST", "/api/mocs/uploads/finalize", "application/json", body, 201); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := tel.Flush(ctx); err != nil { // nil: returns at once
			b.Fatal(err)
		}
		flushed += time.Since(start)
		b.StopTimer()
		cpu += processCPU() - cpu0
		spans += traces.Count() - before
		if tel != nil && !logged {
			b.Logf("the spans of one finalize, by name: %s", traces.histogram(before))
			logged = true
		}
		settle()
		b.StartTimer()
	}
	n := float64(b.N)
	if tel != nil {
		b.ReportMetric(float64(flushed.Microseconds())/1000/n, "flush-ms/op")
	}
	b.ReportMetric(float64(spans)/n, "spans/op")
	b.ReportMetric(float64(cpu.Microseconds())/1000/n, "cpu-ms/op")
	if tel == nil && spans > 0 {
		b.Fatalf("tracing off, yet %d spans were exported during the finalizes", spans)
	}
	if tel != nil && spans == 0 {
		b.Fatal("tracing on, yet no span was exported")
	}
}

// processCPU is the CPU time (user and system, all threads) the process
// has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// histogram counts the spans received since the n-th, by name.
func (r *traceReceiver) histogram(n int) string {
	counts := map[string]int{}
	for _, s := range r.Spans()[n:] {
		counts[s.Name]++
	}
	names := make([]string, 0, len(counts))
	for name := range counts {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		return counts[names[i]] > counts[names[j]] || counts[names[i]] == counts[names[j]] && names[i] < names[j]
	})
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, "%s×%d ", name, counts[name])
	}
	return strings.TrimSpace(b.String())
}
