package followup_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/webhook"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// receiver is a webhook endpoint: it verifies each request's signature and
// answers with status(n) for the n-th request (1-based).
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests []received
}

type received struct {
	Header   http.Header
	Body     []byte
	Verified error
}

func newReceiver(t *testing.T, status func(n int) int) *receiver {
	t.Helper()
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.requests = append(r.requests, received{req.Header.Clone(), body, webhook.Verify(secret, req.Header, body)})
		n := len(r.requests)
		r.mu.Unlock()
		w.WriteHeader(status(n))
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) got() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.requests...)
}

func (e *env) webhooks(url string) *followup.Webhooks {
	return &followup.Webhooks{Store: e.store, Logger: e.log, Sender: &webhook.Sender{
		URL: url, Secret: secret, BaseDelay: time.Millisecond, Logger: e.log}}
}

func TestWebhookDelivered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := newReceiver(t, func(int) int { return http.StatusNoContent })
	m := e.finalize(t, "u1", "Castle", nil)
	job := e.job(t, m.ID, followup.KindWebhook)
	hooks := e.webhooks(rcv.URL)
	if err := hooks.Run(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	reqs := rcv.got()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	if reqs[0].Verified != nil {
		t.Errorf("signature does not verify: %v", reqs[0].Verified)
	}
	if id := reqs[0].Header.Get("webhook-id"); id != job.OutboxID {
		t.Errorf("webhook-id = %s, want the outbox row's id %s", id, job.OutboxID)
	}
	var p map[string]any
	if err := json.Unmarshal(reqs[0].Body, &p); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"event": "moc.finalized", "mocId": m.ID, "sessionId": m.UploadSessionID,
		"userId": "u1", "timestamp": m.FinalizedAt.UTC().Format(time.RFC3339Nano)}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("payload %s = %v, want %v (%s)", k, p[k], v, reqs[0].Body)
		}
	}
	if r := e.row(t, job.OutboxID); r.Status != followup.StatusDone {
		t.Errorf("row = %+v, want done", r)
	}
	// Delivered once: the same job again sends nothing.
	if err := hooks.Run(t.Context(), job); err != nil || len(rcv.got()) != 1 {
		t.Errorf("repeated job: %v, %d requests", err, len(rcv.got()))
	}
}

// A receiver that refuses (410) gets one request; one that keeps failing
// (500) gets the Sender's 4. Either way the row is failed with the reason,
// logged at ERROR, and Run returns nil so Lambda does not run it again.
func TestWebhookFailed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		status   int
		requests int
		reason   string
	}{
		{"rejected", http.StatusGone, 1, "rejected"},
		{"exhausted", http.StatusInternalServerError, 4, "every attempt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			rcv := newReceiver(t, func(int) int { return tc.status })
			m := e.finalize(t, "u1", "Castle", nil)
			job := e.job(t, m.ID, followup.KindWebhook)
			if err := e.webhooks(rcv.URL).Run(t.Context(), job); err != nil {
				t.Fatalf("Run = %v, want nil", err)
			}
			reqs := rcv.got()
			if len(reqs) != tc.requests {
				t.Errorf("%d requests, want %d", len(reqs), tc.requests)
			}
			for i, r := range reqs {
				if r.Header.Get("webhook-id") != job.OutboxID || r.Verified != nil {
					t.Errorf("request %d: id %s, verified %v", i+1, r.Header.Get("webhook-id"), r.Verified)
				}
			}
			r := e.row(t, job.OutboxID)
			if r.Status != followup.StatusFailed {
				t.Errorf("row = %+v, want failed", r)
			}
			mustContain(t, "last_error", r.LastError, tc.reason)
			mustContain(t, "log", e.logs.String(), `"level":"ERROR"`, "outbox row marked failed")
		})
	}
}

// Delivery cut short by the function's deadline leaves the row pending for
// the Sweeper.
func TestWebhookCutShort(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	m := e.finalize(t, "u1", "Castle", nil)
	job := e.job(t, m.ID, followup.KindWebhook)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := e.webhooks(slow.URL).Run(ctx, job); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	r := e.row(t, job.OutboxID)
	if r.Status != followup.StatusPending || r.LastError == "" {
		t.Errorf("row = %+v, want pending with the reason", r)
	}
}

// A Webhook function without a URL fails the job rather than leaving it.
func TestWebhookWithoutURL(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.finalize(t, "u1", "Castle", nil)
	job := e.job(t, m.ID, followup.KindWebhook)
	if err := (&followup.Webhooks{Store: e.store, Logger: e.log}).Run(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	r := e.row(t, job.OutboxID)
	if r.Status != followup.StatusFailed {
		t.Errorf("row = %+v, want failed", r)
	}
	mustContain(t, "last_error", r.LastError, "MOC_FINALIZE_WEBHOOK_URL")
}
