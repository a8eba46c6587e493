// Package followup runs the work that follows a finalize — the MOC's
// thumbnail and the moc.finalized webhook — in functions of their own,
// invoked asynchronously, so that finalize never waits for it or fails
// because of it. Finalize writes each piece of work as a row of the outbox
// in the transaction that creates the MOC, then invokes its function; the
// Sweeper invokes again what was not done in time, so a crash between the
// commit and the invoke delays the work but never drops it.
//
// The pieces: [Dispatcher] (finalize's upload.FollowUps: invokes each row's
// function and records the dispatch), [Thumbnails] and [Webhooks] (the
// Thumbnail and Webhook functions' jobs), [Sweeper] (the scheduled Sweeper
// function). Their ports, [JobStore], [SweepStore], [DispatchStore] and
// [ThumbnailBlob], are implemented by packages postgres and s3blob; the
// [Invoker] by package invoke.
//
// # Configuration
//
// Package app reads the environment:
//
//	ENABLE_THUMBNAIL_GENERATION      finalize leaves a thumbnail job for a MOC with an image (default false)
//	MOC_FINALIZE_WEBHOOK_URL         finalize leaves a webhook job; where it is POSTed (unset: none)
//	MOC_FINALIZE_WEBHOOK_SECRET      Standard Webhooks secret "whsec_…" signing it (unset: unsigned)
//	WEBHOOK_RETRY_BASE_DELAY_MS      first wait between webhook attempts, doubled after each (default 1000)
//	THUMBNAIL_FUNCTION_NAME          function (name or ARN) invoked for thumbnails (default Thumbnail)
//	WEBHOOK_FUNCTION_NAME            function invoked for webhooks (default Webhook)
//	OUTBOX_REDISPATCH_AFTER_SECONDS  a dispatched row still pending this long is dispatched again (default 300)
//	LAMBDA_ENDPOINT                  Lambda Invoke API endpoint (unset: AWS; the local stack sets its own)
//
// # Considerations
//
// Delivery is at least once and every job is idempotent: a job whose row
// is no longer pending does nothing; the thumbnail's key depends on the
// MOC only; the webhook's webhook-id is the row's id.
//
// Who retries what. Finalize dispatches each row once ([DefaultDispatchTimeout]
// bounds it; a refused invoke is logged and the row is due at the next
// sweep). The Sweeper dispatches a pending row again when its last dispatch
// is OUTBOX_REDISPATCH_AFTER_SECONDS old (or was refused), and gives it up
// (failed) after [DefaultMaxDispatches] dispatches in all. Per dispatch:
//
//   - Thumbnail returns an error only when it cannot record its answer
//     (the database failing, or its deadline cutting S3 short), so Lambda
//     runs it 1 + MaximumRetryAttempts times (the template sets 1: 2 runs).
//     A bad, missing or oversized image is a final answer (thumbnail
//     failed, row done, no error), and so is an S3 error the SDK's own
//     retries did not get past (thumbnail failed, row failed, no error).
//   - Webhook never returns an error, so Lambda never runs it again: one run
//     per dispatch, which makes at most webhook.Sender's Attempts (4) HTTP
//     requests — 4 × (1 + MaximumRetryAttempts, which the template sets to
//     0) = 4. ErrRejected or ErrExhausted fail the row (logged at ERROR);
//     only a run cut short by its deadline leaves the row to the Sweeper,
//     whose next dispatch makes up to 4 more requests, with the same
//     webhook-id.
//
// # Tracing
//
// With the global OpenTelemetry API (a no-op until package telemetry
// installs a TracerProvider), each piece of work is one trace from the
// finalize that made it to the function that does it:
//
//	moc.upload.finalize                  package upload, under the HTTP request's span
//	├─ generate.thumbnail  producer      the dispatch: Lambda Invoke, InvocationType Event
//	│  └─ generate.thumbnail consumer    the Thumbnail function's job, from Job.TraceParent
//	└─ send.webhook        producer
//	   └─ send.webhook     consumer      the Webhook function's job
//
// Both kinds of span have the attributes mocId, outboxId and kind; the
// dispatch also faas.invoked_name and faas.invoked_provider; the job
// attempts (the row's dispatches so far) and, when it ends, outcome: done,
// failed (the work was given up: the row is failed), retry (not finished:
// the function's error makes Lambda run it again, or the row waits for the
// Sweeper) or skipped (nothing to do), with reason. A dispatch Lambda
// refused, a job failed or to be retried, have status Error; a thumbnail a
// broken or too large image could not give is done (thumbnailStatus
// failed, reason says why): the function did its work.
//
// The dispatch's trace context travels in the Job as its W3C traceparent
// (TraceContext, whatever the global propagator). The job's span is its
// child even when the function's invocation has a span of its own (package
// telemetry's); the job's span then links to that one.
//
// The Sweeper's run is a trace of its own (span outbox.sweep, under the
// invocation's span when there is one): a re-dispatch is its child and
// links to the finalize that made the work, whose traceparent the outbox
// row keeps (the postgres adapter's InsertOutbox takes it from finalize's
// context). Work done again minutes or hours later is not hung under a
// finalize trace long closed, yet each trace leads to the other.
package followup

import "context"

// Kinds of follow-up work: an outbox row's kind and the function that
// does it.
const (
	KindThumbnail = "thumbnail"
	KindWebhook   = "webhook"
)

// The async functions, as in functions/<Name> and <Name>Function in
// template.yaml.
const (
	ThumbnailFunction = "Thumbnail"
	WebhookFunction   = "Webhook"
	SweeperFunction   = "Sweeper"
)

// Functions lists the async functions (not behind an API).
var Functions = []string{ThumbnailFunction, WebhookFunction, SweeperFunction}

// Job is the payload of an async invocation of the Thumbnail or Webhook
// function: one outbox row.
type Job struct {
	OutboxID string `json:"outboxId"`
	Kind     string `json:"kind"`
	MocID    string `json:"mocId"`
	// TraceParent is the W3C trace context of the dispatch that sent the
	// job (a child of the finalize that made it, or of the Sweeper's run),
	// continued by the function (OpenTelemetry): see Tracing in the package
	// documentation.
	TraceParent string `json:"traceparent,omitempty"`
}

// Invoker starts a function asynchronously: Lambda's Invoke API with
// InvocationType Event, which answers once the event is queued.
type Invoker interface {
	InvokeAsync(ctx context.Context, function string, payload []byte) error
}
