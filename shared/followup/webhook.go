package followup

import (
	"context"
	"errors"
	"log/slog"

	"github.com/mocbuilders/moc-upload/shared/webhook"
)

// Deliverer sends one webhook (*webhook.Sender): at most its Attempts
// attempts, the same webhook-id on each.
type Deliverer interface {
	Deliver(ctx context.Context, id string, p webhook.Payload) error
}

// Webhooks does the webhook jobs: it sends the moc.finalized event of the
// row's MOC, with the row's id as webhook-id, so that a receiver sees one
// id per finalize however often it is sent.
//
// Run returns nil whatever the receiver does, so that Lambda's
// asynchronous retries never multiply the Sender's own attempts. Delivered:
// the row is done. Refused or never taken (webhook.ErrRejected,
// webhook.ErrExhausted, or any other error the Sender returns before its
// context ended): the row is failed with the error as last_error, logged
// at ERROR. Cut short by the function's deadline: the error is noted and
// the row stays pending, for the Sweeper to send again later. So a
// receiver gets at most Sender.Attempts (4) requests per dispatch, and the
// template sets MaximumRetryAttempts 0 on the Webhook function: one run per
// dispatch.
type Webhooks struct {
	Store JobStore
	// Sender delivers the webhook; nil (MOC_FINALIZE_WEBHOOK_URL unset in
	// this function) fails the job.
	Sender Deliverer
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Run does one webhook job; see Webhooks. Its span is send.webhook
// (consumer), a child of the dispatch's.
func (w *Webhooks) Run(ctx context.Context, job Job) (err error) {
	ctx, span := startJob(ctx, KindWebhook, job)
	defer func() { endJob(span, err) }()
	log := logger(w.Logger).With(jobAttrs(job)...)
	row, m, err := start(ctx, w.Store, job, KindWebhook, log)
	if err != nil || row == nil {
		return err
	}
	if w.Sender == nil {
		const msg = "no webhook URL is configured (MOC_FINALIZE_WEBHOOK_URL)"
		log.ErrorContext(ctx, "webhook failed", slog.String("err", msg))
		return finish(ctx, w.Store, row.ID, Outcome{Status: StatusFailed, LastError: msg})
	}
	at := m.CreatedAt
	if m.FinalizedAt != nil {
		at = *m.FinalizedAt
	}
	err = w.Sender.Deliver(ctx, row.ID, webhook.Payload{
		Event:     webhook.EventMocFinalized,
		MocID:     m.ID,
		SessionID: m.UploadSessionID,
		UserID:    m.UserID,
		Timestamp: at,
	})
	switch {
	case err == nil:
		log.InfoContext(ctx, "webhook delivered")
		return finish(ctx, w.Store, row.ID, Outcome{Status: StatusDone})
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		log.WarnContext(ctx, "webhook cut short; the sweeper will send it again", slog.String("err", err.Error()))
		note(ctx, w.Store, row.ID, err.Error(), log)
		return nil
	default:
		log.ErrorContext(ctx, "webhook failed: outbox row marked failed", slog.String("err", err.Error()),
			slog.Bool("rejected", errors.Is(err, webhook.ErrRejected)),
			slog.Bool("exhausted", errors.Is(err, webhook.ErrExhausted)))
		return finish(ctx, w.Store, row.ID, Outcome{Status: StatusFailed, LastError: err.Error()})
	}
}
