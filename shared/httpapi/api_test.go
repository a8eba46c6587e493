package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"
	"github.com/google/uuid"

	"github.com/mocbuilders/moc-upload/shared/httpapi"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// TestMain keeps the refused-request log lines out of the test output.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	os.Exit(m.Run())
}

const (
	sessionID = "6f1c2d3e-4a5b-4c6d-8e7f-112233445566"
	fileID    = "0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3"
	mocID     = "11111111-2222-4333-8444-555555555555"
)

var (
	sessionPath  = "/api/mocs/uploads/sessions/" + sessionID
	filesPath    = sessionPath + "/files"
	partPath     = filesPath + "/" + fileID + "/parts/"
	completePath = filesPath + "/" + fileID + "/complete"
	finalizePath = "/api/mocs/uploads/finalize"
	createPath   = "/api/mocs/uploads/sessions"
)

// request is one API Gateway HTTP API (payload 2.0) event.
type request struct {
	method, path, body string
	headers            map[string]string
	sub                string // the JWT sub claim; "" for no authorizer
}

// proxy runs req through h as the Lambda adapter does, so the handler sees
// the authorizer's claims in its context.
func proxy(t testing.TB, h http.Handler, req request) events.APIGatewayV2HTTPResponse {
	t.Helper()
	ev := events.APIGatewayV2HTTPRequest{
		Version:  "2.0",
		RouteKey: "$default",
		RawPath:  req.path,
		Headers:  req.headers,
		Body:     req.body,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RequestID:  "gw-request-1",
			DomainName: "api.example.com",
			HTTP:       events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: req.method, Path: req.path, SourceIP: "192.0.2.1"},
		},
	}
	if req.sub != "" {
		ev.RequestContext.Authorizer = &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
			JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{Claims: map[string]string{"sub": req.sub}},
		}
	}
	resp, err := httpadapter.NewV2(h).ProxyWithContext(context.Background(), ev)
	if err != nil {
		t.Fatalf("%s %s: proxy: %v", req.method, req.path, err)
	}
	return resp
}

// asUser is req made by user u1.
func asUser(method, path, body string) request {
	return request{method: method, path: path, body: body, sub: "u1"}
}

type errorEnvelope struct {
	Success bool `json:"success"`
	Error   struct {
		Code    string         `json:"code"`
		Type    string         `json:"type"`
		Message string         `json:"message"`
		Details map[string]any `json:"details"`
	} `json:"error"`
	CorrelationID string `json:"correlationId"`
	Timestamp     string `json:"timestamp"`
}

// wantError checks that a response is the contract's error envelope with
// status and code, and returns it.
func wantError(t testing.TB, status int, headers map[string]string, body string, wantStatus int, wantCode string) errorEnvelope {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status = %d, want %d; body %s", status, wantStatus, body)
	}
	return checkErrorEnvelope(t, status, headers, body, wantCode)
}

// checkErrorEnvelope checks the shape of an error response whatever its
// status: the contract's keys, code == type, a message, a correlation id
// equal to the X-Correlation-Id header, an RFC 3339 timestamp, and a
// status that is StatusOf(code).
func checkErrorEnvelope(t testing.TB, status int, headers map[string]string, body, wantCode string) errorEnvelope {
	t.Helper()
	if ct := headers["Content-Type"]; !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &keys); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, body)
	}
	if got, want := slices.Sorted(mapKeys(keys)), []string{"correlationId", "error", "success", "timestamp"}; !slices.Equal(got, want) {
		t.Errorf("body keys = %q, want %q", got, want)
	}
	var errKeys map[string]json.RawMessage
	if err := json.Unmarshal(keys["error"], &errKeys); err != nil {
		t.Fatalf("error is not an object: %s", keys["error"])
	}
	for k := range errKeys {
		if !slices.Contains([]string{"code", "type", "message", "details"}, k) {
			t.Errorf("error has unexpected key %q", k)
		}
	}
	var env errorEnvelope
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&env); err != nil {
		t.Fatalf("body: %v: %s", err, body)
	}
	if env.Success || string(keys["success"]) != "false" {
		t.Errorf("success = %s, want false", keys["success"])
	}
	if wantCode != "" && env.Error.Code != wantCode {
		t.Errorf("error.code = %q (%s), want %q", env.Error.Code, env.Error.Message, wantCode)
	}
	wantType := env.Error.Code // repeated, but EXPIRED_SESSION for a 410 (the old web client's name)
	if wantType == upload.CodeSessionExpired {
		wantType = "EXPIRED_SESSION"
	}
	if env.Error.Type != wantType {
		t.Errorf("error.type = %q, want %q for code %q", env.Error.Type, wantType, env.Error.Code)
	}
	if env.Error.Message == "" {
		t.Error("error.message is empty")
	}
	if got := httpapi.StatusOf(env.Error.Code); got != status {
		t.Errorf("status %d for code %s, whose status is %d", status, env.Error.Code, got)
	}
	if env.CorrelationID == "" || headers["X-Correlation-Id"] != env.CorrelationID || headers["X-Request-Id"] != env.CorrelationID {
		t.Errorf("correlationId = %q, X-Correlation-Id = %q, X-Request-Id = %q, want the same non-empty id",
			env.CorrelationID, headers["X-Correlation-Id"], headers["X-Request-Id"])
	}
	if _, err := time.Parse(time.RFC3339Nano, env.Timestamp); err != nil || !strings.HasSuffix(env.Timestamp, "Z") {
		t.Errorf("timestamp = %q, want RFC 3339 UTC", env.Timestamp)
	}
	return env
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// wantProxyError is wantError for a proxied response.
func wantProxyError(t testing.TB, resp events.APIGatewayV2HTTPResponse, status int, code string) errorEnvelope {
	t.Helper()
	return wantError(t, resp.StatusCode, resp.Headers, resp.Body, status, code)
}

// routeSamples is one request per route, with valid path values.
func routeSamples() []request {
	return []request{
		{method: "POST", path: createPath, body: `{"files":[]}`},
		{method: "GET", path: sessionPath},
		{method: "DELETE", path: sessionPath},
		{method: "POST", path: filesPath, body: `{}`},
		{method: "PUT", path: partPath + "1", body: "bytes"},
		{method: "POST", path: partPath + "batch", body: "--x--", headers: map[string]string{"content-type": "multipart/form-data; boundary=x"}},
		{method: "GET", path: partPath + "1/url"},
		{method: "POST", path: partPath + "urls"},
		{method: "POST", path: completePath},
		{method: "POST", path: finalizePath, body: `{}`},
		{method: "GET", path: "/api/mocs/" + mocID},
	}
}

// TestRouteSamplesCoverRoutes keeps routeSamples in step with the table.
func TestRouteSamplesCoverRoutes(t *testing.T) {
	if got, want := len(routeSamples()), len(httpapi.Routes); got != want {
		t.Errorf("%d route samples for %d routes", got, want)
	}
}

// TestUnauthenticated: without the authorizer's context every route is a
// 401 in the contract's shape, before anything else is looked at (the
// service is nil).
func TestUnauthenticated(t *testing.T) {
	h := httpapi.New(nil).AllRoutes()
	for _, rt := range routeSamples() {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			// Plain net/http: no API Gateway context at all.
			r := httptest.NewRequest(rt.method, rt.path, strings.NewReader(rt.body))
			r.Header.Set("Authorization", "Bearer u1") // only the authorizer's claim counts
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			headers := map[string]string{}
			for k := range w.Header() {
				headers[k] = w.Header().Get(k)
			}
			env := wantError(t, w.Code, headers, w.Body.String(), http.StatusUnauthorized, upload.CodeUnauthorized)
			if _, err := uuid.Parse(env.CorrelationID); err != nil {
				t.Errorf("correlationId = %q, want a new UUID when neither the client nor the gateway gave one", env.CorrelationID)
			}

			// Through the adapter, without an authorizer.
			resp := proxy(t, h, rt)
			wantProxyError(t, resp, http.StatusUnauthorized, upload.CodeUnauthorized)
		})
	}
}

func TestBadSubject(t *testing.T) {
	h := httpapi.New(nil).AllRoutes()
	for _, sub := range []string{"a/b", "u 1", "ü", strings.Repeat("u", 129), "u1\n"} {
		t.Run(sub, func(t *testing.T) {
			resp := proxy(t, h, request{method: "GET", path: sessionPath, sub: sub})
			wantProxyError(t, resp, http.StatusUnauthorized, upload.CodeUnauthorized)
		})
	}
	t.Run("authorizer without JWT", func(t *testing.T) {
		ev := events.APIGatewayV2HTTPRequest{
			RawPath: sessionPath,
			RequestContext: events.APIGatewayV2HTTPRequestContext{
				HTTP:       events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "GET", Path: sessionPath},
				Authorizer: &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{Lambda: map[string]any{"sub": "u1"}},
			},
		}
		resp, err := httpadapter.NewV2(h).ProxyWithContext(context.Background(), ev)
		if err != nil {
			t.Fatal(err)
		}
		wantProxyError(t, resp, http.StatusUnauthorized, upload.CodeUnauthorized)
	})
}

// TestGoodSubject: subjects the pattern allows get past authentication (to
// the bad path id here).
func TestGoodSubject(t *testing.T) {
	h := httpapi.New(nil).AllRoutes()
	for _, sub := range []string{"u1", sessionID, "user@example.com", "a.b_c-d:e+f=g", strings.Repeat("u", 128)} {
		t.Run(sub, func(t *testing.T) {
			resp := proxy(t, h, request{method: "GET", path: "/api/mocs/uploads/sessions/123", sub: sub})
			wantProxyError(t, resp, http.StatusBadRequest, upload.CodeBadRequest)
		})
	}
}

func TestCorrelationID(t *testing.T) {
	h := httpapi.New(nil).AllRoutes()
	tests := []struct {
		name   string
		header string
		want   string
	}{
		{"client's id", "client-id-42", "client-id-42"},
		{"gateway's request id", "", "gw-request-1"},
		{"128 characters", strings.Repeat("c", 128), strings.Repeat("c", 128)},
		{"too long: gateway's request id", strings.Repeat("c", 129), "gw-request-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := request{method: "GET", path: sessionPath}
			if tt.header != "" {
				req.headers = map[string]string{"X-Correlation-Id": tt.header}
			}
			env := wantProxyError(t, proxy(t, h, req), http.StatusUnauthorized, upload.CodeUnauthorized)
			if env.CorrelationID != tt.want {
				t.Errorf("correlationId = %q, want %q", env.CorrelationID, tt.want)
			}
		})
	}
}

// TestBadJSON: bodies that are not a JSON object are 400 BAD_REQUEST on
// every route that reads one, before the (nil) service is called.
func TestBadJSON(t *testing.T) {
	h := httpapi.New(nil).AllRoutes()
	routes := []struct {
		path     string
		optional bool // an empty body is allowed
	}{
		{createPath, false},
		{filesPath, false},
		{completePath, true},
		{finalizePath, false},
	}
	bodies := []struct {
		name, body string
		empty      bool
	}{
		{"truncated", `{"files":`, false},
		{"not JSON", `files=1`, false},
		{"single quotes", `{'title':'x'}`, false},
		{"trailing garbage", `{} x`, false},
		{"two objects", `{}{}`, false},
		{"array", `[]`, false},
		{"string", `"x"`, false},
		{"number", `1`, false},
		{"bool", `true`, false},
		{"empty", ``, true},
		{"white space", " \n\t ", true},
	}
	for _, rt := range routes {
		for _, b := range bodies {
			if b.empty && rt.optional {
				continue // reaches the service
			}
			t.Run(rt.path+"/"+b.name, func(t *testing.T) {
				resp := proxy(t, h, asUser("POST", rt.path, b.body))
				wantProxyError(t, resp, http.StatusBadRequest, upload.CodeBadRequest)
			})
		}
	}
}

// TestNullBody: "null" is valid JSON but not an object, so it is a 400
// like the other non-objects (json.Unmarshal alone would take it as "no
// fields").
func TestNullBody(t *testing.T) {
	h := httpapi.New(nil).AllRoutes()
	for _, path := range []string{createPath, finalizePath} {
		t.Run(path, func(t *testing.T) {
			resp := proxy(t, h, asUser("POST", path, "null"))
			wantProxyError(t, resp, http.StatusBadRequest, upload.CodeBadRequest)
		})
	}
}

// TestWrongJSONType: a field of the wrong JSON type is a 422 naming it.
func TestWrongJSONType(t *testing.T) {
	h := httpapi.New(nil).AllRoutes()
	tests := []struct {
		name, path, body string
		field            string
	}{
		{"files not a list", createPath, `{"files":"x"}`, "files"},
		{"size a string", createPath, `{"files":[{"category":"instruction","name":"a.pdf","size":"abc","type":"application/pdf","ext":"pdf"}]}`, "files[0].size"},
		{"third size a string", createPath, `{"files":[{"size":1},{"size":2,"name":"b"},{"name":"c","size":"3"}]}`, "files[2].size"},
		{"name a number", createPath, `{"files":[{"name":1}]}`, "files[0].name"},
		{"second file a list", createPath, `{"files":[{}, [1, {"size":"x"}]]}`, "files[1]"},
		{"register: size a string", filesPath, `{"category":"instruction","name":"a.pdf","size":"abc","type":"application/pdf","ext":"pdf"}`, "size"},
		{"register: size a fraction", filesPath, `{"size":1.5}`, "size"},
		{"register: size too big for int64", filesPath, `{"size":1e30}`, "size"},
		{"register: checksums a string", filesPath, `{"checksums":"abc"}`, "checksums"},
		{"register: md5 a number", filesPath, `{"checksums":{"md5":5}}`, "checksums.md5"},
		{"register: alias size a string", filesPath, `{"fileSizeBytes":"12"}`, "fileSizeBytes"},
		{"complete: parts an object", completePath, `{"parts":{}}`, "parts"},
		{"complete: partNumber a string", completePath, `{"parts":[{"partNumber":1,"etag":"x"},{"partNumber":"2","etag":"y"}]}`, "parts[1].partNumber"},
		{"finalize: title a number", finalizePath, `{"uploadSessionId":"` + sessionID + `","title":5}`, "title"},
		{"finalize: tags a string", finalizePath, `{"uploadSessionId":"` + sessionID + `","title":"t","tags":"a,b"}`, "tags"},
		{"finalize: tag a number", finalizePath, `{"uploadSessionId":"` + sessionID + `","title":"t","tags":["a",1]}`, "tags[1]"},
		{"finalize: description an object", finalizePath, `{"uploadSessionId":"` + sessionID + `","title":"t","description":{}}`, "description"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := proxy(t, h, asUser("POST", tt.path, tt.body))
			env := wantProxyError(t, resp, http.StatusUnprocessableEntity, upload.CodeValidation)
			errs, _ := env.Error.Details["errors"].(map[string]any)
			if msg, ok := errs[tt.field].(string); !ok || msg == "" || len(errs) != 1 {
				t.Errorf("details.errors = %v, want only %q", env.Error.Details["errors"], tt.field)
			}
		})
	}
}

// TestFinalizeFieldRules: finalize checks its fields before the (nil)
// service is called.
func TestFinalizeFieldRules(t *testing.T) {
	h := httpapi.New(nil).AllRoutes()
	tests := []struct {
		name, body string
		fields     []string
	}{
		{"no session id", `{"title":"Castle"}`, []string{"uploadSessionId"}},
		{"bad session id", `{"uploadSessionId":"123","title":"Castle"}`, []string{"uploadSessionId"}},
		{"alias with a bad id", `{"sessionId":"123","title":"Castle"}`, []string{"uploadSessionId"}},
		{"uuid without dashes", `{"uploadSessionId":"` + strings.ReplaceAll(sessionID, "-", "") + `","title":"Castle"}`, []string{"uploadSessionId"}},
		{"blank title", `{"uploadSessionId":"` + sessionID + `","title":"   "}`, []string{"title"}},
		{"title of 201", `{"uploadSessionId":"` + sessionID + `","title":"` + strings.Repeat("t", 201) + `"}`, []string{"title"}},
		{"21 tags", `{"uploadSessionId":"` + sessionID + `","title":"t","tags":[` + strings.Repeat(`"a",`, 20) + `"a"]}`, []string{"tags"}},
		{"theme of 101", `{"uploadSessionId":"` + sessionID + `","title":"t","theme":"` + strings.Repeat("h", 101) + `"}`, []string{"theme"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := wantProxyError(t, proxy(t, h, asUser("POST", finalizePath, tt.body)), http.StatusUnprocessableEntity, upload.CodeValidation)
			errs, _ := env.Error.Details["errors"].(map[string]any)
			got := slices.Sorted(mapKeys(errs))
			if want := slices.Sorted(slices.Values(tt.fields)); !slices.Equal(got, want) {
				t.Errorf("details.errors names %q, want %q", got, want)
			}
		})
	}
}

func TestBodyTooLarge(t *testing.T) {
	api := httpapi.New(nil)
	api.MaxJSONBytes = 64
	h := api.AllRoutes()
	// Exactly the limit is read, and fails finalize's field rules (422)
	// before the service is called; one byte more is a 413.
	atLimit := `{"uploadSessionId":"x","title":""}`
	atLimit += strings.Repeat(" ", 64-len(atLimit))
	t.Run("at the limit", func(t *testing.T) {
		wantProxyError(t, proxy(t, h, asUser("POST", finalizePath, atLimit)), http.StatusUnprocessableEntity, upload.CodeValidation)
	})
	for _, path := range []string{createPath, filesPath, completePath, finalizePath} {
		t.Run(path, func(t *testing.T) {
			for _, body := range []string{atLimit + " ", `{"title":"` + strings.Repeat("t", 1000) + `"}`, strings.Repeat("x", 100)} {
				env := wantProxyError(t, proxy(t, h, asUser("POST", path, body)), http.StatusRequestEntityTooLarge, upload.CodePayloadTooLarge)
				if !strings.Contains(env.Error.Message, "64") {
					t.Errorf("message = %q, want the limit in it", env.Error.Message)
				}
			}
		})
	}
	t.Run("default limit is 1 MiB", func(t *testing.T) {
		if got := httpapi.New(nil).MaxJSONBytes; got != 1<<20 {
			t.Errorf("MaxJSONBytes = %d, want %d", got, 1<<20)
		}
		big := `{"title":"` + strings.Repeat("t", 1<<20) + `"}`
		wantProxyError(t, proxy(t, httpapi.New(nil).AllRoutes(), asUser("POST", finalizePath, big)), http.StatusRequestEntityTooLarge, upload.CodePayloadTooLarge)
	})
}

// TestBadPathIDs: path values that are not UUIDs are 400 naming the
// parameter.
func TestBadPathIDs(t *testing.T) {
	h := httpapi.New(nil).AllRoutes()
	bad := []string{
		"123", "not-a-uuid", sessionID[:35], sessionID + "0",
		strings.ReplaceAll(sessionID, "-", ""), // 32 hex digits: uuid.Parse takes it
		"{" + sessionID + "}",                  // braces: uuid.Parse takes them
		"urn:uuid:" + sessionID,                // URN: uuid.Parse takes it
		"6f1c2d3e-4a5b-4c6d-8e7f-11223344556g",
		"%20" + sessionID[1:],
	}
	for _, id := range bad {
		tests := []struct {
			method, path, body, param string
		}{
			{"GET", "/api/mocs/uploads/sessions/" + id, "", "sessionId"},
			{"DELETE", "/api/mocs/uploads/sessions/" + id, "", "sessionId"},
			{"POST", "/api/mocs/uploads/sessions/" + id + "/files", "{}", "sessionId"},
			{"PUT", "/api/mocs/uploads/sessions/" + id + "/files/" + fileID + "/parts/1", "x", "sessionId"},
			{"PUT", filesPath + "/" + id + "/parts/1", "x", "fileId"},
			{"POST", "/api/mocs/uploads/sessions/" + id + "/files/" + fileID + "/complete", "", "sessionId"},
			{"POST", filesPath + "/" + id + "/complete", "", "fileId"},
			{"GET", "/api/mocs/" + id, "", "mocId"},
		}
		for _, tt := range tests {
			t.Run(tt.method+" "+tt.path, func(t *testing.T) {
				env := wantProxyError(t, proxy(t, h, asUser(tt.method, tt.path, tt.body)), http.StatusBadRequest, upload.CodeBadRequest)
				if got := env.Error.Details["parameter"]; got != tt.param {
					t.Errorf("details.parameter = %v, want %s", got, tt.param)
				}
			})
		}
	}
}

func TestBadPartNumber(t *testing.T) {
	h := httpapi.New(nil).AllRoutes()
	for _, n := range []string{"0", "-1", "10001", "99999999999999999999", "abc", "1.5", "1e3", "0x10", "%201"} {
		t.Run(n, func(t *testing.T) {
			env := wantProxyError(t, proxy(t, h, asUser("PUT", partPath+n, "bytes")), http.StatusBadRequest, upload.CodeInvalidPartNumber)
			if env.Error.Details["partNumber"] == nil {
				t.Errorf("details = %v, want the part number", env.Error.Details)
			}
		})
	}
}

func TestUnknownRoute(t *testing.T) {
	h := httpapi.New(nil).AllRoutes()
	tests := []request{
		{method: "GET", path: "/"},
		{method: "GET", path: "/api/nothing"},
		{method: "GET", path: "/api/mocs/uploads/sessions"},
		{method: "PATCH", path: sessionPath},
		{method: "POST", path: sessionPath + "/unknown"},
		{method: "GET", path: partPath + "1/urls"},
		{method: "GET", path: partPath + "urls"},
		{method: "GET", path: "/api/mocs/" + mocID + "/files"},
	}
	for _, tt := range tests {
		for _, sub := range []string{"", "u1"} {
			tt.sub = sub
			t.Run(fmt.Sprintf("%s %s sub=%q", tt.method, tt.path, sub), func(t *testing.T) {
				env := wantProxyError(t, proxy(t, h, tt), http.StatusNotFound, upload.CodeNotFound)
				if env.CorrelationID != "gw-request-1" {
					t.Errorf("correlationId = %q, want the gateway's request id", env.CorrelationID)
				}
			})
		}
	}
}

// TestFunctionHandler: a function's handler serves its own route only.
func TestFunctionHandler(t *testing.T) {
	h, err := httpapi.New(nil).Handler("GetMoc")
	if err != nil {
		t.Fatal(err)
	}
	wantProxyError(t, proxy(t, h, asUser("GET", "/api/mocs/nope", "")), http.StatusBadRequest, upload.CodeBadRequest)
	wantProxyError(t, proxy(t, h, asUser("POST", createPath, `{"files":"x"}`)), http.StatusNotFound, upload.CodeNotFound)
	if _, err := httpapi.New(nil).Handler("NoSuchFunction"); err == nil {
		t.Error("Handler(NoSuchFunction) = nil error")
	}
}

// TestPanicIsNotLeaked: a handler that panics (here: the nil service is
// called) answers 500 INTERNAL_ERROR without the panic's text, and logs it.
func TestPanicIsNotLeaked(t *testing.T) {
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	h := httpapi.New(nil).AllRoutes()
	for _, rt := range []request{asUser("GET", sessionPath, ""), asUser("DELETE", sessionPath, ""), asUser("GET", "/api/mocs/"+mocID, "")} {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			logs.Reset()
			resp := proxy(t, h, rt)
			env := wantProxyError(t, resp, http.StatusInternalServerError, upload.CodeInternal)
			for _, leak := range []string{"panic", "nil pointer", "runtime error", "goroutine", ".go:"} {
				if strings.Contains(resp.Body, leak) {
					t.Errorf("body leaks %q: %s", leak, resp.Body)
				}
			}
			if env.Error.Details != nil {
				t.Errorf("details = %v, want none", env.Error.Details)
			}
			if !strings.Contains(logs.String(), "nil pointer") {
				t.Errorf("the panic is not logged: %s", logs.String())
			}
		})
	}
}

// fakeTx is a Tx where no session exists and the daily quota is either
// free or used up; any other method panics (nil embedded interface).
type fakeTx struct {
	upload.Tx
	quotaUsed bool
}

func (tx fakeTx) GetSession(context.Context, string, string, bool) (*upload.Session, error) {
	return nil, fmt.Errorf("fake: %w", upload.ErrNotFound)
}

func (tx fakeTx) IncrementDailyUploads(context.Context, string, time.Time, int) (bool, error) {
	return !tx.quotaUsed, nil
}

func (tx fakeTx) InsertSession(context.Context, *upload.Session) error { return nil }

type fakeStore struct{ tx fakeTx }

func (s fakeStore) InTx(_ context.Context, fn func(upload.Tx) error) error { return fn(s.tx) }

// fakeAPI is the API over a Service with fakeStore.
func fakeAPI(quotaUsed bool) *httpapi.API {
	return httpapi.New(&upload.Service{
		Store:  fakeStore{fakeTx{quotaUsed: quotaUsed}},
		Limits: upload.DefaultLimits(),
		Now:    func() time.Time { return time.Date(2025, 6, 1, 23, 59, 30, 0, time.UTC) },
		NewID:  func() string { return sessionID },
	})
}

const pdfFile = `{"category":"instruction","name":"castle.pdf","size":1000,"type":"application/pdf","ext":"pdf"}`

func TestCreateSessionEnvelope(t *testing.T) {
	h := fakeAPI(false).AllRoutes()
	// The type is normalized before it is checked.
	resp := proxy(t, h, asUser("POST", createPath, `{"files":[{"category":"instruction","name":"castle.pdf","size":1000,"type":"Application/PDF; charset=binary","ext":"pdf"}]}`))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status = %d, want 201: %s", resp.StatusCode, resp.Body)
	}
	var body struct {
		Success   *bool                      `json:"success"`
		Data      map[string]json.RawMessage `json:"data"`
		Timestamp string                     `json:"timestamp"`
		Error     json.RawMessage            `json:"error"`
	}
	if err := json.Unmarshal([]byte(resp.Body), &body); err != nil {
		t.Fatal(err)
	}
	if body.Success == nil || !*body.Success || body.Error != nil {
		t.Errorf("body = %s, want success true and no error", resp.Body)
	}
	if got, want := slices.Sorted(mapKeys(body.Data)), []string{"expiresAt", "partSizeBytes", "sessionId"}; !slices.Equal(got, want) {
		t.Errorf("data keys = %q, want %q (one data wrapper)", got, want)
	}
	if string(body.Data["sessionId"]) != strconv.Quote(sessionID) || string(body.Data["partSizeBytes"]) != "5242880" ||
		string(body.Data["expiresAt"]) != `"2025-06-02T00:29:30Z"` {
		t.Errorf("data = %s", resp.Body)
	}
	if _, err := time.Parse(time.RFC3339Nano, body.Timestamp); err != nil {
		t.Errorf("timestamp = %q: %v", body.Timestamp, err)
	}
}

func TestCreateSessionErrors(t *testing.T) {
	h := fakeAPI(false).AllRoutes()
	tests := []struct {
		name, body string
		status     int
		code       string
	}{
		{"no files", `{"files":[]}`, 422, upload.CodeValidation},
		{"size 0", `{"files":[{"category":"instruction","name":"castle.pdf","size":0,"type":"application/pdf","ext":"pdf"}]}`, 422, upload.CodeValidation},
		{"png as instruction", `{"files":[{"category":"instruction","name":"castle.pdf","size":1000,"type":"image/png","ext":"pdf"}]}`, 415, upload.CodeUnsupportedMediaType},
		{"pdf too large", `{"files":[{"category":"instruction","name":"castle.pdf","size":52428801,"type":"application/pdf","ext":"pdf"}]}`, 413, upload.CodeFileTooLarge},
		{"no instruction", `{"files":[{"category":"image","name":"a.png","size":1000,"type":"image/png","ext":"png"}]}`, 400, upload.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantProxyError(t, proxy(t, h, asUser("POST", createPath, tt.body)), tt.status, tt.code)
		})
	}
}

func TestCreateSessionRateLimited(t *testing.T) {
	resp := proxy(t, fakeAPI(true).AllRoutes(), asUser("POST", createPath, `{"files":[`+pdfFile+`]}`))
	env := wantProxyError(t, resp, http.StatusTooManyRequests, upload.CodeTooManyRequests)
	if got := resp.Headers["Retry-After"]; got != "30" {
		t.Errorf("Retry-After = %q, want 30 (seconds to the next UTC day)", got)
	}
	if env.Error.Details["nextAllowedAt"] != "2025-06-02T00:00:00Z" || fmt.Sprint(env.Error.Details["retryAfterSeconds"]) != "30" {
		t.Errorf("details = %v", env.Error.Details)
	}
}

// TestRegisterFileReachesStore: bodies that pass every check end at the
// fake store's missing session (404); the seed story's spelling included.
func TestRegisterFileReachesStore(t *testing.T) {
	h := fakeAPI(false).AllRoutes()
	tests := []struct {
		name, body string
		status     int
		code       string
	}{
		{"contract spelling", pdfFile, 404, upload.CodeNotFound},
		{"checksums", `{"category":"image","name":"a.png","size":1,"type":"image/png","ext":"png","checksums":{"md5":"` + strings.Repeat("0", 32) + `","sha256":"` + strings.Repeat("F", 64) + `"}}`, 404, upload.CodeNotFound},
		{"seed spelling", `{"fileKey":"castle.pdf","fileSizeBytes":1000,"mimeType":"application/pdf"}`, 404, upload.CodeNotFound},
		{"seed spelling, image", `{"fileKey":"photo.JPG","fileSizeBytes":1000,"mimeType":"image/jpeg"}`, 404, upload.CodeNotFound},
		{"seed spelling, no ext", `{"fileKey":"castle","fileSizeBytes":1000,"mimeType":"application/pdf"}`, 422, upload.CodeValidation},
		{"seed spelling, unknown type", `{"fileKey":"a.gif","fileSizeBytes":1000,"mimeType":"image/gif"}`, 422, upload.CodeValidation},
		{"bad md5", `{"category":"instruction","name":"a.pdf","size":1,"type":"application/pdf","ext":"pdf","checksums":{"md5":"abc"}}`, 422, upload.CodeValidation},
		{"wrong type", `{"category":"instruction","name":"a.pdf","size":1,"type":"text/csv","ext":"pdf"}`, 415, upload.CodeUnsupportedMediaType},
		{"too large", `{"category":"image","name":"a.png","size":20971521,"type":"image/png","ext":"png"}`, 413, upload.CodeFileTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantProxyError(t, proxy(t, h, asUser("POST", filesPath, tt.body)), tt.status, tt.code)
		})
	}
}

// TestUncleanPath: a path with "//", "/./" or "/../" is no route (404 in
// the contract's shape), not net/http's redirect to the clean path.
func TestUncleanPath(t *testing.T) {
	h := httpapi.New(nil).AllRoutes()
	for _, path := range []string{"/api//mocs/" + mocID, "/api/mocs/uploads/sessions/../" + mocID, "/api/mocs/./" + mocID} {
		t.Run(path, func(t *testing.T) {
			resp := proxy(t, h, asUser("GET", path, ""))
			checkErrorEnvelope(t, resp.StatusCode, resp.Headers, resp.Body, "")
			if resp.StatusCode/100 != 4 {
				t.Errorf("status = %d, want a 4xx", resp.StatusCode)
			}
		})
	}
}

// TestWrongJSONTypeMessage: the rule reads plainly, with the right article.
func TestWrongJSONTypeMessage(t *testing.T) {
	h := httpapi.New(nil).AllRoutes()
	tests := []struct{ body, field, msg string }{
		{`{"files":[{"size":"1"}]}`, "files[0].size", "must be a whole number"},
		{`{"files":[{"name":{}}]}`, "files[0].name", "must be a string"},
		{`{"files":[1]}`, "files[0]", "must be an object"},
		{`{"files":{}}`, "files", "must be a list"},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			env := wantProxyError(t, proxy(t, h, asUser("POST", createPath, tt.body)), http.StatusUnprocessableEntity, upload.CodeValidation)
			errs, _ := env.Error.Details["errors"].(map[string]any)
			if errs[tt.field] != tt.msg || len(errs) != 1 {
				t.Errorf("details.errors = %v, want {%q: %q}", errs, tt.field, tt.msg)
			}
		})
	}
}

// TestInvalidUTF8: bytes that are not UTF-8 are a 422 naming the element,
// never quietly replaced by U+FFFD.
func TestInvalidUTF8(t *testing.T) {
	h := httpapi.New(nil).AllRoutes()
	bad := "a\xff\xfe.pdf"
	tests := []struct{ path, body, field string }{
		{createPath, `{"files":[{"name":"a.pdf"},{"name":"` + bad + `"}]}`, "files[1].name"},
		{filesPath, `{"category":"instruction","name":"` + bad + `","size":1,"type":"application/pdf","ext":"pdf"}`, "name"},
		{filesPath, `{"fileKey":"` + bad + `"}`, "fileKey"},
		{finalizePath, `{"uploadSessionId":"` + sessionID + `","title":"T` + "\xc3" + `"}`, "title"},
		{finalizePath, `{"uploadSessionId":"` + sessionID + `","title":"T","tags":["ok","` + "\xe2\x82" + `"]}`, "tags[1]"},
		{finalizePath, `{"uploadSessionId":"` + sessionID + `","title":"T","x` + "\xff" + `":1}`, "body"},
		{createPath, `{"files":[{"` + "\xff" + `":1}]}`, "files[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			env := wantProxyError(t, proxy(t, h, asUser("POST", tt.path, tt.body)), http.StatusUnprocessableEntity, upload.CodeValidation)
			errs, _ := env.Error.Details["errors"].(map[string]any)
			if msg, _ := errs[tt.field].(string); !strings.Contains(msg, "UTF-8") || len(errs) != 1 {
				t.Errorf("details.errors = %v, want only %q about UTF-8", errs, tt.field)
			}
		})
	}
}

// TestNULInFinalizeFields: PostgreSQL's text cannot hold U+0000; finalize
// refuses it with a 422 naming the field before the (nil) service is
// reached.
func TestNULInFinalizeFields(t *testing.T) {
	h := httpapi.New(nil).AllRoutes()
	base := `"uploadSessionId":"` + sessionID + `"`
	tests := []struct{ body, field string }{
		{`{` + base + `,"title":"Big\u0000Ship"}`, "title"},
		{`{` + base + `,"title":"T","description":"a\u0000"}`, "description"},
		{`{` + base + `,"title":"T","tags":["ok","x\u0000y"]}`, "tags[1]"},
		{`{` + base + `,"title":"T","theme":"\u0000"}`, "theme"},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			env := wantProxyError(t, proxy(t, h, asUser("POST", finalizePath, tt.body)), http.StatusUnprocessableEntity, upload.CodeValidation)
			errs, _ := env.Error.Details["errors"].(map[string]any)
			if msg, _ := errs[tt.field].(string); !strings.Contains(msg, "NUL") || len(errs) != 1 {
				t.Errorf("details.errors = %v, want only %q about NUL", errs, tt.field)
			}
		})
	}
}

// TestDotUserIDs: a subject that would be a "." or ".." segment of the
// user's object keys is refused, saying why.
func TestDotUserIDs(t *testing.T) {
	h := httpapi.New(nil).AllRoutes()
	for _, sub := range []string{".", "..", "...", "a/..", "../b"} {
		t.Run(sub, func(t *testing.T) {
			env := wantProxyError(t, proxy(t, h, request{method: "GET", path: sessionPath, sub: sub}), http.StatusUnauthorized, upload.CodeUnauthorized)
			if !strings.Contains(env.Error.Message, "user id") {
				t.Errorf("message %q does not say the user id is the problem", env.Error.Message)
			}
		})
	}
}
