// Package gateway plays the API Gateway HTTP API for local runs: it turns
// each real HTTP request into the payload 2.0 event API Gateway would send
// (binary bodies base64-encoded, path parameters, route key, the JWT
// authorizer's sub claim) and invokes that route's Lambda handler
// in-process, then writes the handler's response back.
//
// # Authentication
//
// It plays the JWT authorizer in dev mode: "Authorization: Bearer <userId>"
// becomes the claim sub=<userId>. Without it the event carries no
// authorizer claims and the function itself answers 401. (A deployed HTTP
// API's authorizer answers {"message":"Unauthorized"} before any function
// runs.)
package gateway

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/uuid"

	"github.com/mocbuilders/moc-upload/shared/httpapi"
)

// Handler is a Lambda handler for HTTP API payload 2.0 events.
type Handler func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error)

// MaxBodyBytes is API Gateway HTTP API's payload limit (10 MB).
const MaxBodyBytes = 10 << 20

// New returns a gateway serving every route of httpapi.Routes with the
// handler of its function. It fails when a function has no handler.
func New(handlers map[string]Handler) (http.Handler, error) {
	mux := http.NewServeMux()
	for _, rt := range httpapi.Routes {
		h, ok := handlers[rt.Function]
		if !ok {
			return nil, fmt.Errorf("gateway: no handler for function %s", rt.Function)
		}
		mux.Handle(rt.RouteKey(), &route{Route: rt, handler: h})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeMessage(w, http.StatusNotFound, "Not Found")
	})
	return mux, nil
}

type route struct {
	httpapi.Route
	handler Handler
}

func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ev, err := rt.event(r)
	if err != nil {
		writeMessage(w, http.StatusRequestEntityTooLarge, "Request Entity Too Large")
		return
	}
	resp, err := rt.handler(r.Context(), ev)
	if err != nil {
		// What API Gateway answers when the function itself fails.
		slog.Error("function failed", "function", rt.Function, "err", err)
		writeMessage(w, http.StatusInternalServerError, "Internal Server Error")
		return
	}
	if err := writeResponse(w, resp); err != nil {
		slog.Error("bad function response", "function", rt.Function, "err", err)
	}
	slog.Info("request", "route", rt.RouteKey(), "path", r.URL.Path, "status", resp.StatusCode,
		"ms", time.Since(start).Milliseconds(), "requestId", ev.RequestContext.RequestID)
}

// event builds the payload 2.0 event API Gateway would send for r.
func (rt *route) event(r *http.Request) (events.APIGatewayV2HTTPRequest, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil || len(body) > MaxBodyBytes {
		return events.APIGatewayV2HTTPRequest{}, fmt.Errorf("body too large or unreadable")
	}
	headers := map[string]string{}
	for k, vs := range r.Header {
		if strings.EqualFold(k, "Cookie") {
			continue
		}
		headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	if r.ContentLength >= 0 {
		headers["content-length"] = fmt.Sprint(len(body))
	}
	var cookies []string
	for _, c := range r.Cookies() {
		cookies = append(cookies, c.String())
	}
	params := map[string]string{}
	for _, name := range pathParams(rt.Path) {
		params[name] = r.PathValue(name)
	}
	query := map[string]string{}
	for k, vs := range r.URL.Query() {
		query[k] = strings.Join(vs, ",")
	}
	now := time.Now().UTC()
	requestID := uuid.NewString()
	ev := events.APIGatewayV2HTTPRequest{
		Version:               "2.0",
		RouteKey:              rt.RouteKey(),
		RawPath:               r.URL.EscapedPath(),
		RawQueryString:        r.URL.RawQuery,
		Cookies:               cookies,
		Headers:               headers,
		QueryStringParameters: nilIfEmpty(query),
		PathParameters:        nilIfEmpty(params),
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey:     rt.RouteKey(),
			AccountID:    "000000000000",
			Stage:        "$default",
			RequestID:    requestID,
			APIID:        "local",
			DomainName:   r.Host,
			DomainPrefix: strings.Split(r.Host, ".")[0],
			Time:         now.Format("02/Jan/2006:15:04:05 -0700"),
			TimeEpoch:    now.UnixMilli(),
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method:    r.Method,
				Path:      r.URL.Path,
				Protocol:  r.Proto,
				SourceIP:  sourceIP(r),
				UserAgent: r.UserAgent(),
			},
			Authorizer: authorizer(r),
		},
	}
	if len(body) > 0 {
		if isText(r.Header.Get("Content-Type")) {
			ev.Body = string(body)
		} else {
			ev.Body = base64.StdEncoding.EncodeToString(body)
			ev.IsBase64Encoded = true
		}
	}
	return ev, nil
}

// authorizer plays the JWT authorizer: a bearer token is taken as the user id.
func authorizer(r *http.Request) *events.APIGatewayV2HTTPRequestContextAuthorizerDescription {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil
	}
	return &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
		JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{
			Claims: map[string]string{"sub": token, "iss": "local-dev"},
		},
	}
}

// isText says whether API Gateway would pass a body of this type as text;
// everything else arrives base64-encoded.
func isText(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return strings.HasPrefix(mt, "text/") || mt == "application/json" || mt == "application/xml" ||
		strings.HasSuffix(mt, "+json") || strings.HasSuffix(mt, "+xml") ||
		mt == "application/x-www-form-urlencoded"
}

func writeResponse(w http.ResponseWriter, resp events.APIGatewayV2HTTPResponse) error {
	for k, v := range resp.Headers {
		w.Header().Set(k, v)
	}
	for k, vs := range resp.MultiValueHeaders {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	for _, c := range resp.Cookies {
		w.Header().Add("Set-Cookie", c)
	}
	body := []byte(resp.Body)
	if resp.IsBase64Encoded {
		var err error
		if body, err = base64.StdEncoding.DecodeString(resp.Body); err != nil {
			writeMessage(w, http.StatusBadGateway, "Bad Gateway")
			return err
		}
	}
	status := resp.StatusCode
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, err := w.Write(body)
	return err
}

func writeMessage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"message":%q}`, msg)
}

func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// pathParams lists the {names} in a route path.
func pathParams(path string) []string {
	var names []string
	for _, seg := range strings.Split(path, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			names = append(names, strings.TrimSuffix(strings.TrimPrefix(seg, "{"), "}"))
		}
	}
	return names
}

func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}
