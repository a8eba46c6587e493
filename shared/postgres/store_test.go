package postgres

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

type callerKey struct{}

// recordingTracer records the queries and acquisitions pgx reports, and
// whether each came with the caller's context.
type recordingTracer struct {
	mu       sync.Mutex
	queries  []string
	acquires int
	callers  []string // callerKey's value in each query's context
}

func (r *recordingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queries = append(r.queries, strings.Join(strings.Fields(data.SQL), " "))
	caller, _ := ctx.Value(callerKey{}).(string)
	r.callers = append(r.callers, caller)
	return ctx
}

func (r *recordingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *recordingTracer) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.acquires++
	return ctx
}

func (r *recordingTracer) TraceAcquireEnd(context.Context, *pgxpool.Pool, pgxpool.TraceAcquireEndData) {
}

// WithTracer's tracer sees every query of the store, in the caller's
// context, and the pool's acquisitions when it traces them.
func TestOpenWithTracer(t *testing.T) {
	t.Parallel()
	url := postgresURL(t)
	if err := Migrate(t.Context(), url); err != nil {
		t.Fatal(err)
	}
	tr := &recordingTracer{}
	s, err := Open(t.Context(), url, WithTracer(tr))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	ctx := context.WithValue(t.Context(), callerKey{}, "request-1")
	tr.mu.Lock()
	tr.queries, tr.callers, tr.acquires = nil, nil, 0 // Open's ping
	tr.mu.Unlock()
	err = s.InTx(ctx, func(tx upload.Tx) error {
		_, err := tx.GetSession(ctx, "00000000-0000-0000-0000-000000000000", "u1", false)
		return err
	})
	if err == nil {
		t.Fatal("GetSession of no session: no error")
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.queries) < 3 || tr.queries[0] != "begin" || !slices.ContainsFunc(tr.queries, func(q string) bool {
		return strings.Contains(q, "upload_sessions")
	}) {
		t.Errorf("traced queries %q, want begin, the session's SELECT, rollback", tr.queries)
	}
	for i, c := range tr.callers {
		if c != "request-1" {
			t.Errorf("query %q traced without the caller's context", tr.queries[i])
		}
	}
	if tr.acquires != 1 {
		t.Errorf("%d acquisitions traced, want 1 (the transaction's)", tr.acquires)
	}
}

// Without WithTracer the connections have no tracer.
func TestOpenWithoutTracer(t *testing.T) {
	t.Parallel()
	s, err := Open(t.Context(), postgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if tr := s.Pool().Config().ConnConfig.Tracer; tr != nil {
		t.Errorf("Tracer = %T, want none", tr)
	}
}
