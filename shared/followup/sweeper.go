package followup

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// Defaults of a Sweeper.
const (
	// DefaultRedispatchAfter is how long a dispatched row may stay pending
	// before it is dispatched again (OUTBOX_REDISPATCH_AFTER_SECONDS).
	DefaultRedispatchAfter = 300 * time.Second
	// DefaultMaxDispatches is how many dispatches a row gets, finalize's
	// included, before the Sweeper gives it up.
	DefaultMaxDispatches = 6
	// DefaultSweepBatch is how many rows one claim takes.
	DefaultSweepBatch = 100
	// maxSweepBatches bounds one run: what is left waits for the next.
	maxSweepBatches = 20
)

// Sweeper finds the outbox rows that were not done in time and dispatches
// them again: pending rows never dispatched (the invoke failed) or last
// dispatched RedispatchAfter ago or more — the function crashed, timed out,
// exhausted Lambda's retries, or the process died between finalize's commit
// and its invoke. A row dispatched MaxDispatches times and still pending
// is given up: failed, with last_error saying why, and for a thumbnail the
// MOC's thumbnail_status failed too. It runs on a schedule (EventBridge);
// each run logs its counts.
//
// Each run also deletes the WebSocket connection rows past their expiry
// (clients whose $disconnect never came). Listing hides them and each
// $connect deletes them, but without a schedule they would stay as long as
// nobody connects. One statement on an indexed column, bounded by the
// database's statement_timeout; running it twice deletes nothing more.
//
// RedispatchAfter must be longer than a job can legitimately take — the
// function's timeout, plus, for Thumbnail, Lambda's asynchronous retries
// (about 1 and 2 minutes apart) — or a slow job gets a second, harmless,
// run at the same time.
type Sweeper struct {
	Store      SweepStore
	Dispatcher *Dispatcher
	// RedispatchAfter (default DefaultRedispatchAfter).
	RedispatchAfter time.Duration
	// MaxDispatches (default DefaultMaxDispatches).
	MaxDispatches int
	// Batch is how many rows one claim takes (default DefaultSweepBatch).
	Batch int
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// SweepResult counts what one run did.
type SweepResult struct {
	// Redispatched rows were dispatched again; DispatchErrors of them were
	// not accepted (due again at the next run).
	Redispatched   int `json:"redispatched"`
	DispatchErrors int `json:"dispatchErrors"`
	// GivenUp rows were marked failed.
	GivenUp int `json:"givenUp"`
	// ExpiredConnections is how many expired WebSocket connection rows
	// were deleted (left out of the JSON when none).
	ExpiredConnections int64 `json:"expiredConnections,omitempty"`
}

// Run sweeps once. An error is the database's; what was done before it is
// counted in the result.
//
// The run is the span outbox.sweep, under ctx's span or the root of a new
// trace. Each re-dispatch is its child, linked to the trace of the
// finalize that made the work (see Tracing in the package documentation).
func (s *Sweeper) Run(ctx context.Context) (res SweepResult, err error) {
	ctx, span := tracer().Start(ctx, spanSweep)
	defer func() {
		span.SetAttributes(attrRedispatched.Int(res.Redispatched), attrDispatchErrors.Int(res.DispatchErrors),
			attrGivenUp.Int(res.GivenUp), attrExpiredConns.Int64(res.ExpiredConnections))
		endSpan(span, err)
	}()
	log := logger(s.Logger)
	after := cmp.Or(s.RedispatchAfter, DefaultRedispatchAfter)
	maxDispatches := cmp.Or(s.MaxDispatches, DefaultMaxDispatches)
	batch := cmp.Or(s.Batch, DefaultSweepBatch)
	for range maxSweepBatches {
		var rows []Row
		rows, err = s.Store.ClaimStaleOutbox(ctx, after, batch)
		if err != nil {
			err = fmt.Errorf("followup: sweep: %w", err)
			break
		}
		var jobs []Job
		for i := range rows {
			r := &rows[i]
			if r.Attempts >= maxDispatches {
				if s.giveUp(ctx, r, log) {
					res.GivenUp++
				}
				continue
			}
			log.InfoContext(ctx, "outbox row overdue: dispatching again", append(jobAttrs(r.Job()),
				slog.Int("attempts", r.Attempts), slog.Any("dispatchedAt", r.DispatchedAt),
				slog.String("lastError", r.LastError))...)
			jobs = append(jobs, r.Job())
		}
		if len(jobs) > 0 {
			res.DispatchErrors += s.Dispatcher.DispatchJobs(ctx, jobs)
			res.Redispatched += len(jobs)
		}
		if len(rows) < batch || ctx.Err() != nil {
			break
		}
	}
	if err == nil && ctx.Err() == nil {
		res.ExpiredConnections, err = s.Store.DeleteExpiredConnections(ctx)
		if err != nil {
			err = fmt.Errorf("followup: sweep expired connections: %w", err)
		}
	}
	attrs := []any{slog.Int("redispatched", res.Redispatched), slog.Int("dispatchErrors", res.DispatchErrors),
		slog.Int("givenUp", res.GivenUp), slog.Int64("expiredConnections", res.ExpiredConnections)}
	if err != nil {
		log.ErrorContext(ctx, "outbox sweep failed", append(attrs, slog.String("err", err.Error()))...)
		return res, err
	}
	log.InfoContext(ctx, "outbox swept", attrs...)
	return res, nil
}

// giveUp marks a row failed (and its MOC's thumbnail, for a thumbnail)
// and reports whether it did.
func (s *Sweeper) giveUp(ctx context.Context, r *Row, log *slog.Logger) bool {
	msg := fmt.Sprintf("not done after %d dispatches", r.Attempts)
	if r.LastError != "" {
		msg += "; last error: " + r.LastError
	}
	o := Outcome{Status: StatusFailed, LastError: msg}
	if r.Kind == KindThumbnail {
		o.Thumbnail = &ThumbnailState{Status: upload.ThumbnailFailed}
	}
	log = log.With(jobAttrs(r.Job())...)
	ok, err := s.Store.FinishOutbox(ctx, r.ID, o)
	if err != nil {
		log.ErrorContext(ctx, "could not give up the outbox row", slog.String("err", err.Error()))
		return false
	}
	if ok {
		log.ErrorContext(ctx, "follow-up given up: outbox row marked failed", slog.String("err", msg))
	}
	return ok
}
