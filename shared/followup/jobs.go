package followup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/trace"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// start loads the row of job for a function that does work of kind. It
// returns nil, nil when there is nothing to do: the row is gone (its MOC
// was deleted), already finished (a repeated invocation), or not work of
// this kind. An error is the database's, worth a retry. ctx's span is the
// job's.
func start(ctx context.Context, store JobStore, job Job, kind string, log *slog.Logger) (*Row, *upload.Moc, error) {
	if job.Kind != kind {
		log.ErrorContext(ctx, "job sent to the wrong function: ignored", slog.String("want", kind))
		skipped(ctx, "job of another kind")
		return nil, nil, nil
	}
	row, err := store.OutboxRow(ctx, job.OutboxID)
	if errors.Is(err, upload.ErrNotFound) {
		log.InfoContext(ctx, "no outbox row for the job (its MOC was deleted): nothing to do")
		skipped(ctx, "no outbox row")
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("followup: %s job %s: %w", kind, job.OutboxID, err)
	}
	trace.SpanFromContext(ctx).SetAttributes(attrAttempts.Int(row.Attempts))
	if row.Kind != kind || row.MocID != job.MocID {
		log.ErrorContext(ctx, "job does not match its outbox row: ignored", slog.String("rowKind", row.Kind), slog.String("rowMocId", row.MocID))
		skipped(ctx, "job does not match its outbox row")
		return nil, nil, nil
	}
	if row.Status != StatusPending {
		log.InfoContext(ctx, "outbox row already finished: nothing to do", slog.String("status", row.Status))
		skipped(ctx, "outbox row already "+row.Status)
		return nil, nil, nil
	}
	m, err := store.MocByID(ctx, row.MocID)
	if errors.Is(err, upload.ErrNotFound) {
		log.InfoContext(ctx, "the job's MOC is gone: nothing to do")
		skipped(ctx, "no MOC")
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("followup: %s job %s: %w", kind, job.OutboxID, err)
	}
	return row, m, nil
}

// finish ends a row with o, even when ctx has ended (the function's
// deadline): the work is done, and doing it again would only repeat it.
func finish(ctx context.Context, store JobStore, id string, o Outcome) error {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	ended, err := store.FinishOutbox(bctx, id, o)
	if err != nil {
		return fmt.Errorf("followup: finish outbox row %s: %w", id, err)
	}
	finished(ctx, o, ended)
	return nil
}

// note records why an attempt did not finish a row, best effort.
func note(ctx context.Context, store JobStore, id, msg string, log *slog.Logger) {
	retrying(ctx, msg)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	if err := store.NoteOutboxError(ctx, id, msg); err != nil {
		log.WarnContext(ctx, "could not record the error on the outbox row", slog.String("err", err.Error()))
	}
}
