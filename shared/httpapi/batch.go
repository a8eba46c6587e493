package httpapi

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// A batch upload (POST …/parts/batch) is a multipart/form-data body with
// one form part per upload part, named part<N>. It is read as a stream:
// each form part is copied into a buffer of at most its expected size + 1
// byte (so a part that is too big fails without being held whole), and
// handed to a worker that sends it to S3 through Service.StorePart; at
// most BatchConcurrency workers (and so buffers) at a time. Reading form
// part N+1 consumes part N, which is why every part is buffered. Once the
// workers are done, the stored parts are announced to the WebSocket
// clients in one call (Service.AnnounceParts): one request, one call, at
// most one warning when the WebSocket side is down.

// maxBatchFormParts bounds the form parts of one batch (S3's part count):
// beyond it the body is not read further.
const maxBatchFormParts = upload.MaxParts

// partBuffers holds part buffers between batches, so that a warm Lambda
// reuses them.
var partBuffers = sync.Pool{New: func() any { return new([]byte) }}

// batchEntry is one form part's outcome: the stored part, or why it
// failed.
type batchEntry struct {
	field      string // the form part's name
	partNumber int    // 0 when the name gives none
	trailing   bool   // not a form part: the body could not be read on
	result     *upload.PartResult
	err        *upload.Error
}

// batch is one batch request being served.
type batch struct {
	a                       *API
	r                       *http.Request
	user, sessionID, fileID string
	plan                    *upload.PartPlan
	entries                 []*batchEntry
	seen                    map[int]bool // part numbers met so far
	// free holds the request's BatchConcurrency buffers (nil until first
	// used): taking one is what bounds the parts read and in flight.
	free chan *[]byte
	wg   sync.WaitGroup
	// malformed: the body could not be read to its end; reported as the
	// entry of the part it ended in, or as a trailing entry.
	malformed *upload.Error
}

func (a *API) uploadPartsBatch(w http.ResponseWriter, r *http.Request) error {
	user, sessionID, fileID, err := fileRequest(r)
	if err != nil {
		return err
	}
	limit := a.MaxBatchBytes
	if limit <= 0 {
		limit = DefaultMaxBatchBytes
	}
	if r.ContentLength > limit {
		return batchTooLarge(limit)
	}
	boundary, err := batchBoundary(r.Header.Get("Content-Type"))
	if err != nil {
		return err
	}
	var body io.Reader
	if r.ContentLength >= 0 {
		body = io.LimitReader(r.Body, r.ContentLength)
	} else {
		// Unknown length (chunked): the limit can only be seen by reading,
		// and nothing may be stored before it is, so the body is spooled.
		spooled, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
		if err != nil {
			return upload.Errorf(upload.CodeBadRequest, "request body could not be read")
		}
		if int64(len(spooled)) > limit {
			return batchTooLarge(limit)
		}
		body = bytes.NewReader(spooled)
	}
	// Everything about the whole request is checked before a part is read.
	plan, err := a.svc.PlanParts(r.Context(), user, sessionID, fileID)
	if err != nil {
		return err
	}
	conc := a.BatchConcurrency
	if conc < 1 {
		conc = 1
	}
	b := &batch{a: a, r: r, user: user, sessionID: sessionID, fileID: fileID, plan: plan,
		seen: map[int]bool{}, free: make(chan *[]byte, conc)}
	for range conc {
		b.free <- nil
	}
	closing := &closeWatcher{r: body, delim: []byte("\n--" + boundary + "--"), tail: []byte("\n")}
	b.read(multipart.NewReader(closing, boundary), closing)
	b.wg.Wait()
	b.returnBuffers()
	b.announce()
	return b.respond(w)
}

// announce tells the session's WebSocket clients about the stored parts,
// in one call.
func (b *batch) announce() {
	var stored []upload.PartResult
	for _, e := range b.entries {
		if e.err == nil && e.result != nil {
			stored = append(stored, *e.result)
		}
	}
	b.a.svc.AnnounceParts(b.r.Context(), b.sessionID, stored)
}

func batchTooLarge(limit int64) error {
	return (&upload.Error{Code: upload.CodePayloadTooLarge,
		Message: fmt.Sprintf("batch body is larger than %d bytes", limit)}).
		WithDetails(map[string]any{"maxBatchBytes": limit})
}

// batchBoundary reads the multipart boundary of a multipart/form-data
// Content-Type.
func batchBoundary(contentType string) (string, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return "", upload.Errorf(upload.CodeBadRequest, "Content-Type must be multipart/form-data with a boundary")
	}
	return params["boundary"], nil
}

// read walks the form parts, failing the bad ones and handing the good
// ones to workers. It returns when the body is read (or unreadable).
func (b *batch) read(mr *multipart.Reader, closing *closeWatcher) {
	for {
		// NextRawPart: the bytes as sent (NextPart would decode
		// quoted-printable); it also skips what is left of the last part.
		p, err := mr.NextRawPart()
		if err == io.EOF && closing.seen { //nolint:errorlint // a wrapped EOF is a truncated body
			return
		}
		if err != nil {
			b.malformed = upload.Errorf(upload.CodeBadRequest, "the multipart body is malformed")
			b.entries = append(b.entries, &batchEntry{trailing: true, err: b.malformed})
			return
		}
		if len(b.entries) == maxBatchFormParts {
			b.malformed = upload.Errorf(upload.CodeBadRequest, "a batch has at most %d form parts", maxBatchFormParts)
			b.entries = append(b.entries, &batchEntry{trailing: true, err: b.malformed})
			return
		}
		e := &batchEntry{field: p.FormName()}
		b.entries = append(b.entries, e)
		if !b.part(p, e) {
			return
		}
	}
}

// part reads one form part and dispatches it; false when the body cannot
// be read further.
func (b *batch) part(p *multipart.Part, e *batchEntry) bool {
	n, want, err := b.check(p, e)
	if err != nil {
		b.fail(e, err)
		return true // NextRawPart skips its bytes
	}
	bp := b.buffer(want + 1)
	release := func() { b.free <- bp }
	got, err := readFull(p, *bp)
	if err != nil {
		release()
		b.truncated(e)
		return false
	}
	if int64(got) != want {
		size := int64(got)
		if size > want {
			// Count the rest without holding it.
			extra, err := io.Copy(io.Discard, p)
			size += extra
			if err != nil {
				release()
				b.truncated(e)
				return false
			}
		}
		release()
		b.fail(e, (&upload.Error{Code: upload.CodeInvalidPartSize, Message: "part has the wrong size"}).
			WithDetails(map[string]any{"partNumber": n, "size": size, "expectedSize": want}))
		return true
	}
	md5 := p.Header.Get("Content-MD5")
	data := (*bp)[:want]
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer release()
		defer func() {
			if v := recover(); v != nil {
				b.fail(e, fmt.Errorf("panic: %v", v))
			}
		}()
		res, err := b.a.svc.StorePart(b.r.Context(), b.user, b.sessionID, b.fileID, n, bytes.NewReader(data), want, md5)
		if err != nil {
			b.fail(e, err)
			return
		}
		e.result = res
	}()
	return true
}

// buffer takes one of the request's buffers, waiting while all are in
// use, and makes it n bytes long.
func (b *batch) buffer(n int64) *[]byte {
	bp := <-b.free
	if bp == nil {
		bp = partBuffers.Get().(*[]byte)
	}
	if int64(cap(*bp)) < n {
		*bp = make([]byte, n)
	}
	*bp = (*bp)[:n]
	return bp
}

// returnBuffers gives the request's buffers to the next request, once no
// worker runs.
func (b *batch) returnBuffers() {
	for range cap(b.free) {
		if bp := <-b.free; bp != nil {
			partBuffers.Put(bp)
		}
	}
}

// closeWatcher passes a multipart body through and notes whether its
// close delimiter ("--boundary--" at the start of a line) went by: the
// multipart reader answers a bare io.EOF both after it and when the body
// ends inside a form part's headers.
type closeWatcher struct {
	r       io.Reader
	delim   []byte // "\n--boundary--"
	tail    []byte // the last len(delim)-1 bytes read (at first "\n": the body starts a line)
	scratch []byte
	seen    bool
}

func (c *closeWatcher) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 && !c.seen {
		k := len(c.delim) - 1
		// The delimiter may straddle the last read and this one.
		c.scratch = append(append(c.scratch[:0], c.tail...), p[:min(n, k)]...)
		c.seen = bytes.Contains(c.scratch, c.delim) || bytes.Contains(p[:n], c.delim)
		if n >= k {
			c.tail = append(c.tail[:0], p[n-k:n]...)
		} else {
			c.tail = append(c.tail[:0], c.scratch[max(0, len(c.scratch)-k):]...)
		}
	}
	return n, err
}

// truncated records that the body ended inside e's form part.
func (b *batch) truncated(e *batchEntry) {
	b.malformed = upload.Errorf(upload.CodeBadRequest, "the multipart body is malformed: it ends inside a form part")
	b.fail(e, upload.Errorf(upload.CodeBadRequest, "the multipart body ends inside this form part"))
}

// check reads a form part's name and headers: its part number and exact
// size, or why it fails.
func (b *batch) check(p *multipart.Part, e *batchEntry) (n int, size int64, err error) {
	digits, ok := strings.CutPrefix(e.field, "part")
	if !ok {
		return 0, 0, upload.Errorf(upload.CodeBadRequest, "form part must be named part<N>, N the part number")
	}
	n, err = strconv.Atoi(digits)
	if err != nil || n < 1 || n > upload.MaxParts || strconv.Itoa(n) != digits {
		return 0, 0, upload.Errorf(upload.CodeInvalidPartNumber, "part<N>: N must be a whole number from 1 to 10000")
	}
	e.partNumber = n
	if n > b.plan.TotalParts {
		return 0, 0, (&upload.Error{Code: upload.CodeInvalidPartNumber, Message: "part number is out of range"}).
			WithDetails(map[string]any{"partNumber": n, "min": 1, "max": b.plan.TotalParts})
	}
	if b.seen[n] {
		return 0, 0, (&upload.Error{Code: upload.CodeBadRequest, Message: "part number appears more than once in the batch; only its first form part is used"}).
			WithDetails(map[string]any{"partNumber": n})
	}
	b.seen[n] = true
	switch cte := strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))); cte {
	case "", "binary", "8bit", "7bit":
	default:
		return 0, 0, (&upload.Error{Code: upload.CodeBadRequest, Message: "Content-Transfer-Encoding is not supported: send the part's raw bytes"}).
			WithDetails(map[string]any{"partNumber": n})
	}
	return n, b.plan.PartSize(n), nil
}

// readFull reads r into buf until buf is full or r ends; an error other
// than the end of r is returned.
func readFull(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err == io.EOF { //nolint:errorlint // a truncated part is io.ErrUnexpectedEOF
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// fail records why a form part failed; an internal error is logged and
// shown as a bare INTERNAL_ERROR.
func (b *batch) fail(e *batchEntry, err error) {
	ue, ok := upload.AsError(err)
	if !ok {
		logger(b.r).ErrorContext(b.r.Context(), "batch part failed", "partNumber", e.partNumber, "err", err)
		ue = &upload.Error{Code: upload.CodeInternal, Message: "an internal error occurred"}
	}
	e.err = ue
}

// requestLevel says whether an error concerns the whole request rather
// than one part.
func requestLevel(code string) bool {
	switch code {
	case upload.CodeUnauthorized, upload.CodeNotFound, upload.CodeSessionExpired,
		upload.CodeSessionNotActive, upload.CodeFileAlreadyCompleted:
		return true
	}
	return false
}

// respond sends 200 when every part was stored, 207 with each failing
// part's error otherwise, or the plain error response when nothing was
// stored and the failure concerns the whole request (or the body was
// malformed, or had no parts).
func (b *batch) respond(w http.ResponseWriter) error {
	stored := 0
	for _, e := range b.entries {
		if e.err == nil {
			stored++
		}
	}
	if stored == 0 {
		for _, e := range b.entries {
			if requestLevel(e.err.Code) {
				return e.err
			}
		}
		if b.malformed != nil {
			return b.malformed
		}
		if len(b.entries) == 0 {
			return upload.Errorf(upload.CodeBadRequest, "the batch has no parts")
		}
	}
	status := http.StatusOK
	out := make([]map[string]any, 0, len(b.entries))
	for _, e := range b.entries {
		if e.err == nil {
			out = append(out, map[string]any{
				"partNumber":     e.result.Part.PartNumber,
				"etag":           e.result.Part.ETag,
				"size":           e.result.Part.Size,
				"completedParts": e.result.CompletedParts,
				"totalParts":     e.result.TotalParts,
			})
			continue
		}
		status = http.StatusMultiStatus
		entry := map[string]any{"error": batchError{Code: e.err.Code, Message: e.err.Message, Details: e.err.Details}}
		if e.partNumber > 0 {
			entry["partNumber"] = e.partNumber
		}
		if !e.trailing {
			entry["field"] = e.field
		}
		out = append(out, entry)
	}
	writeData(w, status, map[string]any{"parts": out})
	return nil
}

// batchError is a failed part's error: the envelope's error without type.
type batchError struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}
