package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// recordingProgress keeps what the service announces, call by call, in
// order.
type recordingProgress struct {
	mu    sync.Mutex
	calls []string
}

// Announce records one call as its events, comma-separated.
func (r *recordingProgress) Announce(_ context.Context, ev upload.Events) {
	var events []string
	for _, p := range ev.Parts {
		events = append(events, fmt.Sprintf("part %d %d/%d", p.PartNumber, p.CompletedParts, p.TotalParts))
	}
	if ev.Finalized != nil {
		events = append(events, "finalized "+ev.Finalized.MocID)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, strings.Join(events, ", "))
}

// take returns the calls so far, separated by " | ", and forgets them.
func (r *recordingProgress) take() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := strings.Join(r.calls, " | ")
	r.calls = nil
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
// parts went straight there; then the finalized session, once. Each
// request announces in one call: a batch its parts once its workers are
// done, by completedParts; a finalize the parts it learnt, then the
// finalized event.
func TestProgressAnnouncements(t *testing.T) {
	rec := withRecordingProgress(t)
	c := newClient(t, userFor(t))
	pdf := pdfBytes(11 * mib) // 3 parts
	other := pdfBytes(6 * mib)
	batched, batchParts := threeParts()
	late := pdfBytes(1 * mib) // 1 part, PUT straight to S3, learnt at finalize
	sessionID := createSession(t, c, pdfDecl("a.pdf", len(pdf)), pdfDecl("b.pdf", len(other)),
		pdfDecl("c.pdf", len(batched)), pdfDecl("d.pdf", len(late)))
	a := registerFile(t, c, sessionID, pdfDecl("a.pdf", len(pdf)))["fileId"].(string)
	b := registerFile(t, c, sessionID, pdfDecl("b.pdf", len(other)))["fileId"].(string)
	cf := registerFile(t, c, sessionID, pdfDecl("c.pdf", len(batched)))["fileId"].(string)
	d := registerFile(t, c, sessionID, pdfDecl("d.pdf", len(late)))["fileId"].(string)
	if got := rec.take(); got != "" {
		t.Fatalf("announced before any part: %s", got)
	}

	c.put(partPath(sessionID, a, 3), pdf[10*mib:]).data(t, 200)
	c.put(partPath(sessionID, a, 1), pdf[:5*mib]).data(t, 200)
	c.put(partPath(sessionID, a, 1), pdf[:5*mib]).data(t, 200) // again: still 2 parts
	c.put(partPath(sessionID, a, 2), pdf[5*mib:10*mib]).data(t, 200)
	if got, want := rec.take(), "part 3 1/3 | part 1 2/3 | part 1 2/3 | part 2 3/3"; got != want {
		t.Fatalf("proxied parts announced %q, want %q", got, want)
	}

	// A batch: its parts go to S3 concurrently, so which part counted
	// 1, 2 or 3 varies; the one call names them in that order, as the
	// response counted them.
	body, ct := batchForm(t, batchFormPart{name: "part1", data: batchParts[0]},
		batchFormPart{name: "part2", data: batchParts[1]}, batchFormPart{name: "part3", data: batchParts[2]})
	entries := batchEntries(t, c.do("POST", batchPath(sessionID, cf), ct, body).data(t, 200))
	byCount := make([]string, 3)
	for _, e := range entries {
		n, cp := int(e["partNumber"].(float64)), int(e["completedParts"].(float64))
		if cp < 1 || cp > 3 || byCount[cp-1] != "" {
			t.Fatalf("batch entries %v: completedParts not 1..3 once each", entries)
		}
		byCount[cp-1] = fmt.Sprintf("part %d %d/3", n, cp)
	}
	if got, want := rec.take(), strings.Join(byCount, ", "); got != want {
		t.Fatalf("batch announced %q, want one call %q", got, want)
	}

	// A refused part is not announced.
	c.put(partPath(sessionID, b, 1), other[:4*mib]).fail(t, 400, "INVALID_PART_SIZE")
	// Parts PUT straight to S3 are announced when the service learns of
	// them (here: reading the session), once.
	putPresigned := func(fileID string, data []byte) {
		t.Helper()
		urls := c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+fileID+"/parts/urls", nil).data(t, 200)["parts"].([]any)
		for i, p := range urls {
			p := p.(map[string]any)
			chunk := data[i*5*mib : min((i+1)*5*mib, len(data))]
			if status, _, msg := sendPresigned(t, "PUT", p["url"].(string), p["headers"], chunk); status != 200 {
				t.Fatalf("PUT part %d: %d %s", i+1, status, msg)
			}
		}
	}
	putPresigned(b, other)
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

	// A part PUT straight to S3 that only finalize learns of: one call,
	// the part first, then the finalized session.
	putPresigned(d, late)
	moc := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Announced"}).data(t, 201)
	if got, want := rec.take(), "part 1 1/1, finalized "+moc["id"].(string); got != want {
		t.Fatalf("finalize announced %q, want %q", got, want)
	}
	c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Announced"}).data(t, 200)
	if got := rec.take(); got != "" {
		t.Fatalf("a repeat finalize announced %q", got)
	}
}
