package followup_test

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mocbuilders/moc-upload/local/logbuf"
	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/telemetry"
	"github.com/mocbuilders/moc-upload/shared/webhook"
)

// The log lines of a job carry the trace_id and span_id of the job's span
// (telemetry.LogHandler), those of the Sender included: a refused webhook's
// WARN and ERRORs can be found from its send.webhook span and back. Not
// parallel: it installs a global TracerProvider.
func TestJobLogsCarryTheJobSpan(t *testing.T) {
	rec := recordSpans(t)
	e := newEnv(t)
	e.svc.ThumbnailsEnabled = false
	m := e.finalize(t, "u1", "Castle", nil)
	job := e.job(t, m.ID, followup.KindWebhook)
	if job.TraceParent == "" {
		t.Fatal("the job carries no traceparent")
	}
	rcv := newReceiver(t, func(int) int { return http.StatusGone })

	logs := &logbuf.Buffer{}
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(logs, nil)))
	hooks := &followup.Webhooks{Store: e.store, Logger: log, Sender: &webhook.Sender{
		URL: rcv.URL, Secret: secret, BaseDelay: time.Millisecond, Logger: log}}

	// The invocation's span is not the job's: the job's is a child of the
	// dispatch, in finalize's trace, and only linked to the invocation.
	ctx, invocation := rec.tracer.Start(context.Background(), "Webhook invocation")
	if err := hooks.Run(ctx, job); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	invocation.End()

	// The dispatch's span has the same name: the job's is the consumer.
	var span tracetest.SpanStub
	for _, s := range rec.trace(parentOf(t, job.TraceParent).TraceID()).named("send.webhook") {
		if s.SpanKind == trace.SpanKindConsumer {
			span = s
		}
	}
	if !span.SpanContext.IsValid() {
		t.Fatal("no send.webhook consumer span")
	}
	wantTrace, wantSpan := span.SpanContext.TraceID().String(), span.SpanContext.SpanID().String()
	if wantTrace == invocation.SpanContext().TraceID().String() {
		t.Fatal("the job ran in the invocation's trace, want the dispatch's")
	}

	var msgs []string
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line %s: %v", sc.Text(), err)
		}
		msg, _ := line["msg"].(string)
		msgs = append(msgs, msg)
		if line[telemetry.TraceIDKey] != wantTrace || line[telemetry.SpanIDKey] != wantSpan {
			t.Errorf("log line %q: %s %v, %s %v; want the send.webhook span's %s, %s", msg,
				telemetry.TraceIDKey, line[telemetry.TraceIDKey], telemetry.SpanIDKey, line[telemetry.SpanIDKey],
				wantTrace, wantSpan)
		}
		if line["outboxId"] != job.OutboxID && line["webhookId"] != job.OutboxID {
			t.Errorf("log line %q names neither outboxId nor webhookId %s: %s", msg, job.OutboxID, sc.Text())
		}
	}
	want := []string{
		"webhook attempt failed",                   // the Sender's WARN
		"webhook rejected: not retried",            // the Sender's ERROR
		"webhook failed: outbox row marked failed", // the job's ERROR
	}
	if strings.Join(msgs, "\n") != strings.Join(want, "\n") {
		t.Errorf("log messages %q, want %q", msgs, want)
	}
}
