package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"mime/multipart"
	"net/http/httptest"
	"net/textproto"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/mocbuilders/moc-upload/local/gateway"
	"github.com/mocbuilders/moc-upload/shared/httpapi"
)

// batchFormPart is one form part of a batch body.
type batchFormPart struct {
	name   string
	data   []byte
	header []string // extra header name, value pairs
}

// batchForm builds a batch body and its Content-Type.
func batchForm(t *testing.T, parts ...batchFormPart) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename="blob"`, p.name))
		h.Set("Content-Type", "application/octet-stream")
		for i := 0; i+1 < len(p.header); i += 2 {
			h.Set(p.header[i], p.header[i+1])
		}
		pw, err := w.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pw.Write(p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), w.FormDataContentType()
}

func batchPath(sessionID, fileID string) string {
	return "/api/mocs/uploads/sessions/" + sessionID + "/files/" + fileID + "/parts/batch"
}

// threeParts is a PDF of three parts (5 MiB, 5 MiB, remainder) and its parts.
func threeParts() (data []byte, parts [][]byte) {
	data = pdfBytes(10*mib + 300*1024)
	return data, [][]byte{data[:5*mib], data[5*mib : 10*mib], data[10*mib:]}
}

// batchEntries reads data.parts of a batch response.
func batchEntries(t *testing.T, d map[string]any) []map[string]any {
	t.Helper()
	raw, ok := d["parts"].([]any)
	if !ok || len(d) != 1 {
		t.Fatalf("data = %v, want {parts}", d)
	}
	out := make([]map[string]any, len(raw))
	for i, e := range raw {
		out[i] = e.(map[string]any)
	}
	return out
}

// fileUpload is the S3 key and multipart upload id of a file.
func fileUpload(t *testing.T, fileID string) (key, uploadID string) {
	t.Helper()
	if err := db.QueryRow(context.Background(), `SELECT s3_key, upload_id FROM upload_session_files WHERE id = $1`, fileID).Scan(&key, &uploadID); err != nil {
		t.Fatal(err)
	}
	return key, uploadID
}

// partRow is one row of upload_session_parts.
type partRow struct {
	size      int64
	etag, md5 string
}

// recordedParts is the file's rows of upload_session_parts by part number.
func recordedParts(t *testing.T, fileID string) map[int]partRow {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT part_number, size, etag, coalesce(md5, '') FROM upload_session_parts WHERE file_id = $1`, fileID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int]partRow{}
	for rows.Next() {
		var n int
		var r partRow
		if err := rows.Scan(&n, &r.size, &r.etag, &r.md5); err != nil {
			t.Fatal(err)
		}
		r.etag = strings.Trim(r.etag, `"`)
		out[n] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// storedParts is what S3 holds of the file's multipart upload:
// part number → "size:etag".
func storedParts(t *testing.T, fileID string) map[int]string {
	t.Helper()
	key, uploadID := fileUpload(t, fileID)
	out, err := s3c.ListParts(context.Background(), &s3.ListPartsInput{
		Bucket: aws.String(st.Config.S3Bucket), Key: aws.String(key), UploadId: aws.String(uploadID),
	})
	if err != nil {
		t.Fatal(err)
	}
	parts := map[int]string{}
	for _, p := range out.Parts {
		parts[int(aws.ToInt32(p.PartNumber))] = fmt.Sprintf("%d:%s", aws.ToInt64(p.Size), strings.Trim(aws.ToString(p.ETag), `"`))
	}
	return parts
}

func md5hex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

// wantStored checks that exactly the given parts are recorded and held by
// S3, with their bytes' size and the same ETag, their MD5, in both. An MD5
// is recorded only for parts sent with Content-MD5.
func wantStored(t *testing.T, fileID string, parts map[int][]byte) {
	t.Helper()
	recorded, stored := recordedParts(t, fileID), storedParts(t, fileID)
	if len(recorded) != len(parts) || len(stored) != len(parts) {
		t.Fatalf("recorded %v, stored %v; want parts %v", recorded, stored, sortedKeys(parts))
	}
	for n, b := range parts {
		r, ok := recorded[n]
		if !ok || r.size != int64(len(b)) || r.etag != md5hex(b) || (r.md5 != "" && r.md5 != md5hex(b)) || stored[n] != fmt.Sprintf("%d:%s", len(b), r.etag) {
			t.Errorf("part %d: recorded %+v, stored %q; want %d bytes with MD5 %s", n, r, stored[n], len(b), md5hex(b))
		}
	}
}

func sortedKeys[V any](m map[int]V) []int {
	var ks []int
	for k := range m {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	return ks
}

// BU-HP-001: a file of three parts (5 MiB, 5 MiB, remainder) in one batch:
// 200 with three results in the order sent; the session shows the parts;
// complete takes them and the object holds exactly the bytes sent.
func TestBatchUploadWholeFile(t *testing.T) {
	c := newClient(t, userFor(t))
	data, parts := threeParts()
	sessionID := createSession(t, c, pdfDecl("castle.pdf", len(data)))
	fileID := registerFile(t, c, sessionID, pdfDecl("castle.pdf", len(data)))["fileId"].(string)

	body, ct := batchForm(t,
		batchFormPart{name: "part1", data: parts[0], header: []string{"Content-MD5", contentMD5(parts[0])}},
		batchFormPart{name: "part2", data: parts[1]},
		batchFormPart{name: "part3", data: parts[2], header: []string{"Content-MD5", contentMD5(parts[2])}})
	entries := batchEntries(t, c.do("POST", batchPath(sessionID, fileID), ct, body).data(t, 200))
	if len(entries) != 3 {
		t.Fatalf("entries: %v", entries)
	}
	etags := map[float64]any{}
	seen := map[float64]bool{}
	for i, e := range entries {
		n := float64(i + 1)
		if e["partNumber"] != n || e["size"] != float64(len(parts[i])) || e["totalParts"] != 3.0 || e["etag"] == "" || len(e) != 5 {
			t.Errorf("entry %d: %v", i, e)
		}
		// The parts go to S3 concurrently: each counts the parts recorded
		// by then, 1..3, once each.
		if cp, _ := e["completedParts"].(float64); cp < 1 || cp > 3 || seen[cp] {
			t.Errorf("entry %d completedParts: %v", i, e)
		}
		seen[e["completedParts"].(float64)] = true
		etags[n] = e["etag"]
	}
	wantStored(t, fileID, map[int][]byte{1: parts[0], 2: parts[1], 3: parts[2]})

	// The resume view shows the three parts with the batch's ETags.
	s := c.json("GET", "/api/mocs/uploads/sessions/"+sessionID, nil).data(t, 200)
	f := s["files"].([]any)[0].(map[string]any)
	up := f["uploadedParts"].([]any)
	if f["status"] != "uploading" || f["totalParts"] != 3.0 || len(up) != 3 {
		t.Fatalf("session file: %v", f)
	}
	var complete []map[string]any
	for i, p := range up {
		p := p.(map[string]any)
		if p["partNumber"] != float64(i+1) || p["size"] != float64(len(parts[i])) || p["etag"] != etags[p["partNumber"].(float64)] {
			t.Errorf("uploaded part %d: %v", i, p)
		}
		complete = append(complete, map[string]any{"partNumber": p["partNumber"], "etag": p["etag"]})
	}

	done := c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+fileID+"/complete", map[string]any{"parts": complete}).data(t, 200)
	if done["fileId"] != fileID || done["fileUrl"] == "" {
		t.Fatalf("complete: %v", done)
	}
	if got := storedObject(t, fileID); !bytes.Equal(got, data) {
		t.Fatalf("the object has %d bytes (MD5 %s), want the %d sent (MD5 %s)", len(got), md5hex(got), len(data), md5hex(data))
	}
	// A batch to the completed file is refused whole, nothing changes.
	unchanged(t, func() {
		c.do("POST", batchPath(sessionID, fileID), ct, body).fail(t, 409, "FILE_ALREADY_COMPLETED")
	})
}

// A batch with one bad part: that part fails alone (207), the others are
// stored and recorded; the bad one neither in the database nor in S3.
func TestBatchOneBadPart(t *testing.T) {
	for _, tt := range []struct {
		name  string
		part2 func([]byte) batchFormPart
		code  string
	}{
		{"wrong Content-MD5", func(b []byte) batchFormPart {
			return batchFormPart{name: "part2", data: b, header: []string{"Content-MD5", contentMD5([]byte("other bytes"))}}
		}, "CHECKSUM_MISMATCH"},
		{"one byte short", func(b []byte) batchFormPart {
			return batchFormPart{name: "part2", data: b[:len(b)-1]}
		}, "INVALID_PART_SIZE"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, userFor(t))
			data, parts := threeParts()
			sessionID := createSession(t, c, pdfDecl("castle.pdf", len(data)))
			fileID := registerFile(t, c, sessionID, pdfDecl("castle.pdf", len(data)))["fileId"].(string)

			body, ct := batchForm(t,
				batchFormPart{name: "part1", data: parts[0]},
				tt.part2(parts[1]),
				batchFormPart{name: "part3", data: parts[2]})
			entries := batchEntries(t, c.do("POST", batchPath(sessionID, fileID), ct, body).data(t, 207))
			if len(entries) != 3 || entries[0]["partNumber"] != 1.0 || entries[0]["error"] != nil ||
				entries[2]["partNumber"] != 3.0 || entries[2]["error"] != nil {
				t.Fatalf("entries: %v", entries)
			}
			bad := entries[1]
			e, _ := bad["error"].(map[string]any)
			if bad["partNumber"] != 2.0 || bad["field"] != "part2" || e == nil || e["code"] != tt.code || e["message"] == "" || bad["etag"] != nil {
				t.Fatalf("part 2 entry: %v", bad)
			}
			wantStored(t, fileID, map[int][]byte{1: parts[0], 3: parts[2]})
			c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+fileID+"/complete", nil).fail(t, 409, "INCOMPLETE_UPLOAD")

			// Sending part 2 again, right, completes the set.
			body, ct = batchForm(t, batchFormPart{name: "part2", data: parts[1], header: []string{"Content-MD5", contentMD5(parts[1])}})
			entries = batchEntries(t, c.do("POST", batchPath(sessionID, fileID), ct, body).data(t, 200))
			if len(entries) != 1 || entries[0]["partNumber"] != 2.0 || entries[0]["completedParts"] != 3.0 {
				t.Fatalf("entries: %v", entries)
			}
			wantStored(t, fileID, map[int][]byte{1: parts[0], 2: parts[1], 3: parts[2]})
			c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+fileID+"/complete", nil).data(t, 200)
			if got := storedObject(t, fileID); !bytes.Equal(got, data) {
				t.Fatalf("the object differs from what was sent (%d vs %d bytes)", len(got), len(data))
			}
		})
	}
}

// batchLimitServer is the local gateway with the stack's functions, the
// batch function's API limited to limit bytes (MAX_BATCH_BYTES).
func batchLimitServer(t *testing.T, limit int64) *httptest.Server {
	t.Helper()
	handlers := map[string]gateway.Handler{}
	for _, rt := range httpapi.Routes {
		h, err := st.App.LambdaHandler(rt.Function)
		if err != nil {
			t.Fatal(err)
		}
		handlers[rt.Function] = h
	}
	api := *st.App.API // the same service, another limit
	api.MaxBatchBytes = limit
	h, err := api.Handler("UploadPartsBatch")
	if err != nil {
		t.Fatal(err)
	}
	handlers["UploadPartsBatch"] = httpadapter.NewV2(h).ProxyWithContext
	gw, err := gateway.New(handlers, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	return srv
}

// BU-ERR-001: a batch whose body is over MAX_BATCH_BYTES is 413
// PAYLOAD_TOO_LARGE in the contract's shape, and nothing is stored: no row,
// no object, no part of the multipart upload.
func TestBatchOverLimit(t *testing.T) {
	if got := st.App.API.MaxBatchBytes; got != httpapi.DefaultMaxBatchBytes {
		t.Errorf("the stack's MaxBatchBytes = %d, want MAX_BATCH_BYTES's default %d", got, httpapi.DefaultMaxBatchBytes)
	}
	const limit = 4 * mib
	srv := batchLimitServer(t, limit)
	c := newClient(t, userFor(t))
	c.base = srv.URL
	data, parts := threeParts()
	sessionID := createSession(t, c, pdfDecl("castle.pdf", len(data)))
	fileID := registerFile(t, c, sessionID, pdfDecl("castle.pdf", len(data)))["fileId"].(string)

	body, ct := batchForm(t,
		batchFormPart{name: "part1", data: parts[0]},
		batchFormPart{name: "part3", data: parts[2]}) // 5.3 MiB and headers
	if len(body) <= limit {
		t.Fatalf("the batch has %d bytes, not over %d", len(body), limit)
	}
	unchanged(t, func() {
		r := c.do("POST", batchPath(sessionID, fileID), ct, body)
		d := r.fail(t, 413, "PAYLOAD_TOO_LARGE")
		if d["maxBatchBytes"] != float64(limit) || !strings.Contains(r.Body["error"].(map[string]any)["message"].(string), fmt.Sprint(limit)) {
			t.Errorf("error: %s", r.Raw)
		}
		if len(r.Body) != 4 || r.Body["timestamp"] == "" {
			t.Errorf("body: %s", r.Raw)
		}
	})
	if got := storedParts(t, fileID); len(got) != 0 {
		t.Fatalf("S3 holds parts %v of the refused batch", got)
	}
	if got := recordedParts(t, fileID); len(got) != 0 {
		t.Fatalf("parts %v recorded", got)
	}

	// Under the limit a batch goes through.
	body, ct = batchForm(t, batchFormPart{name: "part3", data: parts[2]})
	entries := batchEntries(t, c.do("POST", batchPath(sessionID, fileID), ct, body).data(t, 200))
	if len(entries) != 1 || entries[0]["partNumber"] != 3.0 {
		t.Fatalf("entries: %v", entries)
	}
	wantStored(t, fileID, map[int][]byte{3: parts[2]})
}

// What concerns the whole batch is the plain error response, and nothing
// is stored.
func TestBatchRefusedWhole(t *testing.T) {
	c := newClient(t, userFor(t))
	data, parts := threeParts()
	sessionID := createSession(t, c, pdfDecl("castle.pdf", len(data)))
	fileID := registerFile(t, c, sessionID, pdfDecl("castle.pdf", len(data)))["fileId"].(string)
	body, ct := batchForm(t, batchFormPart{name: "part3", data: parts[2]})
	for _, tt := range []struct {
		name   string
		do     func() response
		status int
		code   string
	}{
		{"no identity", func() response { return c.as("").do("POST", batchPath(sessionID, fileID), ct, body) }, 401, "UNAUTHORIZED"},
		{"another user's session", func() response {
			return c.as("e2e-someone-else").do("POST", batchPath(sessionID, fileID), ct, body)
		}, 404, "NOT_FOUND"},
		{"no such file", func() response { return c.do("POST", batchPath(sessionID, sessionID), ct, body) }, 404, "NOT_FOUND"},
		{"file id not a UUID", func() response { return c.do("POST", batchPath(sessionID, "x"), ct, body) }, 400, "BAD_REQUEST"},
		{"not multipart", func() response {
			return c.do("POST", batchPath(sessionID, fileID), "application/octet-stream", parts[2])
		}, 400, "BAD_REQUEST"},
		{"no boundary", func() response { return c.do("POST", batchPath(sessionID, fileID), "multipart/form-data", body) }, 400, "BAD_REQUEST"},
		{"truncated", func() response { return c.do("POST", batchPath(sessionID, fileID), ct, body[:len(body)/2]) }, 400, "BAD_REQUEST"},
		{"no parts", func() response {
			empty, ct := batchForm(t)
			return c.do("POST", batchPath(sessionID, fileID), ct, empty)
		}, 400, "BAD_REQUEST"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			unchanged(t, func() { tt.do().fail(t, tt.status, tt.code) })
		})
	}
	if got := storedParts(t, fileID); len(got) != 0 {
		t.Fatalf("S3 holds parts %v", got)
	}
	if r := c.json("DELETE", "/api/mocs/uploads/sessions/"+sessionID, nil); r.Status != 204 {
		t.Fatalf("abort: %d %s", r.Status, r.Raw)
	}
	unchanged(t, func() {
		c.do("POST", batchPath(sessionID, fileID), ct, body).fail(t, 400, "SESSION_NOT_ACTIVE")
	})
}
