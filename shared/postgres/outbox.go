package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// The outbox (table outbox): the work that follows a finalize (package
// followup). Finalize inserts the rows inside its transaction (InsertOutbox
// on the Tx); the async functions and the sweeper read and update them one
// statement at a time on the pool. Every time is the database's clock, the
// one every function shares.

var (
	_ followup.JobStore   = (*Store)(nil)
	_ followup.SweepStore = (*Store)(nil)
)

// InsertOutbox records work as pending rows, dispatched_at now: finalize
// invokes their functions right after the commit, and the sweeper leaves
// them alone until that dispatch is overdue. Each row keeps the traceparent
// of ctx's span, the finalize's, which the sweeper's re-dispatch links to.
func (t *tx) InsertOutbox(ctx context.Context, work []upload.FollowUp) error {
	traceParent := nullIfEmpty(followup.TraceParent(ctx))
	for _, w := range work {
		_, err := t.tx.Exec(ctx, `INSERT INTO outbox (id, moc_id, kind, status, dispatched_at, traceparent)
			VALUES ($1, $2, $3, 'pending', now(), $4)`, w.ID, w.MocID, w.Kind, traceParent)
		if err != nil {
			return fail("insert outbox row", w.ID, err)
		}
	}
	return nil
}

const outboxColumns = `id, moc_id, kind, status, attempts, last_error, dispatched_at,
	traceparent, created_at, updated_at`

func scanOutbox(row pgx.CollectableRow) (followup.Row, error) {
	var (
		r                    followup.Row
		lastErr, traceParent *string
	)
	err := row.Scan(&r.ID, &r.MocID, &r.Kind, &r.Status, &r.Attempts, &lastErr, &r.DispatchedAt,
		&traceParent, &r.CreatedAt, &r.UpdatedAt)
	r.LastError, r.DispatchedAt, r.TraceParent = deref(lastErr), utcPtr(r.DispatchedAt), deref(traceParent)
	r.CreatedAt, r.UpdatedAt = utc(r.CreatedAt), utc(r.UpdatedAt)
	return r, err
}

// OutboxRow returns one row of the outbox.
func (s *Store) OutboxRow(ctx context.Context, id string) (*followup.Row, error) {
	if !isUUID(id) {
		return nil, notFound("get outbox row", id)
	}
	rows, _ := s.pool.Query(ctx, `SELECT `+outboxColumns+` FROM outbox WHERE id = $1`, id)
	r, err := pgx.CollectExactlyOneRow(rows, scanOutbox)
	if err != nil {
		return nil, fail("get outbox row", id, err)
	}
	return &r, nil
}

// FinishOutbox ends a pending row with o and, when o has a thumbnail, sets
// the MOC's thumbnail status and URL, in one transaction. The row's lock
// orders two runs of one job: the second finds the row finished and
// writes nothing (false).
func (s *Store) FinishOutbox(ctx context.Context, id string, o followup.Outcome) (bool, error) {
	if o.Status != followup.StatusDone && o.Status != followup.StatusFailed {
		return false, fmt.Errorf("postgres: finish outbox row %s: status %q is not final", id, o.Status)
	}
	if !isUUID(id) {
		return false, nil
	}
	finished := false
	err := pgx.BeginFunc(ctx, s.pool, func(ptx pgx.Tx) error {
		var mocID string
		err := ptx.QueryRow(ctx, `UPDATE outbox SET status = $2, last_error = $3, updated_at = now()
			WHERE id = $1 AND status = 'pending' RETURNING moc_id`,
			id, o.Status, nullIfEmpty(o.LastError)).Scan(&mocID)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fail("finish outbox row", id, err)
		}
		finished = true
		if o.Thumbnail == nil {
			return nil
		}
		_, err = ptx.Exec(ctx, `UPDATE moc_instructions SET thumbnail_status = $2,
			thumbnail_url = $3, updated_at = now() WHERE id = $1`,
			mocID, o.Thumbnail.Status, o.Thumbnail.URL)
		if err != nil {
			return fail("set thumbnail of moc", mocID, err)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return finished, nil
}

// NoteOutboxError records why an attempt did not finish a pending row.
func (s *Store) NoteOutboxError(ctx context.Context, id, msg string) error {
	if !isUUID(id) {
		return nil
	}
	_, err := s.pool.Exec(ctx, `UPDATE outbox SET last_error = $2, updated_at = now()
		WHERE id = $1 AND status = 'pending'`, id, msg)
	if err != nil {
		return fail("note error on outbox row", id, err)
	}
	return nil
}

// RecordDispatch counts one invocation of a row; see
// followup.DispatchStore.
func (s *Store) RecordDispatch(ctx context.Context, id, failure string) error {
	if !isUUID(id) {
		return nil
	}
	var err error
	// The invoke is asynchronous: the function may have finished the row
	// already. The invoke still counts; the dispatch time matters only
	// while the row is pending.
	if failure == "" {
		_, err = s.pool.Exec(ctx, `UPDATE outbox SET attempts = attempts + 1,
			dispatched_at = CASE WHEN status = 'pending' THEN now() ELSE dispatched_at END,
			updated_at = now()
			WHERE id = $1`, id)
	} else {
		_, err = s.pool.Exec(ctx, `UPDATE outbox SET attempts = attempts + 1,
			dispatched_at = CASE WHEN status = 'pending' THEN NULL ELSE dispatched_at END,
			last_error = CASE WHEN status = 'pending' THEN $2 ELSE last_error END,
			updated_at = now()
			WHERE id = $1`, id, failure)
	}
	if err != nil {
		return fail("record dispatch of outbox row", id, err)
	}
	return nil
}

// ClaimStaleOutbox returns up to limit pending rows, oldest first, never
// dispatched or last dispatched at least olderThan ago, and marks them
// dispatched now. Rows another sweep is claiming are skipped (SKIP LOCKED),
// so two sweeps never take the same row.
func (s *Store) ClaimStaleOutbox(ctx context.Context, olderThan time.Duration, limit int) ([]followup.Row, error) {
	if limit < 1 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, `WITH stale AS (
			SELECT id, dispatched_at AS previous FROM outbox
			WHERE status = 'pending'
				AND (dispatched_at IS NULL OR dispatched_at <= now() - $1::interval)
			ORDER BY created_at, id
			LIMIT $2
			FOR UPDATE SKIP LOCKED)
		UPDATE outbox o SET dispatched_at = now(), updated_at = now()
		FROM stale WHERE o.id = stale.id
		RETURNING o.id, o.moc_id, o.kind, o.status, o.attempts, o.last_error,
			stale.previous, o.traceparent, o.created_at, o.updated_at`, olderThan, limit)
	claimed, err := pgx.CollectRows(rows, scanOutbox)
	if err != nil {
		return nil, fmt.Errorf("postgres: claim stale outbox rows: %w", err)
	}
	// RETURNING comes in no particular order.
	slices.SortFunc(claimed, func(a, b followup.Row) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return claimed, nil
}

// MocByID returns a MOC and its files, whoever owns it.
func (s *Store) MocByID(ctx context.Context, id string) (*upload.Moc, error) {
	if !isUUID(id) {
		return nil, notFound("get moc", id)
	}
	var m *upload.Moc
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(ptx pgx.Tx) error {
		var err error
		m, err = (&tx{tx: ptx}).getMoc(ctx, "get moc", id, `id = $1`, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}
