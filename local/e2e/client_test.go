package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// client talks to the local gateway as a web client would.
type client struct {
	t    *testing.T
	base string
	user string // bearer token; "" sends none
}

type response struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

func (c client) as(user string) client { c.user = user; return c }

func (c client) do(method, path, contentType string, body []byte, headers ...string) response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.user != "" {
		req.Header.Set("Authorization", "Bearer "+c.user)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	checkContract(c.t, req, body, resp.StatusCode, resp.Header, raw)
	r := response{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.Body); err != nil {
			c.t.Fatalf("%s %s: body is not JSON: %q", method, path, raw)
		}
	}
	return r
}

func (c client) json(method, path string, v any) response {
	c.t.Helper()
	var body []byte
	switch v := v.(type) {
	case nil:
	case string:
		body = []byte(v)
	default:
		var err error
		if body, err = json.Marshal(v); err != nil {
			c.t.Fatal(err)
		}
	}
	return c.do(method, path, "application/json", body)
}

func (c client) put(path string, body []byte, headers ...string) response {
	c.t.Helper()
	return c.do(http.MethodPut, path, "application/octet-stream", body, headers...)
}

// data returns the success envelope's data, failing unless status matches.
func (r response) data(t *testing.T, status int) map[string]any {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Raw)
	}
	if r.Body["success"] != true {
		t.Fatalf("success is not true: %s", r.Raw)
	}
	if _, ok := r.Body["timestamp"].(string); !ok {
		t.Fatalf("no timestamp: %s", r.Raw)
	}
	if id := r.Header.Get("X-Correlation-Id"); id == "" || r.Header.Get("X-Request-Id") != id {
		t.Fatalf("X-Correlation-Id %q vs X-Request-Id %q on a success: the old web client reads X-Request-Id", id, r.Header.Get("X-Request-Id"))
	}
	d, ok := r.Body["data"].(map[string]any)
	if !ok {
		t.Fatalf("no data object: %s", r.Raw)
	}
	if _, doubled := d["data"]; doubled {
		t.Fatalf("data is wrapped twice: %s", r.Raw)
	}
	return d
}

// fail checks the contract's error envelope and returns error.details.
func (r response) fail(t *testing.T, status int, code string) map[string]any {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d (%s): %s", r.Status, status, code, r.Raw)
	}
	if r.Body["success"] != false {
		t.Fatalf("success is not false: %s", r.Raw)
	}
	e, _ := r.Body["error"].(map[string]any)
	if e == nil || e["code"] != code || e["type"] != errorType(code) {
		t.Fatalf("error code %v / type %v, want %s / %s: %s", e["code"], e["type"], code, errorType(code), r.Raw)
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Fatalf("no error message: %s", r.Raw)
	}
	id, _ := r.Body["correlationId"].(string)
	if id == "" || r.Header.Get("X-Correlation-Id") != id || r.Header.Get("X-Request-Id") != id {
		t.Fatalf("correlationId %q vs X-Correlation-Id %q vs X-Request-Id %q", id, r.Header.Get("X-Correlation-Id"), r.Header.Get("X-Request-Id"))
	}
	details, _ := e["details"].(map[string]any)
	return details
}

// errorType is the error.type the old web client keys on: the code, except
// that a 410 says EXPIRED_SESSION (its mapHttpErrorToUploadError shows the
// session-expired banner only for that value).
func errorType(code string) string {
	if code == "SESSION_EXPIRED" {
		return "EXPIRED_SESSION"
	}
	return code
}
