// Package httpapi is the HTTP face of the upload service: the routing table
// every function, the local gateway, the sample events and the SAM template
// test are derived from, the net/http handlers, and the one mapping from
// error codes to statuses and the contract's response envelope.
//
// Handlers are plain net/http; in Lambda, aws-lambda-go-api-proxy turns the
// API Gateway HTTP API (payload 2.0) event into the *http.Request.
package httpapi

import (
	"fmt"
	"net/http"
	"path"
	"strings"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// Route is one HTTP API route and the Lambda function that serves it.
type Route struct {
	Method   string
	Path     string // API Gateway syntax, which is also net/http's: /a/{id}
	Function string // functions/<Function>/main.go, <Function>Function in template.yaml
	handle   func(a *API, w http.ResponseWriter, r *http.Request) error
}

// RouteKey is API Gateway's name of the route: "POST /api/mocs/uploads/finalize".
func (rt Route) RouteKey() string { return rt.Method + " " + rt.Path }

// Routes is the routing table: the single source of truth for what is served.
var Routes = []Route{
	{"POST", "/api/mocs/uploads/sessions", "CreateSession", (*API).createSession},
	{"GET", "/api/mocs/uploads/sessions/{sessionId}", "GetSession", (*API).getSession},
	{"DELETE", "/api/mocs/uploads/sessions/{sessionId}", "AbortSession", (*API).abortSession},
	{"POST", "/api/mocs/uploads/sessions/{sessionId}/files", "RegisterFile", (*API).registerFile},
	{"PUT", "/api/mocs/uploads/sessions/{sessionId}/files/{fileId}/parts/{partNumber}", "UploadPart", (*API).uploadPart},
	{"POST", "/api/mocs/uploads/sessions/{sessionId}/files/{fileId}/parts/batch", "UploadPartsBatch", (*API).uploadPartsBatch},
	{"GET", "/api/mocs/uploads/sessions/{sessionId}/files/{fileId}/parts/{partNumber}/url", "PresignPart", (*API).presignPart},
	{"POST", "/api/mocs/uploads/sessions/{sessionId}/files/{fileId}/parts/urls", "PresignParts", (*API).presignParts},
	{"POST", "/api/mocs/uploads/sessions/{sessionId}/files/{fileId}/complete", "CompleteFile", (*API).completeFile},
	{"POST", "/api/mocs/uploads/finalize", "Finalize", (*API).finalize},
	{"GET", "/api/mocs/{mocId}", "GetMoc", (*API).getMoc},
}

// RouteByFunction finds a function's route.
func RouteByFunction(name string) (Route, bool) {
	for _, rt := range Routes {
		if rt.Function == name {
			return rt, true
		}
	}
	return Route{}, false
}

// API serves the routes with one Service.
type API struct {
	svc *upload.Service
	// MaxJSONBytes bounds JSON request bodies (413 beyond).
	MaxJSONBytes int64
	// MaxBatchBytes bounds a batch upload's whole body (MAX_BATCH_BYTES;
	// 413 PAYLOAD_TOO_LARGE beyond, before anything is stored).
	MaxBatchBytes int64
	// BatchConcurrency bounds the parts of one batch sent to S3 at once.
	BatchConcurrency int
}

// DefaultMaxBatchBytes is MAX_BATCH_BYTES's default.
const DefaultMaxBatchBytes = 50_000_000

// New returns the API over svc.
func New(svc *upload.Service) *API {
	return &API{svc: svc, MaxJSONBytes: 1 << 20, MaxBatchBytes: DefaultMaxBatchBytes, BatchConcurrency: 4}
}

// Handler serves only the named function's route, as that function's Lambda
// does; any other path is a 404 in the contract's shape.
func (a *API) Handler(function string) (http.Handler, error) {
	rt, ok := RouteByFunction(function)
	if !ok {
		return nil, fmt.Errorf("httpapi: no route for function %q", function)
	}
	return a.mux([]Route{rt}), nil
}

// AllRoutes serves every route from one handler (tests, tools).
func (a *API) AllRoutes() http.Handler { return a.mux(Routes) }

func (a *API) mux(routes []Route) http.Handler {
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.Handle(rt.RouteKey(), a.serve(rt))
	}
	notFound := func(w http.ResponseWriter, r *http.Request) {
		writeError(w, withCorrelationID(r), upload.Errorf(upload.CodeNotFound, "no route for %s %s", r.Method, r.URL.Path))
	}
	mux.HandleFunc("/", notFound)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// ServeMux would redirect "//", "/./" and "/../" to the clean path;
		// API Gateway routes paths as they are, so such a path is no route.
		if !isClean(r.URL.Path) {
			notFound(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func isClean(p string) bool {
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean == p
}

func (a *API) serve(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = withCorrelationID(r)
		r, cancel := withDeadline(r)
		defer cancel()
		// Every response names its request, not only errors.
		setCorrelationHeaders(w, correlationID(r))
		defer func() {
			if p := recover(); p != nil {
				writeError(w, r, fmt.Errorf("panic: %v", p))
			}
		}()
		if err := rt.handle(a, w, r); err != nil {
			writeError(w, r, err)
		}
	})
}
