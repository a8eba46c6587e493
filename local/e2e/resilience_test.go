package e2e

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// uploadedSession returns a session with a fully uploaded one-part PDF.
func uploadedSession(t *testing.T, c client) string {
	t.Helper()
	sessionID, _, _ := uploadedFile(t, c)
	return sessionID
}

// uploadedFile makes a session of one PDF, a.pdf, uploaded in one part
// through the API and not completed, and returns the session's and the
// file's ids and the PDF's bytes.
func uploadedFile(t *testing.T, c client) (sessionID, fileID string, pdf []byte) {
	t.Helper()
	pdf = pdfBytes(2048)
	sessionID = createSession(t, c, pdfDecl("a.pdf", len(pdf)))
	fileID = registerFile(t, c, sessionID, pdfDecl("a.pdf", len(pdf)))["fileId"].(string)
	uploadAll(t, c, sessionID, fileID, pdf)
	return sessionID, fileID, pdf
}

func countMocs(t *testing.T, sessionID string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM moc_instructions WHERE upload_session_id = $1`, sessionID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Concurrent finalizes of one session: one creates the MOC, the others
// wait for it and get it back, resumed; never a duplicate, 409 or 500.
func TestConcurrentFinalize(t *testing.T) {
	c := newClient(t, userFor(t))
	sessionID := uploadedSession(t, c)
	const clients = 4
	results := make([]response, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Race Track"})
		}()
	}
	wg.Wait()
	created, resumed := 0, 0
	ids := map[any]bool{}
	for _, r := range results {
		switch r.Status {
		case 201:
			created++
			ids[r.data(t, 201)["id"]] = true
		case 200:
			d := r.data(t, 200)
			if d["resumed"] != true || d["idempotent"] != true {
				t.Fatalf("200 without resumed: %s", r.Raw)
			}
			resumed++
			ids[d["id"]] = true
		default:
			t.Fatalf("finalize answered %d: %s", r.Status, r.Raw)
		}
	}
	if created != 1 || resumed != clients-1 || len(ids) != 1 || countMocs(t, sessionID) != 1 {
		t.Fatalf("created %d, resumed %d, distinct ids %d, MOC rows %d", created, resumed, len(ids), countMocs(t, sessionID))
	}
}

// A MOC whose session was never marked completed (a crash of an older
// writer between the two) is found and returned, and the session mended.
func TestFinalizeResumesAfterCrash(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, userFor(t))
	sessionID := uploadedSession(t, c)
	moc := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Crash Site"}).data(t, 201)
	_, err := db.Exec(ctx, `UPDATE upload_sessions SET status = 'active', finalized_at = NULL, moc_instruction_id = NULL WHERE id = $1`, sessionID)
	if err != nil {
		t.Fatal(err)
	}
	again := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Crash Site"}).data(t, 200)
	if again["id"] != moc["id"] || again["resumed"] != true || countMocs(t, sessionID) != 1 {
		t.Fatalf("resume: %v", again)
	}
	var status, ref string
	if err := db.QueryRow(ctx, `SELECT status, moc_instruction_id::text FROM upload_sessions WHERE id = $1`, sessionID).Scan(&status, &ref); err != nil {
		t.Fatal(err)
	}
	if status != "completed" || ref != moc["id"] {
		t.Fatalf("session not mended: %s %s", status, ref)
	}
}

// faultyBlob fails its n-th call (counting every method) as unreachable
// storage, and passes every other call to the real S3 adapter.
type faultyBlob struct {
	upload.Blob
	n     int64
	calls atomic.Int64
}

func (f *faultyBlob) fault(op string) error {
	if f.calls.Add(1) == f.n {
		return fmt.Errorf("injected %s: %w", op, upload.ErrUnavailable)
	}
	return nil
}

func (f *faultyBlob) CreateMultipartUpload(ctx context.Context, key, ct string) (string, error) {
	if err := f.fault("create"); err != nil {
		return "", err
	}
	return f.Blob.CreateMultipartUpload(ctx, key, ct)
}

func (f *faultyBlob) UploadPart(ctx context.Context, key, id string, n int, body io.Reader, size int64, md5 string) (string, error) {
	if err := f.fault("upload part"); err != nil {
		return "", err
	}
	return f.Blob.UploadPart(ctx, key, id, n, body, size, md5)
}

func (f *faultyBlob) ListParts(ctx context.Context, key, id string) ([]upload.StoredPart, error) {
	if err := f.fault("list parts"); err != nil {
		return nil, err
	}
	return f.Blob.ListParts(ctx, key, id)
}

func (f *faultyBlob) Head(ctx context.Context, key string) (int64, error) {
	if err := f.fault("head"); err != nil {
		return 0, err
	}
	return f.Blob.Head(ctx, key)
}

func (f *faultyBlob) ReadHead(ctx context.Context, key string, n int64) ([]byte, int64, error) {
	if err := f.fault("read head"); err != nil {
		return nil, 0, err
	}
	return f.Blob.ReadHead(ctx, key, n)
}

// withFaultyBlob makes the stack's storage fail its n-th call until the
// test ends. The e2e tests do not run in parallel, so swapping is safe.
func withFaultyBlob(t *testing.T, n int64) {
	real := st.App.Service.Blob
	st.App.Service.Blob = &faultyBlob{Blob: real, n: n}
	t.Cleanup(func() { st.App.Service.Blob = real })
}

// When storage is unreachable the client gets 503 S3_UNAVAILABLE,
// retryable, and nothing is half written; the retry then succeeds.
func TestStorageUnavailable(t *testing.T) {
	c := newClient(t, userFor(t))
	pdf := pdfBytes(11 * mib)
	sessionID := createSession(t, c, pdfDecl("a.pdf", len(pdf)))
	f := registerFile(t, c, sessionID, pdfDecl("a.pdf", len(pdf)))
	fileID := f["fileId"].(string)

	t.Run("upload part", func(t *testing.T) {
		withFaultyBlob(t, 3)
		c.put(partPath(sessionID, fileID, 1), pdf[:5*mib]).data(t, 200)
		c.put(partPath(sessionID, fileID, 2), pdf[5*mib:10*mib]).data(t, 200)
		unchanged(t, func() {
			d := c.put(partPath(sessionID, fileID, 3), pdf[10*mib:]).fail(t, 503, "S3_UNAVAILABLE")
			if d["retryable"] != true {
				t.Fatalf("details: %v", d)
			}
		})
		c.put(partPath(sessionID, fileID, 3), pdf[10*mib:]).data(t, 200)
	})

	// Reading a session is a resume hint: without storage it shows what
	// the database recorded. Completing needs storage: 503.
	t.Run("get session", func(t *testing.T) {
		withFaultyBlob(t, 1)
		unchanged(t, func() {
			if f := sessionFiles(t, c, sessionID)[fileID]; len(f["uploadedParts"].([]any)) != 3 || f["status"] != "uploading" {
				t.Fatalf("session file: %v", f)
			}
		})
	})
	t.Run("complete file", func(t *testing.T) {
		withFaultyBlob(t, 1)
		unchanged(t, func() {
			c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+fileID+"/complete", nil).fail(t, 503, "S3_UNAVAILABLE")
		})
	})

	t.Run("register file", func(t *testing.T) {
		withFaultyBlob(t, 1)
		unchanged(t, func() {
			c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files", pngDecl("b.png", 10)).fail(t, 503, "S3_UNAVAILABLE")
		})
	})

	t.Run("finalize", func(t *testing.T) {
		// Complete first, so that finalize's first storage call is the check.
		c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+fileID+"/complete", nil).data(t, 200)
		withFaultyBlob(t, 1)
		unchanged(t, func() {
			c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Flaky"}).fail(t, 503, "S3_UNAVAILABLE")
		})
		c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Flaky"}).data(t, 201)
	})
}

// laxBlob is an S3-compatible store that ignores Content-MD5.
type laxBlob struct{ upload.Blob }

func (l laxBlob) UploadPart(ctx context.Context, key, id string, n int, body io.Reader, size int64, _ string) (string, error) {
	return l.Blob.UploadPart(ctx, key, id, n, body, size, "")
}

// The service checks Content-MD5 itself, for stores that do not.
func TestContentMD5WithLaxStore(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, userFor(t))
	pdf := pdfBytes(1000)
	sessionID := createSession(t, c, pdfDecl("a.pdf", len(pdf)))
	fileID := registerFile(t, c, sessionID, pdfDecl("a.pdf", len(pdf)))["fileId"].(string)
	real := st.App.Service.Blob
	st.App.Service.Blob = laxBlob{real}
	t.Cleanup(func() { st.App.Service.Blob = real })

	c.put(partPath(sessionID, fileID, 1), pdf, "Content-MD5", contentMD5([]byte("other"))).fail(t, 400, "CHECKSUM_MISMATCH")
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM upload_session_parts WHERE file_id = $1`, fileID).Scan(&n); err != nil || n != 0 {
		t.Fatalf("a refused part was recorded: %d, %v", n, err)
	}
	d := c.put(partPath(sessionID, fileID, 1), pdf, "Content-MD5", contentMD5(pdf)).data(t, 200)
	var md5hex string
	if err := db.QueryRow(ctx, `SELECT md5 FROM upload_session_parts WHERE file_id = $1 AND part_number = 1`, fileID).Scan(&md5hex); err != nil {
		t.Fatal(err)
	}
	if sum := md5.Sum(pdf); md5hex != hex.EncodeToString(sum[:]) || d["size"] != float64(len(pdf)) {
		t.Fatalf("recorded md5 %s, response %v", md5hex, d)
	}
	// Without Content-MD5 the service hashes nothing: the part sent again
	// has no MD5, not the one of the bytes it replaced.
	c.put(partPath(sessionID, fileID, 1), pdf).data(t, 200)
	var noMD5 *string
	if err := db.QueryRow(ctx, `SELECT md5 FROM upload_session_parts WHERE file_id = $1 AND part_number = 1`, fileID).Scan(&noMD5); err != nil {
		t.Fatal(err)
	}
	if noMD5 != nil {
		t.Fatalf("a part sent without Content-MD5 has md5 %q, want NULL", *noMD5)
	}
}
