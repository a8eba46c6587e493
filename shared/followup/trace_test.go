package followup_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/progress"
	"github.com/mocbuilders/moc-upload/shared/telemetry/telemetrytest"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// The tracing tests install a global TracerProvider, so none of them runs
// in parallel: Go runs the parallel tests of the package only after them.

// recorder is a TracerProvider installed as the global one, exporting to
// memory as each span ends.
type recorder struct {
	exp    *tracetest.InMemoryExporter
	tracer trace.Tracer
}

func recordSpans(t *testing.T) *recorder {
	t.Helper()
	exp, tracer := telemetrytest.RecordSpans(t)
	return &recorder{exp: exp, tracer: tracer}
}

// trace returns the ended spans of one trace.
func (r *recorder) trace(id trace.TraceID) spans {
	var out spans
	for _, s := range r.exp.GetSpans() {
		if s.SpanContext.TraceID() == id {
			out = append(out, s)
		}
	}
	return out
}

type spans []tracetest.SpanStub

func (ss spans) named(name string) spans {
	var out spans
	for _, s := range ss {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// one is the only span of the name.
func (ss spans) one(t *testing.T, name string) tracetest.SpanStub {
	t.Helper()
	got := ss.named(name)
	if len(got) != 1 {
		t.Fatalf("%d spans %s, want 1; spans: %v", len(got), name, ss.names())
	}
	return got[0]
}

func (ss spans) names() []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Name)
	}
	slices.Sort(out)
	return out
}

// logTree logs a trace as an indented tree (go test -v shows it).
func logTree(t *testing.T, ss spans) {
	t.Helper()
	children := map[trace.SpanID]spans{}
	ids := map[trace.SpanID]bool{}
	for _, s := range ss {
		ids[s.SpanContext.SpanID()] = true
	}
	var roots spans
	for _, s := range ss {
		if p := s.Parent.SpanID(); ids[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	var b strings.Builder
	var walk func(s tracetest.SpanStub, depth int)
	walk = func(s tracetest.SpanStub, depth int) {
		fmt.Fprintf(&b, "\n%s%s [%s] %s", strings.Repeat("  ", depth), s.Name, s.SpanKind, s.Status.Code)
		for _, kv := range s.Attributes {
			fmt.Fprintf(&b, " %s=%v", kv.Key, kv.Value.String())
		}
		if len(s.Links) > 0 {
			fmt.Fprintf(&b, " links=%d", len(s.Links))
		}
		kids := children[s.SpanContext.SpanID()]
		slices.SortFunc(kids, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
		for _, c := range kids {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	t.Log(b.String())
}

// wantAttrs checks some of s's attributes.
func wantAttrs(t *testing.T, s tracetest.SpanStub, want map[string]any) {
	t.Helper()
	got := telemetrytest.Attrs(s)
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("span %s: attribute %s = %v (%T), want %v (%T)", s.Name, k, g, g, v, v)
		}
	}
}

func wantNoAttr(t *testing.T, s tracetest.SpanStub, keys ...string) {
	t.Helper()
	got := telemetrytest.Attrs(s)
	for _, k := range keys {
		if v, ok := got[k]; ok {
			t.Errorf("span %s has %s = %v", s.Name, k, v)
		}
	}
}

// wantChild checks that child's parent is parent, in parent's trace.
func wantChild(t *testing.T, child, parent tracetest.SpanStub) {
	t.Helper()
	if child.Parent.SpanID() != parent.SpanContext.SpanID() || child.SpanContext.TraceID() != parent.SpanContext.TraceID() {
		t.Errorf("span %s: parent %s in trace %s, want %s (%s) in %s", child.Name, child.Parent.SpanID(),
			child.SpanContext.TraceID(), parent.Name, parent.SpanContext.SpanID(), parent.SpanContext.TraceID())
	}
}

func wantKind(t *testing.T, s tracetest.SpanStub, kind trace.SpanKind) {
	t.Helper()
	if s.SpanKind != kind {
		t.Errorf("span %s is %s, want %s", s.Name, s.SpanKind, kind)
	}
}

func wantStatus(t *testing.T, s tracetest.SpanStub, code codes.Code) {
	t.Helper()
	if s.Status.Code != code {
		t.Errorf("span %s: status %s %q, want %s", s.Name, s.Status.Code, s.Status.Description, code)
	}
}

// recordedError reports whether s recorded an error (an exception event).
func recordedError(s tracetest.SpanStub) bool {
	for _, ev := range s.Events {
		if ev.Name == "exception" {
			return true
		}
	}
	return false
}

// parentOf is the span context a traceparent names.
func parentOf(t *testing.T, traceParent string) trace.SpanContext {
	t.Helper()
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": traceParent})
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		t.Fatalf("traceparent %q is not valid", traceParent)
	}
	return sc
}

// spanPoster is the WebSocket management API: it accepts every post and
// keeps the span context each was made under (otelaws makes its spans
// there).
type spanPoster struct {
	mu    sync.Mutex
	spans []trace.SpanContext
}

func (p *spanPoster) PostToConnection(ctx context.Context, _ *apigatewaymanagementapi.PostToConnectionInput, _ ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.PostToConnectionOutput, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.spans = append(p.spans, trace.SpanContextFromContext(ctx))
	return &apigatewaymanagementapi.PostToConnectionOutput{}, nil
}

// A finalize of a PDF and two images is one trace under the request's
// span: the steps, a span per file checked, the MOC; the dispatch of each
// job, whose traceparent the Thumbnail and Webhook jobs continue; the
// progress event.
func TestFinalizeTrace(t *testing.T) {
	rec := recordSpans(t)
	e := newEnv(t)
	poster := &spanPoster{}
	e.svc.Progress = progress.New(e.store, poster)
	front, side := pngImage(t, 64, 48), pngImage(t, 40, 30)
	files := []testFile{pdfFile(), pngFile("front.png", front), pngFile("side.png", side)}
	sessionID, ids := e.openSession(t, "u1", files...)
	if err := e.store.SaveConnection(t.Context(), "conn-1", "u1", sessionID, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	ctx, request := rec.tracer.Start(t.Context(), "POST /api/mocs/uploads/finalize", trace.WithSpanKind(trace.SpanKindServer))
	m, resumed, err := e.svc.Finalize(ctx, "u1", upload.FinalizeRequest{SessionID: sessionID, Title: "Castle"})
	request.End()
	if err != nil || resumed {
		t.Fatalf("Finalize = %v, resumed %v", err, resumed)
	}
	ss := rec.trace(request.SpanContext().TraceID())
	req := ss.one(t, "POST /api/mocs/uploads/finalize")

	root := ss.one(t, "moc.upload.finalize")
	wantChild(t, root, req)
	wantKind(t, root, trace.SpanKindInternal)
	wantStatus(t, root, codes.Unset)
	total := int64(len(pdf) + len(front) + len(side))
	wantAttrs(t, root, map[string]any{"sessionId": sessionID, "userId": "u1", "mocId": m.ID,
		"fileCount": int64(3), "totalSizeBytes": total, "resumed": false})
	wantNoAttr(t, root, "error.code")

	for _, name := range []string{"validate.session", "validate.files", "create.moc", "create.files"} {
		s := ss.one(t, name)
		wantChild(t, s, root)
		wantKind(t, s, trace.SpanKindInternal)
		wantStatus(t, s, codes.Unset)
	}
	wantAttrs(t, ss.one(t, "validate.session"), map[string]any{"sessionStatus": "active"})
	wantAttrs(t, ss.one(t, "validate.files"), map[string]any{"fileCount": int64(3), "failed": int64(0),
		"completed": int64(3), "incomplete": int64(0)})
	wantAttrs(t, ss.one(t, "create.moc"), map[string]any{"mocId": m.ID, "slug": "castle", "fileCount": int64(3),
		"totalSizeBytes": total})
	wantAttrs(t, ss.one(t, "create.files"), map[string]any{"mocId": m.ID, "fileCount": int64(3)})

	checks := ss.named("validate.file")
	if len(checks) != 3 {
		t.Fatalf("%d validate.file spans, want 3", len(checks))
	}
	byName := map[string]testFile{}
	for _, f := range files {
		byName[f.spec.Name] = f
	}
	for _, s := range checks {
		wantChild(t, s, ss.one(t, "validate.files"))
		wantStatus(t, s, codes.Unset)
		name, _ := telemetrytest.Attrs(s)["name"].(string)
		f, ok := byName[name]
		if !ok {
			t.Errorf("validate.file of %q", name)
			continue
		}
		delete(byName, name)
		wantAttrs(t, s, map[string]any{"fileId": ids[name], "size": f.spec.Size, "mimeType": f.spec.Type})
		wantNoAttr(t, s, "reason")
	}

	// The dispatches: producers under the finalize, each job's traceparent
	// naming its dispatch.
	rows := e.rows(t, m.ID)
	invoked := map[string]followup.Job{}
	for _, c := range e.inv.take() {
		invoked[c.Job.Kind] = c.Job
	}
	dispatches := map[string]tracetest.SpanStub{}
	for kind, name := range map[string]string{followup.KindThumbnail: "generate.thumbnail", followup.KindWebhook: "send.webhook"} {
		d := ss.one(t, name)
		dispatches[kind] = d
		wantChild(t, d, root)
		wantKind(t, d, trace.SpanKindProducer)
		wantStatus(t, d, codes.Unset)
		wantAttrs(t, d, map[string]any{"mocId": m.ID, "outboxId": rows[kind].ID, "kind": kind,
			"faas.invoked_provider": "aws"})
		if len(d.Links) != 0 {
			t.Errorf("finalize's %s dispatch has links %+v", kind, d.Links)
		}
		if got := parentOf(t, invoked[kind].TraceParent); got.SpanID() != d.SpanContext.SpanID() || got.TraceID() != d.SpanContext.TraceID() {
			t.Errorf("%s job's traceparent %s does not name its dispatch %s", kind, invoked[kind].TraceParent, d.SpanContext.SpanID())
		}
		// The row keeps the finalize's trace context, for the sweeper.
		if got := parentOf(t, rows[kind].TraceParent); got.SpanID() != root.SpanContext.SpanID() {
			t.Errorf("%s row's traceparent %s, want the finalize span %s", kind, rows[kind].TraceParent, root.SpanContext.SpanID())
		}
	}

	// The progress event: its fan-out is a span under the finalize, and
	// the post is made in its context.
	send := ss.one(t, "progress.send")
	wantChild(t, send, root)
	wantStatus(t, send, codes.Unset)
	wantAttrs(t, send, map[string]any{"event": progress.TypeSessionFinalized, "sessionId": sessionID,
		"connections": int64(1), "sent": int64(1), "gone": int64(0), "failed": int64(0)})
	poster.mu.Lock()
	posted := slices.Clone(poster.spans)
	poster.mu.Unlock()
	if !slices.ContainsFunc(posted, send.SpanContext.Equal) {
		t.Errorf("no post under progress.send %s: %v", send.SpanContext.SpanID(), posted)
	}

	// The Thumbnail function: its invocation has a span of its own; the
	// job's span continues the finalize's trace under the dispatch, and
	// links to the invocation's.
	ictx, invocation := rec.tracer.Start(context.Background(), "Thumbnail invocation")
	if err := e.thumbs.Run(ictx, invoked[followup.KindThumbnail]); err != nil {
		t.Fatal(err)
	}
	invocation.End()
	receiver := newReceiver(t, func(int) int { return http.StatusNoContent })
	if err := e.webhooks(receiver.URL).Run(context.Background(), invoked[followup.KindWebhook]); err != nil {
		t.Fatal(err)
	}
	ss = rec.trace(root.SpanContext.TraceID())
	for kind, name := range map[string]string{followup.KindThumbnail: "generate.thumbnail", followup.KindWebhook: "send.webhook"} {
		var job tracetest.SpanStub
		for _, s := range ss.named(name) {
			if s.SpanKind == trace.SpanKindConsumer {
				job = s
			}
		}
		if job.Name == "" {
			t.Fatalf("no %s consumer span in the finalize's trace: %v", name, ss.names())
		}
		wantChild(t, job, dispatches[kind])
		wantStatus(t, job, codes.Unset)
		wantAttrs(t, job, map[string]any{"mocId": m.ID, "outboxId": rows[kind].ID, "outcome": "done", "attempts": int64(1)})
	}
	var thumb tracetest.SpanStub
	for _, s := range ss.named("generate.thumbnail") {
		if s.SpanKind == trace.SpanKindConsumer {
			thumb = s
		}
	}
	logTree(t, ss)
	wantAttrs(t, thumb, map[string]any{"thumbnailStatus": upload.ThumbnailReady})
	if len(thumb.Links) != 1 || thumb.Links[0].SpanContext.SpanID() != invocation.SpanContext().SpanID() {
		t.Errorf("thumbnail job's links = %+v, want the invocation's span", thumb.Links)
	}
	if got := len(receiver.got()); got != 1 {
		t.Errorf("webhook receiver got %d requests", got)
	}

	// A repeat finalize is resumed: the MOC's attributes, nothing
	// dispatched.
	rec.exp.Reset()
	ctx, again := rec.tracer.Start(t.Context(), "again")
	if _, resumed, err := e.svc.Finalize(ctx, "u1", upload.FinalizeRequest{SessionID: sessionID, Title: "Castle"}); err != nil || !resumed {
		t.Fatalf("repeat = resumed %v, %v", resumed, err)
	}
	again.End()
	ss = rec.trace(again.SpanContext().TraceID())
	root = ss.one(t, "moc.upload.finalize")
	wantAttrs(t, root, map[string]any{"mocId": m.ID, "resumed": true, "fileCount": int64(3), "totalSizeBytes": total})
	wantAttrs(t, ss.one(t, "validate.session"), map[string]any{"resumed": true})
	if got := ss.names(); !slices.Equal(got, []string{"again", "moc.upload.finalize", "validate.session"}) {
		t.Errorf("resumed finalize's spans = %v", got)
	}
}

// A refused finalize: the root and its steps keep status Unset, the root
// says why (error.code); each file that failed has status Error on its
// validate.file span, with the reason. Nothing is created or dispatched.
func TestRefusedFinalizeTrace(t *testing.T) {
	rec := recordSpans(t)
	e := newEnv(t)
	notPNG := []byte("this is not a PNG, whatever its name says")
	files := []testFile{pdfFile(), pngFile("front.png", pngImage(t, 64, 48)), pngFile("side.png", notPNG),
		pngFile("back.png", nil)}
	files[3].spec.Size = 100
	sessionID, ids := e.openSession(t, "u1", files...)

	ctx, request := rec.tracer.Start(t.Context(), "request")
	_, _, err := e.svc.Finalize(ctx, "u1", upload.FinalizeRequest{SessionID: sessionID, Title: "Castle"})
	request.End()
	if e, ok := upload.AsError(err); !ok || e.Code != upload.CodeFileValidationFailed {
		t.Fatalf("Finalize = %v, want FILE_VALIDATION_FAILED", err)
	}
	ss := rec.trace(request.SpanContext().TraceID())
	logTree(t, ss)
	root := ss.one(t, "moc.upload.finalize")
	wantStatus(t, root, codes.Unset)
	wantAttrs(t, root, map[string]any{"error.code": upload.CodeFileValidationFailed, "fileCount": int64(4)})
	wantNoAttr(t, root, "mocId")
	if recordedError(root) {
		t.Error("the refused finalize recorded an error")
	}
	checked := ss.one(t, "validate.files")
	wantStatus(t, checked, codes.Unset)
	wantAttrs(t, checked, map[string]any{"failed": int64(2), "completed": int64(3), "incomplete": int64(1)})
	want := map[string]string{"front.png": "", "instructions.pdf": "", "side.png": upload.ReasonMagicBytes,
		"back.png": upload.ReasonMissing}
	for _, s := range ss.named("validate.file") {
		name := telemetrytest.Attrs(s)["name"].(string)
		wantAttrs(t, s, map[string]any{"fileId": ids[name]})
		reason, ok := want[name]
		if !ok {
			t.Errorf("unexpected validate.file of %s", name)
			continue
		}
		delete(want, name)
		if reason == "" {
			wantStatus(t, s, codes.Unset)
			wantNoAttr(t, s, "reason")
			continue
		}
		wantStatus(t, s, codes.Error)
		wantAttrs(t, s, map[string]any{"reason": reason})
		if s.Status.Description == "" {
			t.Errorf("validate.file of %s: no status message", name)
		}
	}
	if len(want) != 0 {
		t.Errorf("no validate.file span for %v", want)
	}
	for _, name := range []string{"create.moc", "generate.thumbnail", "send.webhook"} {
		if n := len(ss.named(name)); n != 0 {
			t.Errorf("refused finalize has %d %s spans", n, name)
		}
	}

	// A session that has expired is refused by validate.session.
	if _, err := e.store.Pool().Exec(t.Context(), `UPDATE upload_sessions SET expires_at = now() - interval '1 minute' WHERE id = $1`, sessionID); err != nil {
		t.Fatal(err)
	}
	rec.exp.Reset()
	ctx, request = rec.tracer.Start(t.Context(), "request")
	_, _, err = e.svc.Finalize(ctx, "u1", upload.FinalizeRequest{SessionID: sessionID, Title: "Castle"})
	request.End()
	if e, ok := upload.AsError(err); !ok || e.Code != upload.CodeSessionExpired {
		t.Fatalf("Finalize = %v, want SESSION_EXPIRED", err)
	}
	ss = rec.trace(request.SpanContext().TraceID())
	for _, name := range []string{"moc.upload.finalize", "validate.session"} {
		s := ss.one(t, name)
		wantStatus(t, s, codes.Unset)
		wantAttrs(t, s, map[string]any{"error.code": upload.CodeSessionExpired})
	}
	if got := ss.names(); !slices.Equal(got, []string{"moc.upload.finalize", "request", "validate.session"}) {
		t.Errorf("expired finalize's spans = %v", got)
	}
}

// failingReadBlob is S3 failing to answer the ranged GET of a file's
// first bytes.
type failingReadBlob struct{ *countingBlob }

func (failingReadBlob) ReadHead(context.Context, string, int64) ([]byte, int64, error) {
	return nil, 0, errors.New("s3: GetObject: connection reset")
}

// Storage failing fails the finalize: the error is recorded, with status
// Error, on the validate.file span that met it and on every span around it.
func TestFailedFinalizeTrace(t *testing.T) {
	rec := recordSpans(t)
	e := newEnv(t)
	sessionID, _ := e.openSession(t, "u1", pdfFile())
	e.svc.Blob = failingReadBlob{e.blob}

	ctx, request := rec.tracer.Start(t.Context(), "request")
	_, _, err := e.svc.Finalize(ctx, "u1", upload.FinalizeRequest{SessionID: sessionID, Title: "Castle"})
	request.End()
	if err == nil {
		t.Fatal("Finalize succeeded without storage")
	}
	ss := rec.trace(request.SpanContext().TraceID())
	for _, name := range []string{"validate.file", "validate.files", "moc.upload.finalize"} {
		s := ss.one(t, name)
		wantStatus(t, s, codes.Error)
		if !recordedError(s) {
			t.Errorf("span %s recorded no error", name)
		}
	}
	wantStatus(t, ss.one(t, "validate.session"), codes.Unset)
}

// The sweeper's run is a trace of its own: its re-dispatch is a child of
// outbox.sweep linked to the finalize's span, and the job continues the
// sweep's trace. A dispatch Lambda refuses has status Error.
func TestSweeperTrace(t *testing.T) {
	rec := recordSpans(t)
	e := newEnv(t)
	e.svc.ThumbnailsEnabled = false
	sessionID, _ := e.openSession(t, "u1", pdfFile())
	ctx, request := rec.tracer.Start(t.Context(), "request")
	m, _, err := e.svc.Finalize(ctx, "u1", upload.FinalizeRequest{SessionID: sessionID, Title: "Castle"})
	request.End()
	if err != nil {
		t.Fatal(err)
	}
	finalize := rec.trace(request.SpanContext().TraceID()).one(t, "moc.upload.finalize")
	e.inv.take()
	row := e.rows(t, m.ID)[followup.KindWebhook]
	ten := 10 * time.Minute
	e.setDispatched(t, row.ID, &ten)

	rec.exp.Reset()
	sw := &followup.Sweeper{Store: e.store, Dispatcher: e.disp, Logger: e.log}
	if res, err := sw.Run(context.Background()); err != nil || res.Redispatched != 1 {
		t.Fatalf("sweep = %+v, %v", res, err)
	}
	all := spans(rec.exp.GetSpans())
	sweep := all.one(t, "outbox.sweep")
	if sweep.Parent.IsValid() || sweep.SpanContext.TraceID() == finalize.SpanContext.TraceID() {
		t.Errorf("outbox.sweep is not the root of a new trace: parent %v", sweep.Parent)
	}
	wantAttrs(t, sweep, map[string]any{"redispatched": int64(1), "dispatchErrors": int64(0), "givenUp": int64(0)})
	d := all.one(t, "send.webhook")
	wantChild(t, d, sweep)
	wantKind(t, d, trace.SpanKindProducer)
	if len(d.Links) != 1 || d.Links[0].SpanContext.SpanID() != finalize.SpanContext.SpanID() ||
		d.Links[0].SpanContext.TraceID() != finalize.SpanContext.TraceID() {
		t.Errorf("re-dispatch links %+v, want the finalize span %s", d.Links, finalize.SpanContext.SpanID())
	}
	calls := e.inv.take()
	if len(calls) != 1 {
		t.Fatalf("invoked %+v", calls)
	}
	if got := parentOf(t, calls[0].Job.TraceParent); got.SpanID() != d.SpanContext.SpanID() {
		t.Errorf("job's traceparent %s, want the re-dispatch %s", calls[0].Job.TraceParent, d.SpanContext.SpanID())
	}
	receiver := newReceiver(t, func(int) int { return http.StatusOK })
	if err := e.webhooks(receiver.URL).Run(context.Background(), calls[0].Job); err != nil {
		t.Fatal(err)
	}
	var job tracetest.SpanStub
	for _, s := range rec.trace(sweep.SpanContext.TraceID()).named("send.webhook") {
		if s.SpanKind == trace.SpanKindConsumer {
			job = s
		}
	}
	wantChild(t, job, d)
	wantAttrs(t, job, map[string]any{"outcome": "done", "attempts": int64(2)})

	// Lambda refusing the invoke: the dispatch records it.
	rec.exp.Reset()
	e.inv.failWith(errors.New("TooManyRequestsException"))
	failed := e.disp.DispatchJobs(t.Context(), []followup.Job{row.Job()})
	if failed != 1 {
		t.Fatalf("DispatchJobs = %d failed, want 1", failed)
	}
	d = spans(rec.exp.GetSpans()).one(t, "send.webhook")
	wantStatus(t, d, codes.Error)
	if !recordedError(d) {
		t.Error("refused dispatch recorded no error")
	}
}

// A job that fails is a failed outcome with status Error; one with nothing
// to do is skipped; a job without a traceparent is a child of the
// invocation's span.
func TestJobOutcomeTrace(t *testing.T) {
	rec := recordSpans(t)
	e := newEnv(t)
	e.svc.ThumbnailsEnabled = false
	m := e.finalize(t, "u1", "Castle", nil)
	job := e.job(t, m.ID, followup.KindWebhook)
	job.TraceParent = ""
	receiver := newReceiver(t, func(int) int { return http.StatusBadRequest })

	ctx, invocation := rec.tracer.Start(context.Background(), "Webhook invocation")
	if err := e.webhooks(receiver.URL).Run(ctx, job); err != nil {
		t.Fatal(err)
	}
	if err := e.webhooks(receiver.URL).Run(ctx, job); err != nil {
		t.Fatal(err)
	}
	invocation.End()
	runs := rec.trace(invocation.SpanContext().TraceID()).named("send.webhook")
	if len(runs) != 2 {
		t.Fatalf("%d send.webhook spans, want 2", len(runs))
	}
	inv := rec.trace(invocation.SpanContext().TraceID()).one(t, "Webhook invocation")
	for _, s := range runs {
		wantChild(t, s, inv)
		wantKind(t, s, trace.SpanKindConsumer)
		if len(s.Links) != 0 {
			t.Errorf("links %+v without a traceparent", s.Links)
		}
	}
	wantStatus(t, runs[0], codes.Error)
	wantAttrs(t, runs[0], map[string]any{"outcome": "failed"})
	wantStatus(t, runs[1], codes.Unset)
	wantAttrs(t, runs[1], map[string]any{"outcome": "skipped", "reason": "outbox row already failed"})
}
