package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// recordingProgress keeps what the service announces, in order.
type recordingProgress struct {
	mu     sync.Mutex
	events []string
}

func (r *recordingProgress) PartsCompleted(_ context.Context, parts []upload.PartCompleted) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range parts {
		r.events = append(r.events, fmt.Sprintf("part %d %d/%d", p.PartNumber, p.CompletedParts, p.TotalParts))
	}
}

func (r *recordingProgress) SessionFinalized(_ context.Context, ev upload.SessionFinalized) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, "finalized "+ev.MocID)
}

// take returns the events so far and forgets them.
func (r *recordingProgress) take() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := strings.Join(r.events, ", ")
	r.events = nil
	return s
}

func withRecordingProgress(t *testing.T) *recordingProgress {
	rec := &recordingProgress{}
	old := st.App.Service.Progress
	st.App.Service.Progress = rec
	t.Cleanup(func() { st.App.Service.Progress = old })
	return rec
}

// The service announces each part it records with the count of distinct
// parts: out of order, re-uploaded, batched, and learnt from S3 when the
// parts went straight there; then the finalized session, once.
func TestProgressAnnouncements(t *testing.T) {
	rec := withRecordingProgress(t)
	c := newClient(t, userFor(t))
	pdf := pdfBytes(11 * mib) // 3 parts
	other := pdfBytes(6 * mib)
	sessionID := createSession(t, c, pdfDecl("a.pdf", len(pdf)), pdfDecl("b.pdf", len(other)))
	a := registerFile(t, c, sessionID, pdfDecl("a.pdf", len(pdf)))["fileId"].(string)
	b := registerFile(t, c, sessionID, pdfDecl("b.pdf", len(other)))["fileId"].(string)
	if got := rec.take(); got != "" {
		t.Fatalf("announced before any part: %s", got)
	}

	c.put(partPath(sessionID, a, 3), pdf[10*mib:]).data(t, 200)
	c.put(partPath(sessionID, a, 1), pdf[:5*mib]).data(t, 200)
	c.put(partPath(sessionID, a, 1), pdf[:5*mib]).data(t, 200) // again: still 2 parts
	c.put(partPath(sessionID, a, 2), pdf[5*mib:10*mib]).data(t, 200)
	if got, want := rec.take(), "part 3 1/3, part 1 2/3, part 1 2/3, part 2 3/3"; got != want {
		t.Fatalf("proxied parts announced %q, want %q", got, want)
	}

	// A refused part is not announced.
	c.put(partPath(sessionID, b, 1), other[:4*mib]).fail(t, 400, "INVALID_PART_SIZE")
	// Parts PUT straight to S3 are announced when the service learns of
	// them (here: reading the session), once.
	urls := c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+b+"/parts/urls", nil).data(t, 200)["parts"].([]any)
	for i, p := range urls {
		p := p.(map[string]any)
		chunk := other[i*5*mib : min((i+1)*5*mib, len(other))]
		if status, _, msg := sendPresigned(t, "PUT", p["url"].(string), p["headers"], chunk); status != 200 {
			t.Fatalf("PUT part %d: %d %s", i+1, status, msg)
		}
	}
	if got := rec.take(); got != "" {
		t.Fatalf("announced before the service learnt of the parts: %s", got)
	}
	sessionFiles(t, c, sessionID)
	if got, want := rec.take(), "part 1 1/2, part 2 2/2"; got != want {
		t.Fatalf("presigned parts announced %q, want %q", got, want)
	}
	sessionFiles(t, c, sessionID)
	if got := rec.take(); got != "" {
		t.Fatalf("announced again on a second read: %s", got)
	}

	moc := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Announced"}).data(t, 201)
	if got, want := rec.take(), "finalized "+moc["id"].(string); got != want {
		t.Fatalf("finalize announced %q, want %q", got, want)
	}
	c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Announced"}).data(t, 200)
	if got := rec.take(); got != "" {
		t.Fatalf("a repeat finalize announced %q", got)
	}
}
