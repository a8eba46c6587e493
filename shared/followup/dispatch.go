package followup

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// DefaultDispatchTimeout bounds the invocations of one Dispatch.
const DefaultDispatchTimeout = 3 * time.Second

// bookkeepingTimeout bounds one write of an outbox row's state, made even
// when the caller's context has ended.
const bookkeepingTimeout = 5 * time.Second

// Dispatcher invokes the function of each outbox row asynchronously
// (Lambda Invoke, InvocationType Event) and records the dispatch on the
// row. Finalize calls it after its commit, as the upload service's
// FollowUps; the Sweeper calls it for the rows nobody finished.
type Dispatcher struct {
	Invoker Invoker
	Store   DispatchStore
	// ThumbnailFunction and WebhookFunction are the functions invoked for
	// each kind of work (THUMBNAIL_FUNCTION_NAME, WEBHOOK_FUNCTION_NAME:
	// the deployed function's name or ARN; default "Thumbnail" and
	// "Webhook", the names the local invoke API knows).
	ThumbnailFunction string
	WebhookFunction   string
	// Timeout bounds one Dispatch, all its invocations included, so that
	// finalize is never held up by Lambda (default DefaultDispatchTimeout).
	// The caller's cancellation does not stop it: a client that went away
	// after the commit still gets its work started.
	Timeout time.Duration
	// Logger receives a warning per invocation that failed (default
	// slog.Default()).
	Logger *slog.Logger
}

var _ upload.FollowUps = (*Dispatcher)(nil)

// Dispatch starts the work a finalize committed. It never fails: work it
// could not start is logged and left to the Sweeper.
func (d *Dispatcher) Dispatch(ctx context.Context, work []upload.FollowUp) {
	jobs := make([]Job, len(work))
	for i, w := range work {
		jobs[i] = Job{OutboxID: w.ID, Kind: w.Kind, MocID: w.MocID}
	}
	d.DispatchJobs(ctx, jobs)
}

// DispatchJobs invokes each job's function, all at once, and records each
// invocation on its row: accepted, the row is dispatched now; refused, the
// row is due at the next sweep. It returns how many were not accepted.
//
// Each dispatch is a producer span under ctx's, and the job sent carries
// its traceparent. A job's TraceParent on the way in is the trace that made
// the work (a row's, when the Sweeper dispatches it again): the dispatch
// links to it.
func (d *Dispatcher) DispatchJobs(ctx context.Context, jobs []Job) (failed int) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cmp.Or(d.Timeout, DefaultDispatchTimeout))
	defer cancel()
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, job := range jobs {
		wg.Go(func() { errs[i] = d.dispatch(ctx, job) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			failed++
		}
	}
	return failed
}

func (d *Dispatcher) dispatch(ctx context.Context, job Job) (err error) {
	log := logger(d.Logger).With(jobAttrs(job)...)
	fn := d.function(job.Kind)
	if fn == "" {
		log.ErrorContext(ctx, "follow-up job of an unknown kind: not dispatched")
		return fmt.Errorf("followup: unknown kind %q", job.Kind)
	}
	ctx, span := startDispatch(ctx, job, fn)
	defer func() { endSpan(span, err) }()
	job.TraceParent = TraceParent(ctx)
	payload, err := json.Marshal(job)
	if err != nil {
		return fmt.Errorf("followup: encode job: %w", err)
	}
	invokeErr := d.Invoker.InvokeAsync(ctx, fn, payload)
	failure := ""
	if invokeErr != nil {
		failure = "dispatch: " + invokeErr.Error()
		log.WarnContext(ctx, "follow-up not dispatched; the sweeper will dispatch it",
			slog.String("function", fn), slog.String("err", invokeErr.Error()))
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	if err := d.Store.RecordDispatch(bctx, job.OutboxID, failure); err != nil {
		// The row keeps its previous dispatch time: the sweeper dispatches
		// it again once that is old.
		log.WarnContext(ctx, "dispatch not recorded", slog.String("err", err.Error()))
	}
	return invokeErr
}

// function is the function that does work of kind, "" for no kind known.
func (d *Dispatcher) function(kind string) string {
	switch kind {
	case KindThumbnail:
		return cmp.Or(d.ThumbnailFunction, ThumbnailFunction)
	case KindWebhook:
		return cmp.Or(d.WebhookFunction, WebhookFunction)
	}
	return ""
}

// jobAttrs are the log attributes of a job.
func jobAttrs(job Job) []any {
	return []any{slog.String("outboxId", job.OutboxID), slog.String("kind", job.Kind), slog.String("mocId", job.MocID)}
}

func logger(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.Default()
}
