package httpapi_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/core"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/mocbuilders/moc-upload/shared/httpapi"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

var batchPath = filesPath + "/" + fileID + "/parts/batch"

// batchNow is the fake service's clock.
var batchNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// memStore is an in-memory Store with one session of user u1 and one file
// in it; enough of Tx for the upload-part use case. Every transaction
// holds the one lock, so workers of a batch may use it concurrently.
type memStore struct {
	mu      sync.Mutex
	session upload.Session
	file    upload.File
	parts   map[int]upload.Part
}

type memTx struct {
	upload.Tx // any other method panics
	s         *memStore
}

func (s *memStore) InTx(_ context.Context, fn func(upload.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fn(memTx{s: s})
}

func (tx memTx) GetSession(_ context.Context, id, userID string, _ bool) (*upload.Session, error) {
	if id != tx.s.session.ID || userID != tx.s.session.UserID {
		return nil, fmt.Errorf("session %s: %w", id, upload.ErrNotFound)
	}
	sess := tx.s.session
	return &sess, nil
}

func (tx memTx) ShareSession(ctx context.Context, id, userID string) (*upload.Session, error) {
	return tx.GetSession(ctx, id, userID, false)
}

func (tx memTx) GetFile(_ context.Context, sessionID, id string, _ bool) (*upload.File, error) {
	if sessionID != tx.s.file.SessionID || id != tx.s.file.ID {
		return nil, fmt.Errorf("file %s: %w", id, upload.ErrNotFound)
	}
	f := tx.s.file
	return &f, nil
}

func (tx memTx) UpdateFile(_ context.Context, f *upload.File) error {
	tx.s.file = *f
	return nil
}

func (tx memTx) UpsertPart(_ context.Context, p *upload.Part) error {
	tx.s.parts[p.PartNumber] = *p
	return nil
}

func (tx memTx) ListParts(_ context.Context, fileID string) ([]upload.Part, error) {
	var parts []upload.Part
	for _, n := range slices.Sorted(mapKeysInt(tx.s.parts)) {
		parts = append(parts, tx.s.parts[n])
	}
	return parts, nil
}

func mapKeysInt[V any](m map[int]V) func(func(int) bool) {
	return func(yield func(int) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// memBlob takes parts as S3 does: it checks Content-MD5, keeps each
// part's size and MD5 (not its bytes) and answers S3's ETag of a part, its
// MD5 in hex within quotes. fail makes a part number fail with
// the given error; gate, when set, is called with each call's part number
// before it reads the part.
type memBlob struct {
	upload.Blob // any other method panics
	mu          sync.Mutex
	parts       map[int]string // part number → "size:md5hex"
	calls       int
	fail        map[int]error
	gate        func(n int)
}

func (b *memBlob) UploadPart(_ context.Context, key, uploadID string, n int, body io.Reader, size int64, contentMD5 string) (string, error) {
	b.mu.Lock()
	b.calls++
	err, gate := b.fail[n], b.gate
	b.mu.Unlock()
	if gate != nil {
		gate(n)
	}
	if err != nil {
		return "", err
	}
	h := md5.New()
	got, err := io.Copy(h, body)
	if err != nil {
		return "", err
	}
	if got != size {
		return "", fmt.Errorf("read %d bytes of %d", got, size)
	}
	sum := h.Sum(nil)
	if contentMD5 != "" && base64.StdEncoding.EncodeToString(sum) != contentMD5 {
		return "", fmt.Errorf("blob: %w", upload.ErrBadDigest)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.parts[n] = fmt.Sprintf("%d:%x", size, sum)
	return fmt.Sprintf(`"%x"`, sum), nil
}

func (b *memBlob) stored() map[int]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return copyParts(b.parts)
}

func copyParts(m map[int]string) map[int]string {
	out := make(map[int]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// batchFixture is an API over memStore and memBlob: session sessionID of
// user u1, file fileID of fileSize bytes cut into parts of partSize.
type batchFixture struct {
	api   *httpapi.API
	store *memStore
	blob  *memBlob
}

func newBatchFixture(fileSize, partSize int64) *batchFixture {
	store := &memStore{
		session: upload.Session{ID: sessionID, UserID: "u1", Status: upload.SessionActive,
			PartSizeBytes: partSize, ExpiresAt: batchNow.Add(30 * time.Minute)},
		file: upload.File{ID: fileID, SessionID: sessionID, Category: upload.CategoryInstruction,
			Name: "castle.pdf", MimeType: "application/pdf", Ext: "pdf", Size: fileSize,
			S3Key: "test/castle.pdf", UploadID: "upload-1", Status: upload.FilePending},
		parts: map[int]upload.Part{},
	}
	blob := &memBlob{parts: map[int]string{}, fail: map[int]error{}}
	api := httpapi.New(&upload.Service{
		Store: store, Blob: blob, Limits: upload.DefaultLimits(),
		Now: func() time.Time { return batchNow }, NewID: func() string { return "id" },
	})
	return &batchFixture{api: api, store: store, blob: blob}
}

// recorded is the parts the store recorded: number → "size:md5hex", the
// MD5 being the ETag memBlob answered (the service records an MD5 only
// for parts sent with Content-MD5).
func (f *batchFixture) recorded() map[int]string {
	f.store.mu.Lock()
	defer f.store.mu.Unlock()
	out := map[int]string{}
	for n, p := range f.store.parts {
		out[n] = fmt.Sprintf("%d:%s", p.Size, strings.Trim(p.ETag, `"`))
	}
	return out
}

// formPart is one form part of a batch body.
type formPart struct {
	name   string
	data   []byte
	header map[string]string // extra headers (Content-MD5, …)
}

const testBoundary = "batch-boundary-7f3a"

// batchBody builds a multipart/form-data body with the given parts.
func batchBody(t testing.TB, parts ...formPart) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	if err := w.SetBoundary(testBoundary); err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename="blob"`, p.name))
		h.Set("Content-Type", "application/octet-stream")
		for k, v := range p.header {
			h.Set(k, v)
		}
		pw, err := w.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = pw.Write(p.data)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const batchContentType = "multipart/form-data; boundary=" + testBoundary

// batchEvent is the HTTP API event of a batch request: a binary body
// arrives base64-encoded, as API Gateway sends it.
func batchEvent(sub, path, contentType string, body []byte) events.APIGatewayV2HTTPRequest {
	ev := events.APIGatewayV2HTTPRequest{
		Version: "2.0", RouteKey: "$default", RawPath: path,
		Headers:         map[string]string{"content-type": contentType},
		Body:            base64.StdEncoding.EncodeToString(body),
		IsBase64Encoded: true,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RequestID: "gw-request-1", DomainName: "api.example.com",
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "POST", Path: path, SourceIP: "192.0.2.1"},
		},
	}
	if contentType == "" {
		ev.Headers = nil
	}
	if sub != "" {
		ev.RequestContext.Authorizer = &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
			JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{Claims: map[string]string{"sub": sub}},
		}
	}
	return ev
}

// postBatch sends a batch through the Lambda adapter (Content-Length known).
func postBatch(t testing.TB, h http.Handler, contentType string, body []byte) events.APIGatewayV2HTTPResponse {
	t.Helper()
	resp, err := httpadapter.NewV2(h).ProxyWithContext(context.Background(), batchEvent("u1", batchPath, contentType, body))
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	return resp
}

// streamBatch serves a batch whose body is read from body with the given
// Content-Length (-1: unknown, as a chunked request), straight to h.
func streamBatch(t testing.TB, h http.Handler, contentType string, body io.Reader, length int64) *httptest.ResponseRecorder {
	t.Helper()
	r, err := (&core.RequestAccessorV2{}).EventToRequestWithContext(context.Background(), batchEvent("u1", batchPath, contentType, nil))
	if err != nil {
		t.Fatal(err)
	}
	r.Body = io.NopCloser(body)
	r.ContentLength = length
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// batchEntry is one entry of a batch response's data.parts.
type batchEntry struct {
	PartNumber     int    `json:"partNumber"`
	Field          string `json:"field"`
	ETag           string `json:"etag"`
	Size           int64  `json:"size"`
	CompletedParts int    `json:"completedParts"`
	TotalParts     int    `json:"totalParts"`
	Error          *struct {
		Code    string         `json:"code"`
		Message string         `json:"message"`
		Details map[string]any `json:"details"`
	} `json:"error"`
	keys []string
}

// wantBatch checks a batch response's status and success envelope, and
// returns its entries.
func wantBatch(t testing.TB, status int, body string, wantStatus int) []batchEntry {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status = %d, want %d; body %s", status, wantStatus, body)
	}
	var env struct {
		Success   bool `json:"success"`
		Data      map[string]json.RawMessage
		Timestamp string `json:"timestamp"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatalf("body: %v: %s", err, body)
	}
	if !env.Success || env.Timestamp == "" || len(env.Data) != 1 || env.Data["parts"] == nil {
		t.Fatalf("body = %s, want the success envelope with data {parts}", body)
	}
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(env.Data["parts"], &raw); err != nil {
		t.Fatalf("data.parts: %v: %s", err, body)
	}
	var entries []batchEntry
	if err := json.Unmarshal(env.Data["parts"], &entries); err != nil {
		t.Fatalf("data.parts: %v: %s", err, body)
	}
	for i := range entries {
		entries[i].keys = slices.Sorted(mapKeys(raw[i]))
		var want []string
		if entries[i].Error == nil {
			want = []string{"completedParts", "etag", "partNumber", "size", "totalParts"}
		} else {
			if entries[i].Error.Code == "" || entries[i].Error.Message == "" {
				t.Errorf("entry %d: error without code or message: %s", i, body)
			}
			for _, k := range entries[i].keys {
				if k != "partNumber" && k != "field" && k != "error" {
					t.Errorf("entry %d: unexpected key %q in a failed entry: %s", i, k, body)
				}
			}
			continue
		}
		if !slices.Equal(entries[i].keys, want) {
			t.Errorf("entry %d keys = %q, want %q", i, entries[i].keys, want)
		}
	}
	return entries
}

// partData is n bytes of content distinct per seed.
func partData(seed byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func digest(b []byte) string {
	sum := md5.Sum(b)
	return fmt.Sprintf("%d:%s", len(b), hex.EncodeToString(sum[:]))
}

// etagOf is S3's (and memBlob's) ETag of a part of these bytes.
func etagOf(b []byte) string {
	sum := md5.Sum(b)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

func b64md5(b []byte) string {
	sum := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// TestBatchUpload: a whole file (5 MiB, 5 MiB, remainder) in one batch, the
// form parts in any order: 200, one entry per form part in their order,
// every part stored and recorded with its bytes.
func TestBatchUpload(t *testing.T) {
	const size = 2*upload.PartSizeBytes + 1000
	fx := newBatchFixture(size, upload.PartSizeBytes)
	p1, p2, p3 := partData(1, upload.PartSizeBytes), partData(2, upload.PartSizeBytes), partData(3, 1000)
	body := batchBody(t,
		formPart{name: "part3", data: p3},
		formPart{name: "part1", data: p1, header: map[string]string{"Content-MD5": b64md5(p1)}},
		formPart{name: "part2", data: p2})
	resp := postBatch(t, fx.api.AllRoutes(), batchContentType, body)
	entries := wantBatch(t, resp.StatusCode, resp.Body, http.StatusOK)
	if got := len(entries); got != 3 {
		t.Fatalf("%d entries, want 3: %s", got, resp.Body)
	}
	want := map[int][]byte{1: p1, 2: p2, 3: p3}
	completed := map[int]bool{}
	for i, n := range []int{3, 1, 2} {
		e := entries[i]
		if e.PartNumber != n || e.Size != int64(len(want[n])) || e.TotalParts != 3 || e.ETag != etagOf(want[n]) {
			t.Errorf("entry %d = %+v, want part %d", i, e, n)
		}
		// Parts finish in any order: completedParts counts the file's
		// parts recorded when this one was, 1..3, each once.
		if e.CompletedParts < 1 || e.CompletedParts > 3 || completed[e.CompletedParts] {
			t.Errorf("entry %d completedParts = %d", i, e.CompletedParts)
		}
		completed[e.CompletedParts] = true
	}
	for n, b := range want {
		if fx.blob.stored()[n] != digest(b) || fx.recorded()[n] != digest(b) {
			t.Errorf("part %d: stored %q, recorded %q, want %q", n, fx.blob.stored()[n], fx.recorded()[n], digest(b))
		}
	}
	// An MD5 is recorded only for the part sent with Content-MD5 (its
	// checked digest); the others are not hashed.
	fx.store.mu.Lock()
	md5s := map[int]string{1: fx.store.parts[1].MD5, 2: fx.store.parts[2].MD5, 3: fx.store.parts[3].MD5}
	fx.store.mu.Unlock()
	if want := map[int]string{1: strings.Trim(etagOf(p1), `"`), 2: "", 3: ""}; fmt.Sprint(md5s) != fmt.Sprint(want) {
		t.Errorf("recorded MD5s %v, want %v", md5s, want)
	}
	if fx.store.file.Status != upload.FileUploading {
		t.Errorf("file status = %s, want uploading", fx.store.file.Status)
	}
}

// TestBatchPartFailures: each bad form part fails itself only (207); the
// good ones are stored and recorded, the bad ones neither.
func TestBatchPartFailures(t *testing.T) {
	// Parts of 10 bytes: a file of 95 bytes has 10 parts, the last of 5.
	fx := newBatchFixture(95, 10)
	fx.blob.fail[7] = fmt.Errorf("s3: %w", upload.ErrUnavailable)
	fx.blob.fail[8] = errors.New("s3: secret internal detail")
	good := func(n int) []byte { return partData(byte(n), 10) }
	body := batchBody(t,
		formPart{name: "part1", data: good(1), header: map[string]string{"Content-MD5": b64md5(good(1))}},
		formPart{name: "part2", data: good(2), header: map[string]string{"Content-MD5": b64md5([]byte("other bytes"))}},
		formPart{name: "part3", data: partData(3, 11)},
		formPart{name: "part4", data: partData(4, 9)},
		formPart{name: "part1", data: good(1)},
		formPart{name: "photo", data: good(5)},
		formPart{name: "part11", data: good(5)},
		formPart{name: "part01", data: good(5)},
		formPart{name: "part0", data: good(5)},
		formPart{name: "part5", data: good(5), header: map[string]string{"Content-MD5": "not base64!"}},
		formPart{name: "part6", data: good(6), header: map[string]string{"Content-Transfer-Encoding": "base64"}},
		formPart{name: "part7", data: good(7)},
		formPart{name: "part8", data: good(8)},
		formPart{name: "part10", data: partData(10, 5)},
		formPart{name: "part9", data: nil},
	)
	resp := postBatch(t, fx.api.AllRoutes(), batchContentType, body)
	entries := wantBatch(t, resp.StatusCode, resp.Body, http.StatusMultiStatus)
	want := []struct {
		partNumber int
		field      string
		code       string // "" for stored
		details    map[string]any
	}{
		{1, "", "", nil},
		{2, "part2", upload.CodeChecksumMismatch, nil},
		{3, "part3", upload.CodeInvalidPartSize, map[string]any{"partNumber": 3.0, "size": 11.0, "expectedSize": 10.0}},
		{4, "part4", upload.CodeInvalidPartSize, map[string]any{"partNumber": 4.0, "size": 9.0, "expectedSize": 10.0}},
		{1, "part1", upload.CodeBadRequest, map[string]any{"partNumber": 1.0}},
		{0, "photo", upload.CodeBadRequest, nil},
		{11, "part11", upload.CodeInvalidPartNumber, map[string]any{"partNumber": 11.0, "min": 1.0, "max": 10.0}},
		{0, "part01", upload.CodeInvalidPartNumber, nil},
		{0, "part0", upload.CodeInvalidPartNumber, nil},
		{5, "part5", upload.CodeBadRequest, nil},
		{6, "part6", upload.CodeBadRequest, map[string]any{"partNumber": 6.0}},
		{7, "part7", upload.CodeS3Unavailable, map[string]any{"retryable": true}},
		{8, "part8", upload.CodeInternal, nil},
		{10, "", "", nil},
		{9, "part9", upload.CodeInvalidPartSize, map[string]any{"partNumber": 9.0, "size": 0.0, "expectedSize": 10.0}},
	}
	if len(entries) != len(want) {
		t.Fatalf("%d entries, want %d: %s", len(entries), len(want), resp.Body)
	}
	for i, w := range want {
		e := entries[i]
		code := ""
		if e.Error != nil {
			code = e.Error.Code
		}
		if e.PartNumber != w.partNumber || e.Field != w.field || code != w.code {
			t.Errorf("entry %d = part %d field %q code %q, want part %d field %q code %q: %+v",
				i, e.PartNumber, e.Field, code, w.partNumber, w.field, w.code, e.Error)
			continue
		}
		if e.Error != nil && w.details != nil && fmt.Sprint(e.Error.Details) != fmt.Sprint(w.details) {
			t.Errorf("entry %d details = %v, want %v", i, e.Error.Details, w.details)
		}
	}
	if msg := entries[12].Error.Message; msg != "an internal error occurred" {
		t.Errorf("internal error shown as %q", msg)
	}
	if strings.Contains(resp.Body, "secret") {
		t.Errorf("body leaks the internal error: %s", resp.Body)
	}
	wantParts := map[int]string{1: digest(good(1)), 10: digest(partData(10, 5))}
	if got := fx.recorded(); fmt.Sprint(got) != fmt.Sprint(wantParts) {
		t.Errorf("recorded parts = %v, want %v", got, wantParts)
	}
	if got := fx.blob.stored(); fmt.Sprint(got) != fmt.Sprint(wantParts) {
		t.Errorf("stored parts = %v, want %v", got, wantParts)
	}
	// Only parts 1, 2 (checksum), 7, 8 (storage) and 10 reached storage:
	// names, numbers, sizes, the MD5's format and the encoding are checked
	// before.
	if fx.blob.calls != 5 {
		t.Errorf("%d storage calls, want 5", fx.blob.calls)
	}
}

// TestBatchRequestErrors: what concerns the whole request is the plain
// error response with its status, and nothing is stored.
func TestBatchRequestErrors(t *testing.T) {
	good := batchBody(t, formPart{name: "part1", data: partData(1, 10)})
	tests := []struct {
		name        string
		setup       func(*batchFixture)
		sub, path   string
		contentType string
		body        []byte
		status      int
		code        string
	}{
		{name: "no identity", sub: "-", status: 401, code: upload.CodeUnauthorized},
		{name: "bad session id", path: "/api/mocs/uploads/sessions/123/files/" + fileID + "/parts/batch", status: 400, code: upload.CodeBadRequest},
		{name: "bad file id", path: filesPath + "/x/parts/batch", status: 400, code: upload.CodeBadRequest},
		{name: "another user's session", sub: "u2", status: 404, code: upload.CodeNotFound},
		{name: "no such file", path: filesPath + "/" + sessionID + "/parts/batch", status: 404, code: upload.CodeNotFound},
		{name: "expired session", setup: func(f *batchFixture) { f.store.session.ExpiresAt = batchNow }, status: 410, code: upload.CodeSessionExpired},
		{name: "cancelled session", setup: func(f *batchFixture) { f.store.session.Status = upload.SessionCancelled }, status: 400, code: upload.CodeSessionNotActive},
		{name: "finalizing session", setup: func(f *batchFixture) { f.store.session.Status = upload.SessionFinalizing }, status: 400, code: upload.CodeSessionNotActive},
		{name: "completed file", setup: func(f *batchFixture) { f.store.file.Status = upload.FileCompleted }, status: 409, code: upload.CodeFileAlreadyCompleted},
		{name: "failed file", setup: func(f *batchFixture) { f.store.file.Status = upload.FileFailed }, status: 409, code: upload.CodeFileAlreadyCompleted},
		{name: "upload gone in storage", setup: func(f *batchFixture) { f.blob.fail[1] = fmt.Errorf("s3: %w", upload.ErrNotFound) }, status: 409, code: upload.CodeFileAlreadyCompleted},
		{name: "octet-stream", contentType: "application/octet-stream", status: 400, code: upload.CodeBadRequest},
		{name: "no content type", contentType: "-", status: 400, code: upload.CodeBadRequest},
		{name: "urlencoded form", contentType: "application/x-www-form-urlencoded", body: []byte("part1=abc"), status: 400, code: upload.CodeBadRequest},
		{name: "no boundary", contentType: "multipart/form-data", status: 400, code: upload.CodeBadRequest},
		{name: "empty boundary", contentType: "multipart/form-data; boundary=", status: 400, code: upload.CodeBadRequest},
		{name: "mixed, not form-data", contentType: "multipart/mixed; boundary=" + testBoundary, status: 400, code: upload.CodeBadRequest},
		{name: "other boundary", contentType: "multipart/form-data; boundary=other", status: 400, code: upload.CodeBadRequest},
		{name: "empty body", body: []byte{}, status: 400, code: upload.CodeBadRequest},
		{name: "not multipart", body: []byte("hello, world"), status: 400, code: upload.CodeBadRequest},
		{name: "no parts", body: []byte("--" + testBoundary + "--\r\n"), status: 400, code: upload.CodeBadRequest},
		{name: "truncated first part", body: good[:len(good)-len(testBoundary)-10], status: 400, code: upload.CodeBadRequest},
		{name: "no closing boundary", body: good[:len(good)-len(testBoundary)-6], status: 400, code: upload.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newBatchFixture(95, 10)
			if tt.setup != nil {
				tt.setup(fx)
			}
			sub, path, ct, body := "u1", batchPath, batchContentType, good
			if tt.sub == "-" {
				sub = ""
			} else if tt.sub != "" {
				sub = tt.sub
			}
			if tt.path != "" {
				path = tt.path
			}
			if tt.contentType == "-" {
				ct = ""
			} else if tt.contentType != "" {
				ct = tt.contentType
			}
			if tt.body != nil {
				body = tt.body
			}
			resp, err := httpadapter.NewV2(fx.api.AllRoutes()).ProxyWithContext(context.Background(), batchEvent(sub, path, ct, body))
			if err != nil {
				t.Fatal(err)
			}
			wantProxyError(t, resp, tt.status, tt.code)
			if got := fx.recorded(); len(got) != 0 {
				t.Errorf("parts recorded: %v", got)
			}
			if got := fx.blob.stored(); len(got) != 0 {
				t.Errorf("parts stored: %v", got)
			}
		})
	}
}

// TestBatchTruncatedAfterStored: a body that ends inside a part after
// others were read: the complete parts are stored, the cut one fails (207).
func TestBatchTruncatedAfterStored(t *testing.T) {
	fx := newBatchFixture(95, 10)
	full := batchBody(t, formPart{name: "part1", data: partData(1, 10)}, formPart{name: "part2", data: partData(2, 10)})
	cut := full[:len(full)-len(testBoundary)-12] // inside part2's bytes
	resp := postBatch(t, fx.api.AllRoutes(), batchContentType, cut)
	entries := wantBatch(t, resp.StatusCode, resp.Body, http.StatusMultiStatus)
	if len(entries) != 2 || entries[0].Error != nil || entries[1].Error == nil ||
		entries[1].PartNumber != 2 || entries[1].Error.Code != upload.CodeBadRequest {
		t.Fatalf("entries: %s", resp.Body)
	}
	if got := fx.recorded(); len(got) != 1 || got[1] != digest(partData(1, 10)) {
		t.Errorf("recorded = %v, want part 1 only", got)
	}

	// A form part whose headers are cut: a trailing entry without a field.
	fx = newBatchFixture(95, 10)
	i := bytes.Index(full, []byte(`name="part2"`))
	resp = postBatch(t, fx.api.AllRoutes(), batchContentType, full[:i])
	entries = wantBatch(t, resp.StatusCode, resp.Body, http.StatusMultiStatus)
	if len(entries) != 2 || entries[0].Error != nil || entries[1].Error == nil ||
		entries[1].Error.Code != upload.CodeBadRequest || slices.Contains(entries[1].keys, "field") || slices.Contains(entries[1].keys, "partNumber") {
		t.Fatalf("entries: %s", resp.Body)
	}
}

// TestBatchTooLarge: over MaxBatchBytes is 413 PAYLOAD_TOO_LARGE before
// anything is stored, whether the length is declared or not; exactly the
// limit is taken.
func TestBatchTooLarge(t *testing.T) {
	body := batchBody(t, formPart{name: "part1", data: partData(1, 10)}, formPart{name: "part2", data: partData(2, 10)})
	limit := int64(len(body))
	for _, tt := range []struct {
		name   string
		extra  int // bytes beyond the limit (white space after the closing boundary)
		length bool
		status int
	}{
		{"at the limit, length known", 0, true, 200},
		{"at the limit, length unknown", 0, false, 200},
		{"over, length known", 1, true, 413},
		{"over, length unknown", 1, false, 413},
		{"far over, length unknown", 1 << 20, false, 413},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fx := newBatchFixture(95, 10)
			fx.api.MaxBatchBytes = limit
			b := append(slices.Clone(body), bytes.Repeat([]byte("\r\n"), tt.extra)[:tt.extra]...)
			length := int64(len(b))
			if !tt.length {
				length = -1
			}
			w := streamBatch(t, fx.api.AllRoutes(), batchContentType, bytes.NewReader(b), length)
			headers := map[string]string{}
			for k := range w.Header() {
				headers[k] = w.Header().Get(k)
			}
			if tt.status == 200 {
				if entries := wantBatch(t, w.Code, w.Body.String(), 200); len(entries) != 2 {
					t.Errorf("entries: %s", w.Body)
				}
				return
			}
			env := wantError(t, w.Code, headers, w.Body.String(), 413, upload.CodePayloadTooLarge)
			if fmt.Sprint(env.Error.Details["maxBatchBytes"]) != fmt.Sprint(limit) || !strings.Contains(env.Error.Message, fmt.Sprint(limit)) {
				t.Errorf("error = %+v, want the limit", env.Error)
			}
			if fx.blob.calls != 0 || len(fx.recorded()) != 0 {
				t.Errorf("stored: %d storage calls, recorded %v", fx.blob.calls, fx.recorded())
			}
		})
	}
	t.Run("default", func(t *testing.T) {
		if got := httpapi.New(nil).MaxBatchBytes; got != 50_000_000 {
			t.Errorf("MaxBatchBytes = %d, want 50000000", got)
		}
		// Refused from Content-Length alone: the (nil) service is never called.
		w := streamBatch(t, httpapi.New(nil).AllRoutes(), batchContentType, strings.NewReader(""), 50_000_001)
		if w.Code != 413 {
			t.Errorf("status = %d, want 413: %s", w.Code, w.Body)
		}
	})
}

// TestBatchConcurrency: parts go to storage concurrently, never more than
// BatchConcurrency at once.
func TestBatchConcurrency(t *testing.T) {
	const conc = 3
	fx := newBatchFixture(95, 10)
	fx.api.BatchConcurrency = conc
	var mu sync.Mutex
	inFlight, most := 0, 0
	arrived := make(chan struct{})
	var once sync.Once
	fx.blob.gate = func(int) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		if inFlight == conc {
			once.Do(func() { close(arrived) }) // the first conc parts are in storage together
		}
		mu.Unlock()
		select {
		case <-arrived:
		case <-time.After(10 * time.Second): // a deadlock guard, not a wait
			t.Error("parts were not sent concurrently")
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
	}
	var parts []formPart
	for n := 1; n <= 9; n++ {
		parts = append(parts, formPart{name: fmt.Sprintf("part%d", n), data: partData(byte(n), 10)})
	}
	resp := postBatch(t, fx.api.AllRoutes(), batchContentType, batchBody(t, parts...))
	if entries := wantBatch(t, resp.StatusCode, resp.Body, 200); len(entries) != 9 {
		t.Fatalf("entries: %s", resp.Body)
	}
	if most != conc {
		t.Errorf("at most %d parts in storage at once, want %d", most, conc)
	}
}

// TestBatchMemory: a batch is streamed, not held: 8 parts of 5 MiB (40 MiB)
// with 2 workers allocate about 2 part buffers, not the body.
func TestBatchMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("40 MiB batch")
	}
	const parts, conc = 8, 2
	fx := newBatchFixture(parts*upload.PartSizeBytes, upload.PartSizeBytes)
	fx.api.BatchConcurrency = conc
	data := partData(9, upload.PartSizeBytes)
	write := func(w io.Writer) {
		mw := multipart.NewWriter(w)
		_ = mw.SetBoundary(testBoundary)
		for n := 1; n <= parts; n++ {
			pw, _ := mw.CreateFormFile(fmt.Sprintf("part%d", n), "blob")
			_, _ = pw.Write(data)
		}
		_ = mw.Close()
	}
	var count countingWriter
	write(&count)
	h := fx.api.AllRoutes()

	// No GC meanwhile, so the pool keeps its buffers and TotalAlloc
	// counts every allocation.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	pr, pw := io.Pipe()
	go func() { write(pw); _ = pw.Close() }()
	w := streamBatch(t, h, batchContentType, pr, int64(count))
	runtime.ReadMemStats(&after)
	if entries := wantBatch(t, w.Code, w.Body.String(), 200); len(entries) != parts {
		t.Fatalf("entries: %s", w.Body)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("a %d MiB batch allocated %.1f MiB", count>>20, float64(allocated)/(1<<20))
	if limit := uint64(conc+1) * upload.PartSizeBytes; allocated > limit {
		t.Errorf("allocated %d bytes for a %d-byte batch, want at most %d (about %d part buffers)", allocated, count, limit, conc)
	}
}

type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

// FuzzBatchUpload sends random bodies (with a declared or an unknown
// length) to the batch route of a file of three parts (10, 10 and 5 bytes)
// with a 2048-byte batch limit. Every answer must be 200/207 with one
// entry per form part, or a 400/413 in the contract's shape that stored
// nothing; never a 5xx or a panic. Whatever is stored is recorded, has its
// part's exact size and is reported stored exactly once.
func FuzzBatchUpload(f *testing.F) {
	p := func(n, size int) []byte { return partData(byte(n), size) }
	seeds := [][]byte{
		batchBody(f, formPart{name: "part1", data: p(1, 10)}, formPart{name: "part2", data: p(2, 10)}, formPart{name: "part3", data: p(3, 5)}),
		batchBody(f, formPart{name: "part3", data: p(3, 5), header: map[string]string{"Content-MD5": b64md5(p(3, 5))}}),
		batchBody(f, formPart{name: "part2", data: p(2, 10), header: map[string]string{"Content-MD5": b64md5(p(1, 10))}}),
		batchBody(f, formPart{name: "part1", data: p(1, 10)}, formPart{name: "part1", data: p(1, 10)}),
		batchBody(f, formPart{name: "part1", data: p(1, 11)}, formPart{name: "part3", data: p(3, 4)}),
		batchBody(f, formPart{name: "file", data: p(1, 10)}, formPart{name: "part4", data: p(1, 10)}, formPart{name: "part01", data: p(1, 10)}),
		batchBody(f, formPart{name: "part2", data: p(2, 10), header: map[string]string{"Content-Transfer-Encoding": "quoted-printable"}}),
		[]byte("preamble\r\n--" + testBoundary + "\r\nContent-Disposition: form-data; name=\"part3\"\r\n\r\n12345\r\n--" + testBoundary + "--\r\nepilogue"),
		[]byte("--" + testBoundary + "\nContent-Disposition: form-data; name=\"part3\"\n\n12345\n--" + testBoundary + "--\n"),
		[]byte("--" + testBoundary + "\r\nContent-Disposition: form-data; name=\"part3\"\r\n\r\n123"),
		[]byte("--" + testBoundary + "\r\nContent-Disposition: form-da"),
		[]byte("--" + testBoundary + "--\r\n"),
		[]byte("--" + testBoundary + "\r\n\r\n\r\n--" + testBoundary + "--"),
		[]byte("--" + testBoundary + "\r\nContent-Disposition: attachment; name=\"part1\"\r\n\r\n0123456789\r\n--" + testBoundary + "--"),
		bytes.Repeat([]byte("x"), 3000),
		{},
	}
	for _, s := range seeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, body []byte, chunked bool) {
		fx := newBatchFixture(25, 10)
		fx.api.MaxBatchBytes = 2048
		h := fx.api.AllRoutes()
		var status int
		var respBody string
		headers := map[string]string{}
		if chunked {
			w := streamBatch(t, h, batchContentType, bytes.NewReader(body), -1)
			status, respBody = w.Code, w.Body.String()
			for k := range w.Header() {
				headers[k] = w.Header().Get(k)
			}
		} else {
			resp := postBatch(t, h, batchContentType, body)
			status, respBody, headers = resp.StatusCode, resp.Body, resp.Headers
		}
		recorded, stored := fx.recorded(), fx.blob.stored()
		switch status {
		case http.StatusOK, http.StatusMultiStatus:
			entries := wantBatch(t, status, respBody, status)
			reported := map[int]int{}
			failed := 0
			for _, e := range entries {
				if e.Error == nil {
					reported[e.PartNumber]++
					continue
				}
				failed++
				if e.Error.Code == upload.CodeInternal || httpapi.StatusOf(e.Error.Code) >= 500 {
					t.Errorf("entry %+v: a server error for a client's body", e.Error)
				}
			}
			if (failed > 0) != (status == http.StatusMultiStatus) {
				t.Errorf("status %d with %d failed entries", status, failed)
			}
			if len(reported) != len(recorded) || len(entries)-failed != len(recorded) {
				t.Errorf("reported %v, recorded %v", reported, recorded)
			}
			plan := upload.PartPlan{FileSize: 25, PartSizeBytes: 10, TotalParts: 3}
			for n, d := range recorded {
				if reported[n] != 1 || stored[n] != d || !strings.HasPrefix(d, fmt.Sprintf("%d:", plan.PartSize(n))) {
					t.Errorf("part %d: recorded %q, stored %q, reported %d times", n, d, stored[n], reported[n])
				}
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			checkErrorEnvelope(t, status, headers, respBody, "")
			if len(recorded) != 0 || len(stored) != 0 {
				t.Errorf("status %d but parts were stored: %v %v", status, recorded, stored)
			}
			if status == http.StatusRequestEntityTooLarge && len(body) <= 2048 {
				t.Errorf("413 for a %d-byte body", len(body))
			}
		default:
			t.Fatalf("status = %d for body %q: %s", status, body, respBody)
		}
		if len(body) > 2048 && status != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d for a %d-byte body over the limit", status, len(body))
		}
	})
}
