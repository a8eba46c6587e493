// Package followup runs the work that follows a finalize — the MOC's
// thumbnail and the moc.finalized webhook — in functions of their own,
// invoked asynchronously, so that finalize never waits for it or fails
// because of it. Finalize writes each piece of work as a row of the outbox
// in the transaction that creates the MOC, then invokes its function; the
// Sweeper invokes again what was not done in time, so a crash between the
// commit and the invoke delays the work but never drops it.
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
	// TraceParent is the W3C trace context of the finalize that made the
	// job, continued by the function (OpenTelemetry).
	TraceParent string `json:"traceparent,omitempty"`
}

// Invoker starts a function asynchronously: Lambda's Invoke API with
// InvocationType Event, which answers once the event is queued.
type Invoker interface {
	InvokeAsync(ctx context.Context, function string, payload []byte) error
}
