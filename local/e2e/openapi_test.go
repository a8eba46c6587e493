package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// contractPath is the document every request and response of these tests
// is checked against, so that it cannot drift from the service.
const contractPath = "../../docs/openapi.yaml"

// contractServer is the document's first server (make local's). Requests to
// a test server are matched as if they were sent there: the path is what
// the document describes, not the test server's random port.
const contractServer = "http://127.0.0.1:3000"

var contract struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

func loadContract() (*openapi3.T, routers.Router, error) {
	contract.once.Do(func() {
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromFile(contractPath)
		if err != nil {
			contract.err = fmt.Errorf("load %s: %w", contractPath, err)
			return
		}
		if err := doc.Validate(loader.Context); err != nil {
			contract.err = fmt.Errorf("%s is not a valid OpenAPI document: %w", contractPath, err)
			return
		}
		openapi3filter.RegisterBodyDecoder("multipart/form-data", formPartsByName)
		router, err := legacy.NewRouter(doc)
		if err != nil {
			contract.err = fmt.Errorf("route %s: %w", contractPath, err)
			return
		}
		contract.doc, contract.router = doc, router
	})
	return contract.doc, contract.router, contract.err
}

// contractOptions: every status must be documented; the bearer scheme is
// checked by the gateway (a request without it must get 401, which the
// response check sees), so any Authorization header passes here.
var contractOptions = &openapi3filter.Options{
	IncludeResponseStatus: true,
	AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
		if !strings.HasPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer ") {
			return errors.New("no bearer token")
		}
		return nil
	},
}

// checkContract validates one exchange of the e2e client against
// docs/openapi.yaml and reports a mismatch as a test error naming the route
// and the schema error.
//
//   - The response must match its operation's documented response for its
//     status (or, for a path or method the API does not have, the gateway's
//     documented 404 {"message":"Not Found"}).
//   - The request must match its operation when the service accepted it
//     (2xx): a request the document calls invalid but the service takes is
//     drift. Refused requests are the bad-input tests' point; that the
//     refusal itself is documented is the response check's job.
func checkContract(t testing.TB, req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) {
	t.Helper()
	if err := contractError(req, reqBody, status, header, respBody); err != nil {
		t.Errorf("openapi contract (%s): %v", contractPath, err)
	}
}

func contractError(req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) error {
	doc, router, err := loadContract()
	if err != nil {
		return err
	}
	ctx := context.Background()
	// The same request, as sent to the document's server.
	u, err := url.Parse(contractServer + req.URL.RequestURI())
	if err != nil {
		return err
	}
	r := req.Clone(ctx)
	r.URL, r.Host, r.RequestURI = u, u.Host, ""
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	r.ContentLength = int64(len(reqBody))
	name := req.Method + " " + req.URL.Path

	route, params, err := router.FindRoute(r)
	if err != nil {
		// A path or method the document does not have (the router answers
		// a new RouteError, not the sentinel values).
		var noRoute *routers.RouteError
		if errors.As(err, &noRoute) && (noRoute.Reason == routers.ErrPathNotFound.Error() || noRoute.Reason == routers.ErrMethodNotAllowed.Error()) {
			return gatewayResponseError(doc, name, "GatewayNotFound", status, header, respBody)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	name = route.Method + " " + route.Path
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: contractOptions}
	if status >= 200 && status < 300 {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			return fmt.Errorf("%s: the service answered %d to a request the document does not allow: %w", name, status, err)
		}
	}
	// A 413 of the gateway's own (a body API Gateway refuses) is the same
	// for every route.
	if status == http.StatusRequestEntityTooLarge && isGatewayMessage(respBody) {
		return gatewayResponseError(doc, name, "GatewayTooLarge", status, header, respBody)
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header, Options: contractOptions,
	}
	out.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fmt.Errorf("%s: response %d %s: %w", name, status, abbreviate(respBody), err)
	}
	return nil
}

// isGatewayMessage tells API Gateway's own answers ({"message": "…"}) from
// the service's envelope.
func isGatewayMessage(body []byte) bool {
	return bytes.HasPrefix(bytes.TrimSpace(body), []byte(`{"message"`))
}

// gatewayResponseError checks a response that API Gateway (and the local
// gateway, which plays it) sends before any function runs against the
// document's components.responses[component].
func gatewayResponseError(doc *openapi3.T, name, component string, status int, header http.Header, body []byte) error {
	ref := doc.Components.Responses[component]
	if ref == nil || ref.Value == nil {
		return fmt.Errorf("%s: no components.responses.%s for the gateway's %d %s", name, component, status, abbreviate(body))
	}
	// Validate it as the only response of a one-route document.
	op := openapi3.NewOperation()
	op.AddResponse(status, ref.Value)
	route := &routers.Route{Spec: doc, Method: http.MethodGet, Path: "/", Operation: op}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/"}, Header: http.Header{}}, Route: route,
		},
		Status: status, Header: header, Options: contractOptions,
	}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return fmt.Errorf("%s: the gateway's %d %s against components.responses.%s: %w", name, status, abbreviate(body), component, err)
	}
	return nil
}

// formPartsByName decodes a multipart/form-data body into an object of its
// form parts' names and contents, for the batch route's schema
// (UploadPartsBatchRequest: properties matched by name pattern, which
// kin-openapi's own multipart decoder, looking each name up in
// properties, does not read). A body that breaks off after some form parts
// yields those: the service stores them and answers 207, as documented.
func formPartsByName(body io.Reader, h http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	_, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		return nil, fmt.Errorf("multipart/form-data without a boundary: %v", err)
	}
	form := map[string]any{}
	mr := multipart.NewReader(body, params["boundary"])
	for {
		part, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			return form, nil
		}
		if err != nil {
			if len(form) > 0 {
				return form, nil
			}
			return nil, err
		}
		b, err := io.ReadAll(part)
		if err != nil {
			if len(form) > 0 {
				return form, nil
			}
			return nil, err
		}
		if _, seen := form[part.FormName()]; !seen {
			form[part.FormName()] = string(b)
		}
	}
}

func abbreviate(b []byte) string {
	const max = 300
	if len(b) > max {
		return fmt.Sprintf("%q…", b[:max])
	}
	return fmt.Sprintf("%q", b)
}

// TestContractIsValid fails when docs/openapi.yaml does not load or is
// not a valid OpenAPI document, before any exchange is checked.
func TestContractIsValid(t *testing.T) {
	if _, _, err := loadContract(); err != nil {
		t.Fatal(err)
	}
}

// TestContractCatchesDrift shows that the check fails where the service
// and the document part: made-up exchanges that break the document each
// give an error naming the route, and their correct forms give none.
func TestContractCatchesDrift(t *testing.T) {
	const sessions = "/api/mocs/uploads/sessions"
	const sessionID = "3f0d4c1e-9b1a-4d8e-a2f4-0c6f1e2d3a4b"
	named := http.Header{"X-Correlation-Id": {"c1"}, "X-Request-Id": {"c1"}, "Content-Type": {"application/json"}}
	plain := http.Header{"Content-Type": {"application/json"}}
	okSession := `{"success":true,"data":{"sessionId":"` + sessionID + `","partSizeBytes":5242880,"expiresAt":"2025-05-01T10:30:00Z"},"timestamp":"2025-05-01T10:00:00Z"}`
	expired := func(typ string) string {
		return `{"success":false,"error":{"code":"SESSION_EXPIRED","type":"` + typ + `","message":"upload session has expired","details":{"expiresAt":"2025-05-01T10:30:00Z"}},"correlationId":"c1","timestamp":"2025-05-01T10:31:00Z"}`
	}
	createBody := `{"files":[{"category":"instruction","name":"a.pdf","size":10,"type":"application/pdf","ext":"pdf"}]}`
	cases := []struct {
		name           string
		method, path   string
		reqBody        string
		status         int
		header         http.Header
		respBody       string
		wantRoute      string // "" when the exchange matches the document
		wantErrContain string
	}{
		{name: "a 201 without its data fields", method: "POST", path: sessions, reqBody: createBody, status: 201, header: named,
			respBody: `{"success":true,"data":{},"timestamp":"2025-05-01T10:00:00Z"}`, wantRoute: "POST /api/mocs/uploads/sessions"},
		{name: "a status the operation does not document", method: "POST", path: sessions, reqBody: createBody, status: 418, header: named,
			respBody: `{}`, wantRoute: "POST /api/mocs/uploads/sessions", wantErrContain: "418"},
		{name: "a request the document refuses, taken", method: "POST", path: sessions, reqBody: `{"files":"none"}`, status: 201, header: named,
			respBody: okSession, wantRoute: "POST /api/mocs/uploads/sessions", wantErrContain: "does not allow"},
		{name: "a 410 whose type is its code", method: "POST", path: sessions + "/" + sessionID + "/files",
			reqBody: `{"category":"instruction","name":"a.pdf","size":10,"type":"application/pdf","ext":"pdf"}`, status: 410, header: named,
			respBody: expired("SESSION_EXPIRED"), wantRoute: "POST /api/mocs/uploads/sessions/{sessionId}/files"},
		{name: "a 410 with EXPIRED_SESSION", method: "POST", path: sessions + "/" + sessionID + "/files",
			reqBody: `{"category":"instruction","name":"a.pdf","size":10,"type":"application/pdf","ext":"pdf"}`, status: 410, header: named,
			respBody: expired("EXPIRED_SESSION")},
		{name: "an error without X-Request-Id", method: "POST", path: sessions + "/" + sessionID + "/files",
			reqBody: `{"category":"instruction","name":"a.pdf","size":10,"type":"application/pdf","ext":"pdf"}`, status: 410,
			header:   http.Header{"X-Correlation-Id": {"c1"}, "Content-Type": {"application/json"}},
			respBody: expired("EXPIRED_SESSION"), wantRoute: "POST /api/mocs/uploads/sessions/{sessionId}/files", wantErrContain: "X-Request-Id"},
		{name: "the gateway's 404 for no route", method: "GET", path: "/api/nothing", status: 404, header: plain,
			respBody: `{"message":"Not Found"}`},
		{name: "another body for no route", method: "GET", path: "/api/nothing", status: 404, header: plain,
			respBody: `{"message":"Gone fishing"}`, wantRoute: "GET /api/nothing", wantErrContain: "GatewayNotFound"},
		{name: "the gateway's 413", method: "POST", path: sessions, reqBody: createBody, status: 413, header: plain,
			respBody: `{"message":"Request Entity Too Large"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, "http://127.0.0.1:1"+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer u1")
			if tc.reqBody != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			err = contractError(req, []byte(tc.reqBody), tc.status, tc.header, []byte(tc.respBody))
			switch {
			case tc.wantRoute == "" && err != nil:
				t.Fatalf("want no error, got %v", err)
			case tc.wantRoute != "" && err == nil:
				t.Fatalf("want an error naming %s, got none", tc.wantRoute)
			case tc.wantRoute != "" && !strings.HasPrefix(err.Error(), tc.wantRoute+":"):
				t.Fatalf("error does not start with the route %q: %v", tc.wantRoute, err)
			case tc.wantErrContain != "" && !strings.Contains(err.Error(), tc.wantErrContain):
				t.Fatalf("error does not mention %q: %v", tc.wantErrContain, err)
			}
		})
	}
}
