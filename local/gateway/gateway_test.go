package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/mocbuilders/moc-upload/shared/httpapi"
)

// Paths of two routes: a binary one (UploadPart) and one that takes text.
const (
	partPath    = "/api/mocs/uploads/sessions/s1/files/f1/parts/1"
	sessionPath = "/api/mocs/uploads/sessions"
)

// recorder is every function's handler: it remembers what it was invoked
// with and answers 200 with the decoded body's length, plus a CORS header
// of its own that a CORS-configured gateway must drop.
type recorder struct {
	mu    sync.Mutex
	calls int
	last  events.APIGatewayV2HTTPRequest
	size  int // EventSize of last
}

func (rec *recorder) handle(_ context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	size, err := EventSize(ev)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	body := []byte(ev.Body)
	if ev.IsBase64Encoded {
		if body, err = base64.StdEncoding.DecodeString(ev.Body); err != nil {
			return events.APIGatewayV2HTTPResponse{}, err
		}
	}
	rec.mu.Lock()
	rec.calls++
	rec.last, rec.size = ev, size
	rec.mu.Unlock()
	return events.APIGatewayV2HTTPResponse{
		StatusCode: http.StatusOK,
		Headers: map[string]string{
			"Content-Type":                "text/plain",
			"X-Request-Id":                "req-1",
			"Access-Control-Allow-Origin": "https://function.example",
			"Access-Control-Max-Age":      "1",
		},
		Body: strconv.Itoa(len(body)),
	}, nil
}

func (rec *recorder) state() (calls int, ev events.APIGatewayV2HTTPRequest, size int) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.calls, rec.last, rec.size
}

func newServer(t *testing.T, opts Options) (*httptest.Server, *recorder) {
	t.Helper()
	rec := &recorder{}
	handlers := map[string]Handler{}
	for _, rt := range httpapi.Routes {
		handlers[rt.Function] = rec.handle
	}
	gw, err := New(handlers, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	return srv, rec
}

type answer struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, url, contentType string, body []byte, header map[string]string) answer {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer user-1")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// wantTooLarge checks API Gateway HTTP API's 413 and that no function ran.
func wantTooLarge(t *testing.T, a answer, rec *recorder, callsBefore int) {
	t.Helper()
	if a.status != http.StatusRequestEntityTooLarge || a.body != `{"message":"Request Entity Too Large"}` ||
		a.header.Get("Content-Type") != "application/json" {
		t.Errorf("got %d %q (Content-Type %q), want 413 {\"message\":\"Request Entity Too Large\"} as application/json",
			a.status, a.body, a.header.Get("Content-Type"))
	}
	if calls, _, _ := rec.state(); calls != callsBefore {
		t.Errorf("the function ran (%d calls, want %d)", calls, callsBefore)
	}
}

func wantPassed(t *testing.T, a answer, rec *recorder, bodyLen int) (size int) {
	t.Helper()
	if a.status != http.StatusOK || a.body != strconv.Itoa(bodyLen) {
		t.Fatalf("got %d %q, want 200 from the function with the %d-byte body", a.status, a.body, bodyLen)
	}
	_, _, size = rec.state()
	return size
}

// eventOverhead probes the server with a body of n bytes (same number of
// digits as the bodies measured after it, so that the content-length
// header has the same length) and returns the event's size without its
// body field's value.
func eventOverhead(t *testing.T, srv *httptest.Server, rec *recorder, path, contentType string, n int) int {
	t.Helper()
	a := do(t, http.MethodPut, srv.URL+path, contentType, bytes.Repeat([]byte("a"), n), nil)
	if a.status != http.StatusOK {
		t.Fatalf("probe: %d %s", a.status, a.body)
	}
	_, ev, size := rec.state()
	return size - len(ev.Body)
}

// The invocation payload limit: the event's JSON may be 6,291,456 bytes,
// not one more; binary bodies count base64-encoded.
func TestLambdaPayloadLimit(t *testing.T) {
	srv, rec := newServer(t, Options{PayloadLimits: true})

	t.Run("binary", func(t *testing.T) {
		overhead := eventOverhead(t, srv, rec, partPath, "application/octet-stream", 4_000_000)
		// The largest body whose base64 fits: 3 bytes make 4 characters.
		fit := (MaxEventBytes - overhead) / 4 * 3
		size := wantPassed(t, do(t, http.MethodPut, srv.URL+partPath, "application/octet-stream", make([]byte, fit), nil), rec, fit)
		if size > MaxEventBytes || size <= MaxEventBytes-4 {
			t.Fatalf("event of %d bytes; want just under the limit %d", size, MaxEventBytes)
		}
		calls, _, _ := rec.state()
		over := fit + 3 // 4 more characters
		wantTooLarge(t, do(t, http.MethodPut, srv.URL+partPath, "application/octet-stream", make([]byte, over), nil), rec, calls)
		// A 5 MiB part, the contract's part size, is over it too.
		wantTooLarge(t, do(t, http.MethodPut, srv.URL+partPath, "application/octet-stream", make([]byte, 5<<20), nil), rec, calls)
	})

	t.Run("text", func(t *testing.T) {
		overhead := eventOverhead(t, srv, rec, partPath, "text/plain", 5_000_000)
		exact := MaxEventBytes - overhead
		size := wantPassed(t, do(t, http.MethodPut, srv.URL+partPath, "text/plain", bytes.Repeat([]byte("a"), exact), nil), rec, exact)
		if size != MaxEventBytes {
			t.Fatalf("event of %d bytes, want exactly %d", size, MaxEventBytes)
		}
		calls, _, _ := rec.state()
		wantTooLarge(t, do(t, http.MethodPut, srv.URL+partPath, "text/plain", bytes.Repeat([]byte("a"), exact+1), nil), rec, calls)
	})
}

// The HTTP API's 10 MB payload limit refuses bodies of more than
// 10,485,760 bytes before anything else, text or binary.
func TestAPIGatewayPayloadLimit(t *testing.T) {
	srv, rec := newServer(t, Options{PayloadLimits: true})
	for _, ct := range []string{"application/octet-stream", "application/json"} {
		calls, _, _ := rec.state()
		wantTooLarge(t, do(t, http.MethodPost, srv.URL+sessionPath, ct, bytes.Repeat([]byte("a"), MaxBodyBytes+1), nil), rec, calls)
		wantTooLarge(t, do(t, http.MethodPut, srv.URL+partPath, ct, bytes.Repeat([]byte("a"), 12<<20), nil), rec, calls)
	}
	// The connection stays usable after a refused body.
	if a := do(t, http.MethodPost, srv.URL+sessionPath, "application/json", []byte(`{}`), nil); a.status != http.StatusOK {
		t.Fatalf("small request after a refused one: %d %s", a.status, a.body)
	}
}

// readBody draws the 10 MB line exactly: 10,485,760 bytes pass (and are
// then up to the event's limit), one more does not, whether the length is
// declared (Content-Length) or not (-1, chunked).
func TestReadBodyBoundary(t *testing.T) {
	for _, declared := range []bool{true, false} {
		length := func(n int64) int64 {
			if declared {
				return n
			}
			return -1
		}
		b, err := readBody(bytes.NewReader(make([]byte, MaxBodyBytes)), length(MaxBodyBytes), MaxBodyBytes)
		if err != nil || len(b) != MaxBodyBytes {
			t.Fatalf("declared %v, exactly 10 MB: %d bytes, %v", declared, len(b), err)
		}
		rest := bytes.NewReader(make([]byte, MaxBodyBytes+1000))
		if _, err := readBody(rest, length(MaxBodyBytes+1000), MaxBodyBytes); !errors.Is(err, errBodyTooLarge) {
			t.Fatalf("declared %v, 10 MB + 1000: %v, want errBodyTooLarge", declared, err)
		}
		if rest.Len() != 0 {
			t.Fatalf("declared %v: %d bytes of the refused body left unread", declared, rest.Len())
		}
		if b, err := readBody(bytes.NewReader(make([]byte, 12<<20)), length(12<<20), -1); err != nil || len(b) != 12<<20 {
			t.Fatalf("declared %v, no limit: %d bytes, %v", declared, len(b), err)
		}
	}
	// A body shorter than its Content-Length is an error, not a short part.
	if b, err := readBody(bytes.NewReader(make([]byte, 1000)), 1001, MaxBodyBytes); err == nil {
		t.Fatalf("1000 bytes of a declared 1001: %d bytes, no error", len(b))
	}
	// A declared length beyond maxPreallocBytes is not allocated up front;
	// the body is read as it comes.
	if b, err := readBody(strings.NewReader("abc"), maxPreallocBytes+1, -1); err != nil || string(b) != "abc" {
		t.Fatalf("huge declared length: %q, %v", b, err)
	}
}

// The event's base64 body is the standard encoding of the request body.
func TestBase64String(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 31, 32, 33, 1000, 5 << 20, 5<<20 + 1} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7)
		}
		if got, want := base64String(b), base64.StdEncoding.EncodeToString(b); got != want {
			t.Fatalf("%d bytes: encodings differ", n)
		}
	}
}

// Without PayloadLimits the gateway has no limit: a 12 MB body reaches the
// function whole, binary or text.
func TestNoPayloadLimits(t *testing.T) {
	srv, rec := newServer(t, Options{})
	const n = 12 << 20
	wantPassed(t, do(t, http.MethodPut, srv.URL+partPath, "application/octet-stream", make([]byte, n), nil), rec, n)
	_, ev, size := rec.state()
	if !ev.IsBase64Encoded || ev.Headers["content-length"] != strconv.Itoa(n) || size <= MaxEventBytes {
		t.Fatalf("event: base64 %v, content-length %q, %d bytes", ev.IsBase64Encoded, ev.Headers["content-length"], size)
	}
	wantPassed(t, do(t, http.MethodPost, srv.URL+sessionPath, "text/plain", bytes.Repeat([]byte("x"), n), nil), rec, n)
	if _, ev, _ := rec.state(); ev.IsBase64Encoded || len(ev.Body) != n {
		t.Fatalf("text event: base64 %v, body %d bytes", ev.IsBase64Encoded, len(ev.Body))
	}
}

func preflightHeaders(origin, method, headers string) map[string]string {
	h := map[string]string{"Origin": origin, "Access-Control-Request-Method": method}
	if headers != "" {
		h["Access-Control-Request-Headers"] = headers
	}
	return h
}

func accessControl(h http.Header) map[string]string {
	out := map[string]string{}
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			out[k] = strings.Join(h.Values(k), ", ")
		}
	}
	return out
}

func TestCORSPreflight(t *testing.T) {
	srv, rec := newServer(t, Options{CORSOrigins: []string{"*"}})
	for _, path := range []string{partPath, "/no/such/route"} {
		a := do(t, http.MethodOptions, srv.URL+path, "", nil,
			preflightHeaders("http://localhost:5173", "PUT", "content-type,authorization,Content-MD5"))
		want := map[string]string{
			"Access-Control-Allow-Origin":  "*",
			"Access-Control-Allow-Methods": "GET,POST,PUT,DELETE,OPTIONS",
			"Access-Control-Allow-Headers": "authorization,content-type,content-md5,x-correlation-id,x-csrf-token",
			"Access-Control-Max-Age":       "600",
		}
		if a.status != http.StatusNoContent || a.body != "" {
			t.Errorf("%s: got %d %q, want 204 without a body", path, a.status, a.body)
		}
		if got := accessControl(a.header); !equalMaps(got, want) {
			t.Errorf("%s: headers %v, want %v (no Expose-Headers on a preflight)", path, got, want)
		}
	}
	if calls, _, _ := rec.state(); calls != 0 {
		t.Errorf("a function ran for a preflight")
	}
	// Not a preflight (no Access-Control-Request-Method): routed, and no
	// route takes OPTIONS.
	a := do(t, http.MethodOptions, srv.URL+partPath, "", nil, map[string]string{"Origin": "http://localhost:5173"})
	if a.status != http.StatusNotFound || a.body != `{"message":"Not Found"}` {
		t.Errorf("OPTIONS without Access-Control-Request-Method: %d %s, want 404", a.status, a.body)
	}
}

func TestCORSPreflightRefused(t *testing.T) {
	srv, _ := newServer(t, Options{CORSOrigins: []string{"http://localhost:5173", "https://*"}})
	allowed := do(t, http.MethodOptions, srv.URL+partPath, "", nil, preflightHeaders("http://localhost:5173", "PUT", "content-type"))
	if allowed.status != http.StatusNoContent || allowed.header.Get("Access-Control-Allow-Origin") != "http://localhost:5173" ||
		allowed.header.Get("Vary") != "Origin" {
		t.Errorf("listed origin: %d %v, want 204 echoing the origin with Vary: Origin", allowed.status, allowed.header)
	}
	wild := do(t, http.MethodOptions, srv.URL+partPath, "", nil, preflightHeaders("https://app.example", "GET", ""))
	if wild.header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("https://* origin: %v", wild.header)
	}
	for name, h := range map[string]map[string]string{
		"other origin":           preflightHeaders("http://localhost:3001", "PUT", "content-type"),
		"http origin vs https:*": preflightHeaders("http://app.example", "PUT", ""),
		"method not allowed":     preflightHeaders("http://localhost:5173", "PATCH", ""),
		"header not allowed":     preflightHeaders("http://localhost:5173", "PUT", "content-type,x-custom"),
	} {
		a := do(t, http.MethodOptions, srv.URL+partPath, "", nil, h)
		if a.status != http.StatusNoContent || len(accessControl(a.header)) != 0 {
			t.Errorf("%s: %d %v, want 204 without any Access-Control-* header", name, a.status, accessControl(a.header))
		}
	}
}

func TestCORSResponses(t *testing.T) {
	srv, _ := newServer(t, Options{CORSOrigins: []string{"http://localhost:5173"}, PayloadLimits: true})
	fromApp := map[string]string{"Origin": "http://localhost:5173"}
	wantCORS := map[string]string{
		"Access-Control-Allow-Origin":   "http://localhost:5173",
		"Access-Control-Expose-Headers": "X-Correlation-Id,X-Request-Id,Retry-After",
	}
	// The function's own Access-Control-* headers are replaced.
	a := do(t, http.MethodPost, srv.URL+sessionPath, "application/json", []byte(`{}`), fromApp)
	if got := accessControl(a.header); a.status != http.StatusOK || !equalMaps(got, wantCORS) || a.header.Get("X-Request-Id") != "req-1" {
		t.Errorf("function response: %d %v, want %v", a.status, got, wantCORS)
	}
	// The gateway's own answers carry them too.
	for name, a := range map[string]answer{
		"404": do(t, http.MethodGet, srv.URL+"/no/such/route", "", nil, fromApp),
		"413": do(t, http.MethodPut, srv.URL+partPath, "application/octet-stream", make([]byte, 7<<20), fromApp),
	} {
		if got := accessControl(a.header); !equalMaps(got, wantCORS) {
			t.Errorf("%s: %v, want %v", name, got, wantCORS)
		}
	}
	// No Origin, or one not allowed: no Access-Control-* header at all.
	for name, h := range map[string]map[string]string{
		"no origin":    nil,
		"other origin": {"Origin": "http://localhost:3001"},
	} {
		a := do(t, http.MethodPost, srv.URL+sessionPath, "application/json", []byte(`{}`), h)
		if got := accessControl(a.header); a.status != http.StatusOK || len(got) != 0 {
			t.Errorf("%s: %d %v, want 200 without Access-Control-* headers", name, a.status, got)
		}
	}
}

// Without CORSOrigins, no CORS: preflights are routed like any request and
// the function's headers pass through.
func TestCORSOff(t *testing.T) {
	srv, _ := newServer(t, Options{})
	a := do(t, http.MethodOptions, srv.URL+partPath, "", nil, preflightHeaders("http://localhost:5173", "PUT", ""))
	if a.status != http.StatusNotFound {
		t.Errorf("preflight without CORS: %d, want 404", a.status)
	}
	a = do(t, http.MethodPost, srv.URL+sessionPath, "application/json", []byte(`{}`), map[string]string{"Origin": "http://localhost:5173"})
	if a.header.Get("Access-Control-Allow-Origin") != "https://function.example" {
		t.Errorf("function's header: %v", a.header)
	}
}

func TestCORSOrigins(t *testing.T) {
	for in, want := range map[string][]string{
		"":                                      {"*"},
		"  ":                                    {"*"},
		"off":                                   nil,
		"OFF":                                   nil,
		"http://localhost:5173, https://a.test": {"http://localhost:5173", "https://a.test"},
		"https://*,":                            {"https://*"},
	} {
		if got := ParseCORSOrigins(in); strings.Join(got, "|") != strings.Join(want, "|") || (got == nil) != (want == nil) {
			t.Errorf("ParseCORSOrigins(%q) = %q, want %q", in, got, want)
		}
	}
	handlers := map[string]Handler{}
	for _, rt := range httpapi.Routes {
		handlers[rt.Function] = (&recorder{}).handle
	}
	for _, bad := range []string{"localhost:5173", "http://localhost:5173/", "ftp://a.test", "https://a.test/app"} {
		if _, err := New(handlers, Options{CORSOrigins: []string{bad}}); err == nil {
			t.Errorf("New accepted origin %q", bad)
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Each invocation's context has the function's deadline, as Lambda's
// does: DefaultFunctionTimeout unless told, none when told a negative one.
func TestFunctionTimeout(t *testing.T) {
	for _, tc := range []struct {
		timeout time.Duration
		want    time.Duration // 0: no deadline
	}{{0, DefaultFunctionTimeout}, {3 * time.Second, 3 * time.Second}, {-1, 0}} {
		deadlines := make(chan time.Duration, 1)
		handlers := map[string]Handler{}
		for _, rt := range httpapi.Routes {
			handlers[rt.Function] = func(ctx context.Context, _ events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
				d, ok := ctx.Deadline()
				left := time.Duration(0)
				if ok {
					left = time.Until(d)
				}
				deadlines <- left
				return events.APIGatewayV2HTTPResponse{StatusCode: 200}, nil
			}
		}
		gw, err := New(handlers, Options{FunctionTimeout: tc.timeout})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(gw)
		do(t, http.MethodPost, srv.URL+sessionPath, "application/json", []byte("{}"), nil)
		srv.Close()
		left := <-deadlines
		if (tc.want == 0) != (left == 0) || left > tc.want || left < tc.want-5*time.Second {
			t.Errorf("FunctionTimeout %v: %v left at the handler, want about %v", tc.timeout, left, tc.want)
		}
	}
}
