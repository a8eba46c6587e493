package followup

import (
	"context"
	"time"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// Statuses of an outbox row.
const (
	// StatusPending is work not done yet: dispatched, or due for dispatch.
	StatusPending = "pending"
	// StatusDone is work finished, including a thumbnail that could not be
	// made from a broken or too large image (the MOC says failed): that is
	// the work's final answer.
	StatusDone = "done"
	// StatusFailed is work given up: a webhook the receiver refused or
	// never took, a thumbnail S3 would not give the image or take the
	// result for (the MOC says failed), or work still not done after
	// MaxDispatches dispatches.
	StatusFailed = "failed"
)

// Row is a row of the outbox: one piece of follow-up work.
type Row struct {
	ID     string
	MocID  string
	Kind   string // KindThumbnail or KindWebhook
	Status string // StatusPending, StatusDone or StatusFailed
	// Attempts counts the invocations of the row's function, accepted by
	// Lambda or not.
	Attempts int
	// LastError says why the last attempt did not finish the work, or why
	// the work failed ("" when nothing went wrong).
	LastError string
	// DispatchedAt is when the row was last handed to its function (on
	// insert: when finalize is about to); nil when the last invoke
	// failed, which makes it due at the next sweep.
	DispatchedAt *time.Time
	// TraceParent is the W3C traceparent of the finalize that made the
	// work ("" when it was not traced): a re-dispatch links to its trace.
	TraceParent string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Job is the invocation payload that does the row's work. Its TraceParent
// is the row's until the Dispatcher sends it with its own.
func (r Row) Job() Job {
	return Job{OutboxID: r.ID, Kind: r.Kind, MocID: r.MocID, TraceParent: r.TraceParent}
}

// Outcome is how a job ends its row.
type Outcome struct {
	// Status is StatusDone or StatusFailed.
	Status string
	// LastError is why the work failed, or the reason a thumbnail could
	// not be made ("" when all went well).
	LastError string
	// Thumbnail, when not nil, is written to the row's MOC in the same
	// transaction.
	Thumbnail *ThumbnailState
}

// ThumbnailState is a MOC's thumbnail_status and thumbnail_url.
type ThumbnailState struct {
	Status string // upload.ThumbnailReady or upload.ThumbnailFailed
	URL    *string
}

// JobStore is what the job functions need of the database (package
// postgres implements it).
type JobStore interface {
	// OutboxRow returns a row; an error wrapping upload.ErrNotFound when
	// there is none (its MOC was deleted, which deletes its work).
	OutboxRow(ctx context.Context, id string) (*Row, error)
	// FinishOutbox ends a pending row with o. It returns false, having
	// written nothing, when the row is no longer pending (another run of
	// the same job finished it) or is gone.
	FinishOutbox(ctx context.Context, id string, o Outcome) (bool, error)
	// NoteOutboxError records on a pending row why an attempt did not
	// finish it; the row stays pending.
	NoteOutboxError(ctx context.Context, id, msg string) error
	// MocByID returns a MOC and its files, whoever owns it; an error
	// wrapping upload.ErrNotFound when there is none.
	MocByID(ctx context.Context, id string) (*upload.Moc, error)
}

// DispatchStore records the dispatches of outbox rows.
type DispatchStore interface {
	// RecordDispatch counts one invocation of a pending row. failure is
	// "" when Lambda accepted it: dispatched_at becomes now. Otherwise
	// dispatched_at becomes NULL, so that the next sweep dispatches the
	// row again, and last_error failure.
	RecordDispatch(ctx context.Context, id, failure string) error
}

// SweepStore is what the Sweeper needs of the database.
type SweepStore interface {
	DispatchStore
	// ClaimStaleOutbox returns up to limit pending rows, oldest first,
	// whose dispatched_at is NULL or at least olderThan ago, and sets
	// their dispatched_at to now, so that a sweep running at the same
	// time skips them. The rows returned hold the dispatched_at they had
	// before.
	ClaimStaleOutbox(ctx context.Context, olderThan time.Duration, limit int) ([]Row, error)
	// FinishOutbox is JobStore's.
	FinishOutbox(ctx context.Context, id string, o Outcome) (bool, error)
	// DeleteExpiredConnections removes the WebSocket connection rows past
	// their expiry (clients whose $disconnect never came) and says how
	// many it removed.
	DeleteExpiredConnections(ctx context.Context) (int64, error)
}
