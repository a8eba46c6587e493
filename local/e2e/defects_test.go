package e2e

// Issue #11's defects 1-7, each driven through the local stack as a client
// meets it: no 500 from races or odd input, bounded waits, a database
// outage answered as a retryable 503.

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/mocbuilders/moc-upload/local/faultnet"
	"github.com/mocbuilders/moc-upload/shared/postgres"
	"github.com/mocbuilders/moc-upload/shared/s3blob"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// variants returns n PDFs of size bytes that differ in their last bytes.
func variants(n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		b := pdfBytes(size)
		copy(b[size-8:], fmt.Sprintf("v%07d", i))
		out[i] = b
	}
	return out
}

// storedObject reads a file's completed object straight from S3.
func storedObject(t *testing.T, fileID string) []byte {
	t.Helper()
	out, err := s3c.GetObject(context.Background(), &s3.GetObjectInput{
		Bucket: aws.String(st.Config.S3Bucket), Key: aws.String(objectKey(t, fileID)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Defect 1: ten concurrent uploads of one part with different bytes all
// answer 200; complete and finalize then succeed with the bytes S3 kept,
// and the ETag recorded is that part's.
func TestDefectConcurrentPartReuploads(t *testing.T) {
	c := newClient(t, userFor(t))
	const size, writers = 64 << 10, 10
	for trial := range 3 {
		t.Run(fmt.Sprint("trial ", trial), func(t *testing.T) {
			bodies := variants(writers, size)
			sessionID := createSession(t, c, pdfDecl("a.pdf", size))
			fileID := registerFile(t, c, sessionID, pdfDecl("a.pdf", size))["fileId"].(string)
			results := make([]response, writers)
			var wg sync.WaitGroup
			for i := range writers {
				wg.Go(func() { results[i] = c.put(partPath(sessionID, fileID, 1), bodies[i]) })
			}
			wg.Wait()
			for i, r := range results {
				if r.Status != 200 {
					t.Fatalf("upload %d: %d %s", i, r.Status, r.Raw)
				}
			}
			c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+fileID+"/complete", nil).data(t, 200)
			c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": fmt.Sprint("Race ", trial)}).data(t, 201)

			kept := storedObject(t, fileID)
			if !slices.ContainsFunc(bodies, func(b []byte) bool { return bytes.Equal(b, kept) }) {
				t.Fatal("the stored object is none of the uploads")
			}
			sum := md5.Sum(kept)
			if got := recordedParts(t, fileID)[1].etag; got != hex.EncodeToString(sum[:]) {
				t.Errorf("recorded ETag %q is not the kept part's %x", got, sum)
			}
		})
	}
}

// replacingBlob re-uploads part 1 of the upload it completes with other
// bytes just before completing it: a re-upload racing the complete, after
// the parts were listed. S3 then refuses the listed part (InvalidPart).
type replacingBlob struct {
	upload.Blob
	bytes []byte
	once  sync.Once
}

func (b *replacingBlob) CompleteMultipartUpload(ctx context.Context, key, uploadID string, parts []upload.CompletedPart) error {
	var err error
	b.once.Do(func() {
		_, err = b.Blob.UploadPart(ctx, key, uploadID, 1, bytes.NewReader(b.bytes), int64(len(b.bytes)), "")
	})
	if err != nil {
		return err
	}
	return b.Blob.CompleteMultipartUpload(ctx, key, uploadID, parts)
}

// Defect 1: S3's refusal of a part at complete (InvalidPart) is a 409
// INVALID_PART naming the part, never a 500; completing again succeeds
// with the part S3 holds.
func TestDefectCompleteRefusedPart(t *testing.T) {
	c := newClient(t, userFor(t))
	const size = 32 << 10
	bodies := variants(2, size)
	for _, route := range []string{"complete", "finalize"} {
		t.Run(route, func(t *testing.T) {
			sessionID := createSession(t, c, pdfDecl("a.pdf", size))
			fileID := registerFile(t, c, sessionID, pdfDecl("a.pdf", size))["fileId"].(string)
			c.put(partPath(sessionID, fileID, 1), bodies[0]).data(t, 200)

			real := st.App.Service.Blob
			st.App.Service.Blob = &replacingBlob{Blob: real, bytes: bodies[1]}
			t.Cleanup(func() { st.App.Service.Blob = real })
			completePath := "/api/mocs/uploads/sessions/" + sessionID + "/files/" + fileID + "/complete"
			finalize := map[string]any{"uploadSessionId": sessionID, "title": "Refused " + route}
			var r response
			if route == "complete" {
				r = c.json("POST", completePath, nil)
			} else {
				r = c.json("POST", "/api/mocs/uploads/finalize", finalize)
			}
			details := r.fail(t, 409, "INVALID_PART")
			if parts, _ := details["invalidParts"].([]any); len(parts) != 1 || parts[0] != 1.0 {
				t.Errorf("details %v, want invalidParts [1]", details)
			}
			st.App.Service.Blob = real

			if route == "complete" {
				c.json("POST", completePath, nil).data(t, 200)
			}
			c.json("POST", "/api/mocs/uploads/finalize", finalize).data(t, 201)
			if !bytes.Equal(storedObject(t, fileID), bodies[1]) {
				t.Error("the object is not the part S3 holds")
			}
		})
	}
}

// Defect 2: NUL in finalize's texts is a 422 naming the field, before any
// row or object changes.
func TestDefectNULInFinalize(t *testing.T) {
	c := newClient(t, userFor(t))
	sessionID := uploadedSession(t, c)
	for field, body := range map[string]map[string]any{
		"title":       {"title": "Big\x00Ship"},
		"description": {"title": "T", "description": "a\x00b"},
		"tags[1]":     {"title": "T", "tags": []string{"ok", "x\x00"}},
		"theme":       {"title": "T", "theme": "\x00"},
	} {
		t.Run(field, func(t *testing.T) {
			body["uploadSessionId"] = sessionID
			unchanged(t, func() {
				details := c.json("POST", "/api/mocs/uploads/finalize", body).fail(t, 422, "VALIDATION_ERROR")
				if errs, _ := details["errors"].(map[string]any); errs[field] == nil || len(errs) != 1 {
					t.Errorf("details %v, want only %s", details, field)
				}
			})
		})
	}
	// The session is untouched: a good finalize still works.
	c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Big Ship"}).data(t, 201)
}

// Defect 3: a frozen S3 does not hang the request: it ends at the call's
// deadline with a retryable 503, and holds no row lock meanwhile.
func TestDefectFrozenStorage(t *testing.T) {
	c := newClient(t, userFor(t))
	const size = 16 << 10
	pdf := pdfBytes(size)
	sessionID := createSession(t, c, pdfDecl("a.pdf", size))
	fileID := registerFile(t, c, sessionID, pdfDecl("a.pdf", size))["fileId"].(string)

	frozen, err := s3blob.New(context.Background(), s3blob.Config{
		Bucket: st.Config.S3Bucket, Endpoint: "http://" + faultnet.Silent(t).String(), Region: st.Config.S3Region,
		AccessKeyID: "k", SecretAccessKey: "s", OperationTimeout: 300 * time.Millisecond, TransferTimeout: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	real := st.App.Service.Blob
	st.App.Service.Blob = frozen
	t.Cleanup(func() { st.App.Service.Blob = real })

	r := faultnet.ReturnsWithin(t, time.Minute, func() response { return c.put(partPath(sessionID, fileID, 1), pdf) })
	details := r.fail(t, 503, "S3_UNAVAILABLE")
	if details["retryable"] != true || r.Header.Get("Retry-After") == "" {
		t.Errorf("details %v, Retry-After %q: want retryable with Retry-After", details, r.Header.Get("Retry-After"))
	}
	st.App.Service.Blob = real
	c.put(partPath(sessionID, fileID, 1), pdf).data(t, 200)
}

// Defect 4: when the database is gone every route answers the retryable
// 503 DATABASE_UNAVAILABLE with Retry-After, not a 500; once it is back
// the same requests succeed.
func TestDefectDatabaseOutage(t *testing.T) {
	c := newClient(t, userFor(t))
	sessionID := uploadedSession(t, c)
	u, err := url.Parse(st.Config.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	p := faultnet.NewProxy(t, u.Host)
	u.Host = p.Addr()
	store, err := postgres.Open(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	real := st.App.Service.Store
	st.App.Service.Store = store
	t.Cleanup(func() { st.App.Service.Store = real })
	c.json("GET", "/api/mocs/uploads/sessions/"+sessionID, nil).data(t, 200)

	p.Cut()
	for name, call := range map[string]func() response{
		"get session": func() response { return c.json("GET", "/api/mocs/uploads/sessions/"+sessionID, nil) },
		"create session": func() response {
			return c.json("POST", "/api/mocs/uploads/sessions", map[string]any{"files": []fileDecl{pdfDecl("b.pdf", 10)}})
		},
		"finalize": func() response {
			return c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Outage"})
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := call()
			details := r.fail(t, 503, "DATABASE_UNAVAILABLE")
			if details["retryable"] != true || r.Header.Get("Retry-After") == "" {
				t.Errorf("details %v, Retry-After %q: want retryable with Retry-After", details, r.Header.Get("Retry-After"))
			}
		})
	}
	st.App.Service.Store = real
	c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Outage"}).data(t, 201)
}

// abortingBlob aborts the session (over HTTP, as another tab of the user
// would) while a part is on its way to S3: before the part reaches S3,
// after it did, or with S3 failing the part because its upload is gone.
type abortingBlob struct {
	upload.Blob
	abort func()
	when  string // "before", "after" or "failing"
}

func (b *abortingBlob) UploadPart(ctx context.Context, key, id string, n int, body io.Reader, size int64, md5 string) (string, error) {
	switch b.when {
	case "before":
		b.abort()
		return b.Blob.UploadPart(ctx, key, id, n, body, size, md5)
	case "failing":
		b.abort()
		_, _ = io.Copy(io.Discard, body)
		return "", fmt.Errorf("injected: the store broke the connection: %w", upload.ErrUnavailable)
	}
	etag, err := b.Blob.UploadPart(ctx, key, id, n, body, size, md5)
	b.abort()
	return etag, err
}

// Defect 5: an upload racing an abort records nothing, and its answer is
// the final one: 400 SESSION_NOT_ACTIVE, which a retry gets again (never
// a retryable 503 followed by a 400, never a part recorded after abort).
func TestDefectAbortRacingUpload(t *testing.T) {
	c := newClient(t, userFor(t))
	const size = 16 << 10
	pdf := pdfBytes(size)
	for _, when := range []string{"before", "after", "failing"} {
		t.Run(when, func(t *testing.T) {
			sessionID := createSession(t, c, pdfDecl("a.pdf", size))
			fileID := registerFile(t, c, sessionID, pdfDecl("a.pdf", size))["fileId"].(string)
			real := st.App.Service.Blob
			st.App.Service.Blob = &abortingBlob{Blob: real, when: when, abort: func() {
				if r := c.json("DELETE", "/api/mocs/uploads/sessions/"+sessionID, nil); r.Status != 204 {
					t.Errorf("abort: %d %s", r.Status, r.Raw)
				}
			}}
			t.Cleanup(func() { st.App.Service.Blob = real })

			c.put(partPath(sessionID, fileID, 1), pdf).fail(t, 400, "SESSION_NOT_ACTIVE")
			st.App.Service.Blob = real
			if parts := recordedParts(t, fileID); len(parts) != 0 {
				t.Errorf("parts recorded after the abort: %v", parts)
			}
			c.put(partPath(sessionID, fileID, 1), pdf).fail(t, 400, "SESSION_NOT_ACTIVE")
			var status string
			if err := db.QueryRow(context.Background(), `SELECT status FROM upload_sessions WHERE id = $1`, sessionID).Scan(&status); err != nil || status != "cancelled" {
				t.Errorf("session status %q, %v; want cancelled", status, err)
			}
		})
	}
}

// Defect 6: user ids that are "." or ".." segments never reach a key.
func TestDefectDotUserIDs(t *testing.T) {
	for _, user := range []string{".", "..", "..."} {
		t.Run(user, func(t *testing.T) {
			c := newClient(t, user)
			unchanged(t, func() {
				c.json("POST", "/api/mocs/uploads/sessions", map[string]any{"files": []fileDecl{pdfDecl("a.pdf", 10)}}).fail(t, 401, "UNAUTHORIZED")
			})
		})
	}
}

// Defect 7: a name that is not UTF-8 is a 422 naming the element, not a
// name quietly holding U+FFFD.
func TestDefectInvalidUTF8Name(t *testing.T) {
	c := newClient(t, userFor(t))
	sessionID := createSession(t, c, pdfDecl("a.pdf", 10))
	unchanged(t, func() {
		body := []byte(`{"files":[{"category":"instruction","name":"a.pdf","size":10,"type":"application/pdf","ext":"pdf"},` +
			`{"category":"image","name":"b` + "\xff" + `.png","size":10,"type":"image/png","ext":"png"}]}`)
		details := c.do("POST", "/api/mocs/uploads/sessions", "application/json", body).fail(t, 422, "VALIDATION_ERROR")
		if errs, _ := details["errors"].(map[string]any); errs["files[1].name"] == nil {
			t.Errorf("details %v, want files[1].name", details)
		}
		body = []byte(`{"category":"instruction","name":"caf` + "\xe9" + `.pdf","size":10,"type":"application/pdf","ext":"pdf"}`)
		details = c.do("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files", "application/json", body).fail(t, 422, "VALIDATION_ERROR")
		if errs, _ := details["errors"].(map[string]any); errs["name"] == nil {
			t.Errorf("details %v, want name", details)
		}
		// A name that arrives already replaced (U+FFFD) is refused too.
		details = c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files", pdfDecl("caf\ufffd.pdf", 10)).fail(t, 422, "VALIDATION_ERROR")
		if errs, _ := details["errors"].(map[string]any); errs["name"] == nil {
			t.Errorf("details %v, want name", details)
		}
		// A wrong type names the element, in plain words.
		details = c.json("POST", "/api/mocs/uploads/sessions", map[string]any{"files": []any{pdfDecl("a.pdf", 10), 5}}).fail(t, 422, "VALIDATION_ERROR")
		if errs, _ := details["errors"].(map[string]any); errs["files[1]"] != "must be an object" {
			t.Errorf("details %v, want files[1]: must be an object", details)
		}
	})
}
