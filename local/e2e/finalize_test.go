package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/shared/postgres"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// countingBlob counts the S3 requests finalize can make, by operation.
type countingBlob struct {
	upload.Blob
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingBlob) count(op string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[op]++
}

func (c *countingBlob) ListParts(ctx context.Context, key, id string) ([]upload.StoredPart, error) {
	c.count("ListParts")
	return c.Blob.ListParts(ctx, key, id)
}

func (c *countingBlob) CompleteMultipartUpload(ctx context.Context, key, id string, parts []upload.CompletedPart) error {
	c.count("CompleteMultipartUpload")
	return c.Blob.CompleteMultipartUpload(ctx, key, id, parts)
}

func (c *countingBlob) AbortMultipartUpload(ctx context.Context, key, id string) error {
	c.count("AbortMultipartUpload")
	return c.Blob.AbortMultipartUpload(ctx, key, id)
}

func (c *countingBlob) Head(ctx context.Context, key string) (int64, error) {
	c.count("HeadObject")
	return c.Blob.Head(ctx, key)
}

func (c *countingBlob) ReadHead(ctx context.Context, key string, n int64) ([]byte, int64, error) {
	c.count("GetObject range")
	return c.Blob.ReadHead(ctx, key, n)
}

func (c *countingBlob) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	c.count("GetObject")
	return c.Blob.Open(ctx, key)
}

// withBlob puts blob in front of the stack's storage until the test ends.
// The e2e tests do not run in parallel, so swapping is safe.
func withBlob(t *testing.T, wrap func(upload.Blob) upload.Blob) {
	real := st.App.Service.Blob
	st.App.Service.Blob = wrap(real)
	t.Cleanup(func() { st.App.Service.Blob = real })
}

// Finalize makes the fewest S3 requests a file allows: one ranged GET for
// a file completed earlier (no HEAD: the GET's Content-Range carries the
// size); ListParts, CompleteMultipartUpload and the GET for a file whose
// parts are all there; ListParts, the GET and the abort of its unused
// multipart upload for a file PUT whole; the whole object only for a file
// with a declared checksum.
func TestFinalizeRoundTrips(t *testing.T) {
	c := newClient(t, userFor(t))
	pdf := pdfBytes(6 * mib)
	img := pngBytes(t)
	parts := []byte(strings.Repeat("part,qty\n3001,4\n", 60))
	sumed := pngBytes(t)
	sessionID := createSession(t, c, pdfDecl("done.pdf", len(pdf)), pngDecl("whole.png", len(img)))
	done := registerFile(t, c, sessionID, pdfDecl("done.pdf", len(pdf)))["fileId"].(string)
	uploadAll(t, c, sessionID, done, pdf)
	c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+done+"/complete", nil).data(t, 200)
	whole := registerFile(t, c, sessionID, pngDecl("whole.png", len(img)))
	putWhole(t, whole, "image/png", img)
	open := registerFile(t, c, sessionID, fileDecl{"parts-list", "p.csv", len(parts), "text/csv", "csv"})["fileId"].(string)
	uploadAll(t, c, sessionID, open, parts)
	withSum := c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files", map[string]any{
		"category": "image", "name": "sum.png", "size": len(sumed), "type": "image/png", "ext": "png",
		"checksums": map[string]any{"sha256": sha256Hex(sumed)},
	}).data(t, 201)
	uploadAll(t, c, sessionID, withSum["fileId"].(string), sumed)

	counter := &countingBlob{calls: map[string]int{}}
	withBlob(t, func(b upload.Blob) upload.Blob { counter.Blob = b; return counter })
	c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Round Trips"}).data(t, 201)
	want := map[string]int{
		"GetObject range":         4, // every file
		"ListParts":               3, // whole.png, p.csv, sum.png
		"CompleteMultipartUpload": 2, // p.csv, sum.png
		"AbortMultipartUpload":    1, // whole.png
		"GetObject":               1, // sum.png's SHA-256
	}
	if fmt.Sprint(counter.calls) != fmt.Sprint(want) {
		t.Fatalf("S3 requests: %v, want %v", counter.calls, want)
	}
}

// gateBlob holds every ranged GET, CreateMultipartUpload and
// AbortMultipartUpload until release is closed, and counts the callers
// waiting.
type gateBlob struct {
	upload.Blob
	waiting atomic.Int32
	release chan struct{}
}

func (g *gateBlob) wait(ctx context.Context) error {
	g.waiting.Add(1)
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gateBlob) ReadHead(ctx context.Context, key string, n int64) ([]byte, int64, error) {
	if err := g.wait(ctx); err != nil {
		return nil, 0, err
	}
	return g.Blob.ReadHead(ctx, key, n)
}

func (g *gateBlob) CreateMultipartUpload(ctx context.Context, key, ct string) (string, error) {
	if err := g.wait(ctx); err != nil {
		return "", err
	}
	return g.Blob.CreateMultipartUpload(ctx, key, ct)
}

func (g *gateBlob) AbortMultipartUpload(ctx context.Context, key, id string) error {
	if err := g.wait(ctx); err != nil {
		return err
	}
	return g.Blob.AbortMultipartUpload(ctx, key, id)
}

// Finalize holds no database connection while it waits on S3: 20
// finalizes of different sessions all reach S3 at once through the
// stack's pool of 4 connections, which none of them holds meanwhile, and
// each then makes its MOC.
func TestConcurrentFinalizesHoldNoConnectionOnS3(t *testing.T) {
	const n = 20
	pool := st.App.Service.Store.(*postgres.Store).Pool()
	if max := pool.Config().MaxConns; max != 4 {
		t.Fatalf("the stack's pool has %d connections, want 4", max)
	}
	type session struct {
		c  client
		id string
	}
	sessions := make([]session, n)
	for i := range sessions {
		c := newClient(t, fmt.Sprintf("%s-%d", userFor(t), i))
		sessions[i] = session{c, uploadedSession(t, c)}
	}
	gate := &gateBlob{release: make(chan struct{})}
	withBlob(t, func(b upload.Blob) upload.Blob { gate.Blob = b; return gate })

	results := make(chan response, n)
	for _, s := range sessions {
		go func() {
			results <- s.c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": s.id, "title": "Pooled"})
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for gate.waiting.Load() < n {
		if time.Now().After(deadline) {
			close(gate.release)
			t.Fatalf("only %d of %d finalizes reached S3 at once: the others wait for a connection", gate.waiting.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if held := pool.Stat().AcquiredConns(); held != 0 {
		close(gate.release)
		t.Fatalf("%d connections held while every finalize waits on S3", held)
	}
	close(gate.release)
	for range n {
		(<-results).data(t, 201)
	}
}

// A file registered while finalize checks the others is not left out of
// the MOC: finalize sees the session changed, starts over, and refuses
// the session while the new file has no bytes.
func TestFinalizeSeesFileRegisteredMeanwhile(t *testing.T) {
	c := newClient(t, userFor(t))
	sessionID := uploadedSession(t, c)

	var once sync.Once
	var late map[string]any
	withBlob(t, func(b upload.Blob) upload.Blob {
		return hookBlob{Blob: b, onReadHead: func() {
			once.Do(func() { late = registerFile(t, c, sessionID, pngDecl("late.png", 100)) })
		}}
	})
	d := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Late"}).fail(t, 400, "FILE_VALIDATION_FAILED")
	files := d["files"].([]any)
	if len(files) != 1 || files[0].(map[string]any)["fileId"] != late["fileId"] || files[0].(map[string]any)["reason"] != "missing" {
		t.Fatalf("details: %v", d)
	}
}

// hookBlob calls onReadHead before each ranged GET.
type hookBlob struct {
	upload.Blob
	onReadHead func()
}

func (h hookBlob) ReadHead(ctx context.Context, key string, n int64) ([]byte, int64, error) {
	h.onReadHead()
	return h.Blob.ReadHead(ctx, key, n)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// A session that changes during every attempt is not finalized: after
// three attempts finalize answers 409 CONFLICT, retryable, and makes no
// MOC.
func TestFinalizeGivesUpWhenTheSessionKeepsChanging(t *testing.T) {
	c := newClient(t, userFor(t))
	sessionID := uploadedSession(t, c)

	var n atomic.Int32
	withBlob(t, func(b upload.Blob) upload.Blob {
		return hookBlob{Blob: b, onReadHead: func() {
			registerFile(t, c, sessionID, pngDecl(fmt.Sprintf("late%d.png", n.Add(1)), 100))
		}}
	})
	d := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Busy"}).fail(t, 409, "CONFLICT")
	if d["retryable"] != true || d["suggestedSlug"] != nil {
		t.Fatalf("details: %v", d)
	}
	var mocs int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM moc_instructions WHERE upload_session_id = $1`, sessionID).Scan(&mocs); err != nil {
		t.Fatal(err)
	}
	if mocs != 0 {
		t.Fatalf("%d MOCs made", mocs)
	}
}

// Registering a file and aborting a session hold no database connection
// while they wait on S3: 8 registrations and 8 aborts, of different
// sessions, all reach S3 at once through the pool of 4 connections, none
// holding one meanwhile, and then succeed.
func TestRegisterAndAbortHoldNoConnectionOnS3(t *testing.T) {
	const n = 8
	pool := st.App.Service.Store.(*postgres.Store).Pool()
	type session struct {
		c  client
		id string
	}
	var toRegister, toAbort []session
	for i := range 2 * n {
		c := newClient(t, fmt.Sprintf("%s-%d", userFor(t), i))
		id := createSession(t, c, pdfDecl("a.pdf", 1000))
		if i < n {
			toRegister = append(toRegister, session{c, id})
			continue
		}
		registerFile(t, c, id, pdfDecl("a.pdf", 1000)) // an open upload to abort
		toAbort = append(toAbort, session{c, id})
	}
	gate := &gateBlob{release: make(chan struct{})}
	withBlob(t, func(b upload.Blob) upload.Blob { gate.Blob = b; return gate })
	results := make(chan func(), 2*n)
	for _, s := range toRegister {
		go func() {
			r := s.c.json("POST", "/api/mocs/uploads/sessions/"+s.id+"/files", pdfDecl("b.pdf", 1000))
			results <- func() { r.data(t, 201) }
		}()
	}
	for _, s := range toAbort {
		go func() {
			r := s.c.json("DELETE", "/api/mocs/uploads/sessions/"+s.id, nil)
			results <- func() {
				if r.Status != 204 {
					t.Errorf("abort: %d %s", r.Status, r.Raw)
				}
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for gate.waiting.Load() < 2*n {
		if time.Now().After(deadline) {
			close(gate.release)
			t.Fatalf("only %d of %d requests reached S3 at once: the others wait for a connection", gate.waiting.Load(), 2*n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	held := pool.Stat().AcquiredConns()
	close(gate.release)
	for range 2 * n {
		(<-results)()
	}
	if held != 0 {
		t.Fatalf("%d connections held while every request waits on S3", held)
	}
}

// failingAbortBlob fails every AbortMultipartUpload as unreachable
// storage.
type failingAbortBlob struct{ upload.Blob }

func (failingAbortBlob) AbortMultipartUpload(context.Context, string, string) error {
	return fmt.Errorf("injected abort: %w", upload.ErrUnavailable)
}

// An abort whose S3 calls fail has cancelled the session all the same
// (nothing more is recorded) and answers a retryable 503; aborting again
// aborts the uploads left open.
func TestAbortRetriedAfterStorageFailed(t *testing.T) {
	c := newClient(t, userFor(t))
	sessionID := createSession(t, c, pdfDecl("a.pdf", 1000))
	fileID := registerFile(t, c, sessionID, pdfDecl("a.pdf", 1000))["fileId"].(string)
	real := st.App.Service.Blob
	withBlob(t, func(b upload.Blob) upload.Blob { return failingAbortBlob{b} })
	d := c.json("DELETE", "/api/mocs/uploads/sessions/"+sessionID, nil).fail(t, 503, "S3_UNAVAILABLE")
	if d["retryable"] != true {
		t.Fatalf("details: %v", d)
	}
	c.put(partPath(sessionID, fileID, 1), pdfBytes(1000)).fail(t, 400, "SESSION_NOT_ACTIVE")

	st.App.Service.Blob = real
	if r := c.json("DELETE", "/api/mocs/uploads/sessions/"+sessionID, nil); r.Status != 204 {
		t.Fatalf("abort again: %d %s", r.Status, r.Raw)
	}
	var uploadID, key string
	if err := db.QueryRow(context.Background(), `SELECT upload_id, s3_key FROM upload_session_files WHERE id = $1`, fileID).Scan(&uploadID, &key); err != nil {
		t.Fatal(err)
	}
	if _, err := st.App.Service.Blob.ListParts(context.Background(), key, uploadID); !errors.Is(err, upload.ErrNotFound) {
		t.Fatalf("the upload is still open after the second abort: %v", err)
	}
}

// inFlightBlob plays a concurrent finalize completing the upload while
// this one checks the file: the first ListParts completes the upload
// itself and answers as S3 does once it has (NoSuchUpload), and the first
// ranged GET does not see the object yet.
type inFlightBlob struct {
	upload.Blob
	t              *testing.T
	listed, peeked atomic.Bool
}

func (b *inFlightBlob) ListParts(ctx context.Context, key, id string) ([]upload.StoredPart, error) {
	if b.listed.Swap(true) {
		return b.Blob.ListParts(ctx, key, id)
	}
	parts, err := b.Blob.ListParts(ctx, key, id)
	if err != nil {
		b.t.Fatal(err)
	}
	cps := make([]upload.CompletedPart, len(parts))
	for i, p := range parts {
		cps[i] = upload.CompletedPart{PartNumber: p.PartNumber, ETag: p.ETag}
	}
	if err := b.Blob.CompleteMultipartUpload(ctx, key, id, cps); err != nil {
		b.t.Fatal(err)
	}
	return nil, fmt.Errorf("injected NoSuchUpload: %w", upload.ErrNotFound)
}

func (b *inFlightBlob) ReadHead(ctx context.Context, key string, n int64) ([]byte, int64, error) {
	if !b.peeked.Swap(true) {
		return nil, 0, fmt.Errorf("injected NoSuchKey: %w", upload.ErrNotFound)
	}
	return b.Blob.ReadHead(ctx, key, n)
}

// A file whose upload another request completes while finalize checks it
// (neither the upload nor the object visible for a moment) is not called
// missing: finalize starts over and finds the object.
func TestFinalizeFileCompletedMeanwhile(t *testing.T) {
	c := newClient(t, userFor(t))
	sessionID, fileID, pdf := uploadedFile(t, c)
	withBlob(t, func(b upload.Blob) upload.Blob { return &inFlightBlob{Blob: b, t: t} })
	finalizeAndCheckBytes(t, c, sessionID, "Meanwhile", map[string][]byte{fileID: pdf})
}

// A completed file whose object is gone fails finalize as missing and is
// marked failed, so that registering its name again replaces it and the
// session can still be finalized.
func TestFinalizeCompletedFileWithoutObject(t *testing.T) {
	c := newClient(t, userFor(t))
	sessionID, fileID, pdf := uploadedFile(t, c)
	c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+fileID+"/complete", nil).data(t, 200)
	var key string
	if err := db.QueryRow(context.Background(), `SELECT s3_key FROM upload_session_files WHERE id = $1`, fileID).Scan(&key); err != nil {
		t.Fatal(err)
	}
	if err := st.App.Service.Blob.DeleteObject(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	d := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Gone"}).fail(t, 400, "FILE_VALIDATION_FAILED")
	if f := d["files"].([]any)[0].(map[string]any); f["reason"] != "missing" || f["fileId"] != fileID {
		t.Fatalf("details: %v", d)
	}
	if f := sessionFiles(t, c, sessionID)[fileID]; f["status"] != "failed" {
		t.Fatalf("session file: %v", f)
	}
	again := registerFile(t, c, sessionID, pdfDecl("a.pdf", len(pdf)))["fileId"].(string)
	uploadAll(t, c, sessionID, again, pdf)
	finalizeAndCheckBytes(t, c, sessionID, "Gone", map[string][]byte{again: pdf})
}

// Reading a session that S3 has nothing new for writes nothing and so
// takes no lock: it answers while another transaction holds the session's
// row (an abort or a finalize's commit, say).
func TestGetSessionTakesNoLockWhenNothingIsNew(t *testing.T) {
	c := newClient(t, userFor(t))
	sessionID := uploadedSession(t, c)

	ctx := context.Background()
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT 1 FROM upload_sessions WHERE id = $1 FOR UPDATE`, sessionID); err != nil {
		t.Fatal(err)
	}
	got := make(chan response, 1)
	go func() { got <- c.json("GET", "/api/mocs/uploads/sessions/"+sessionID, nil) }()
	select {
	case r := <-got:
		if f := r.data(t, 200)["files"].([]any)[0].(map[string]any); len(f["uploadedParts"].([]any)) != 1 {
			t.Fatalf("session file: %v", f)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("GET session waited for the session's row lock")
	}
}
