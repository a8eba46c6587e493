package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// BenchmarkFinalizeWebhook finalizes a session of one 1 MiB PDF through
// the local gateway (server), as a client does, while the moc.finalized
// webhook goes to the package's receiver (hooks, MOC_FINALIZE_WEBHOOK_URL)
// through the Webhook function, invoked asynchronously by finalize through
// the local Lambda invoke API:
//
//   - receiver=instant (baseline): the receiver answers 204 at once;
//   - receiver=10s: the receiver holds every delivery 10 s (or until the
//     sub-benchmark ends, whichever is sooner) before answering 200, so the
//     deliveries of the whole sub-benchmark pile up, held, while finalize
//     is measured.
//
// Each iteration is a new user (the daily limit) with a new session,
// uploaded through the service (not timed). After the loop, not timed, the
// held deliveries are released and the async functions waited for
// (invokeAPI.Wait); then every MOC must have had exactly one delivery and
// its outbox row must be done. held is how many deliveries the receiver
// was holding when released; p50-ms and max-ms the median and the
// slowest finalize; dispatch-p50-ms the median time finalize spends
// starting the follow-up work (upload.FollowUps's Dispatch: the Webhook
// function's asynchronous invocation, and recording it on the outbox row);
// s3-p50-ms the median time a finalize spends in S3 calls (complete the
// upload, list its parts, head, read the first bytes).
func BenchmarkFinalizeWebhook(b *testing.B) {
	// Warm-up, not measured: the stack's first requests are slower.
	for range 30 {
		user := "bench-" + uuid.NewString()
		sessionID, _ := benchSession(b, st.App.Service, user, []int{1 * mib}, false)
		body, _ := json.Marshal(map[string]any{"uploadSessionId": sessionID, "title": "Bench"})
		if _, err := benchCall(server.URL, user, "POST", "/api/mocs/uploads/finalize", "application/json", body, 201); err != nil {
			b.Fatal(err)
		}
	}
	benchRoundsRun(b, func(b *testing.B) {
		b.Run("receiver=instant", func(b *testing.B) { benchFinalizeWebhook(b, 0) })
		b.Run("receiver=10s", func(b *testing.B) { benchFinalizeWebhook(b, 10*time.Second) })
	})
}

// benchFinalizeWebhook is one variant of BenchmarkFinalizeWebhook: a
// receiver that holds each delivery holdFor (0: answers at once).
func benchFinalizeWebhook(b *testing.B, holdFor time.Duration) {
	benchIdle(b) // nothing left over from an earlier benchmark
	benchForgetSpans()
	release := make(chan struct{})
	var holding, heldTooLong atomic.Int64
	hold := func(int) int {
		holding.Add(1)
		defer holding.Add(-1)
		t := time.NewTimer(holdFor)
		defer t.Stop()
		select {
		case <-release:
		case <-t.C:
			heldTooLong.Add(1)
		}
		return http.StatusOK
	}
	dispatch := &benchTimedFollowUps{FollowUps: st.App.Service.FollowUps}
	st.App.Service.FollowUps = dispatch
	defer func() { st.App.Service.FollowUps = dispatch.FollowUps }()
	blob := &benchTimedBlob{Blob: st.App.Service.Blob}
	st.App.Service.Blob = blob
	defer func() { st.App.Service.Blob = blob.Blob }()
	var users, mocs []string
	var s3 []time.Duration
	var latencies []time.Duration
	for b.Loop() {
		b.StopTimer()
		user := "bench-" + uuid.NewString()
		sessionID, _ := benchSession(b, st.App.Service, user, []int{1 * mib}, false)
		if holdFor > 0 {
			hooks.answer(user, hold)
		}
		body, _ := json.Marshal(map[string]any{"uploadSessionId": sessionID, "title": "Bench"})
		b.StartTimer()
		start, s3Before := time.Now(), blob.total.Load()
		moc, err := benchCall(server.URL, user, "POST", "/api/mocs/uploads/finalize", "application/json", body, 201)
		if err != nil {
			b.Fatal(err)
		}
		latencies = append(latencies, time.Since(start))
		s3 = append(s3, time.Duration(blob.total.Load()-s3Before))
		users, mocs = append(users, user), append(mocs, moc["id"].(string))
	}
	b.StopTimer()
	held := holding.Load()
	close(release)
	benchIdle(b)
	b.ReportMetric(benchMedianMS(latencies), "p50-ms")
	b.ReportMetric(float64(slices.Max(latencies).Microseconds())/1000, "max-ms")
	b.ReportMetric(dispatch.medianMS(), "dispatch-p50-ms")
	b.ReportMetric(benchMedianMS(s3), "s3-p50-ms")
	if holdFor > 0 {
		b.ReportMetric(float64(held), "held")
		if n := heldTooLong.Load(); n > 0 {
			b.Logf("%d deliveries were held the full %s before the sub-benchmark ended", n, holdFor)
		}
	}
	for i, user := range users {
		hooks.answer(user, nil)
		if n := len(hooks.deliveries(user)); n != 1 {
			b.Fatalf("MOC %s: %d deliveries, want 1", mocs[i], n)
		}
		var status string
		if err := db.QueryRow(context.Background(), `SELECT status FROM outbox WHERE moc_id = $1 AND kind = 'webhook'`, mocs[i]).Scan(&status); err != nil || status != "done" {
			b.Fatalf("MOC %s: outbox row %q, %v", mocs[i], status, err)
		}
	}
}

// benchIdle waits until the async functions started so far are done.
func benchIdle(b *testing.B) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := invokeAPI.Wait(ctx); err != nil {
		b.Fatalf("async functions still running: %v", err)
	}
}

// benchTimedFollowUps times the service's Dispatch calls.
type benchTimedFollowUps struct {
	upload.FollowUps
	benchTimings
}

func (f *benchTimedFollowUps) Dispatch(ctx context.Context, work []upload.FollowUp) {
	defer f.since(time.Now())
	f.FollowUps.Dispatch(ctx, work)
}

// benchTimedBlob adds up the time spent in the S3 calls finalize makes.
type benchTimedBlob struct {
	upload.Blob
	total atomic.Int64 // nanoseconds
}

func (t *benchTimedBlob) since(start time.Time) { t.total.Add(int64(time.Since(start))) }

func (t *benchTimedBlob) CompleteMultipartUpload(ctx context.Context, key, id string, parts []upload.CompletedPart) error {
	defer t.since(time.Now())
	return t.Blob.CompleteMultipartUpload(ctx, key, id, parts)
}

func (t *benchTimedBlob) ListParts(ctx context.Context, key, uploadID string) ([]upload.StoredPart, error) {
	defer t.since(time.Now())
	return t.Blob.ListParts(ctx, key, uploadID)
}

func (t *benchTimedBlob) Head(ctx context.Context, key string) (int64, error) {
	defer t.since(time.Now())
	return t.Blob.Head(ctx, key)
}

func (t *benchTimedBlob) ReadHead(ctx context.Context, key string, n int64) ([]byte, int64, error) {
	defer t.since(time.Now())
	return t.Blob.ReadHead(ctx, key, n)
}
