// Package gateway plays the API Gateway HTTP API for local runs: it turns
// each real HTTP request into the payload 2.0 event API Gateway would send
// (binary bodies base64-encoded, path parameters, route key, the JWT
// authorizer's sub claim) and invokes that route's Lambda handler
// in-process, then writes the handler's response back.
//
// # Authentication
//
// It plays the HTTP API's authorizer in dev mode, in both of the stack's
// auth modes: "Authorization: Bearer <userId>", or the cookie
// "access_token=<userId>" (CookieName), becomes the claim sub=<userId>.
// Without either the event carries no authorizer claims and the function
// itself answers 401, to which the gateway adds what it would have
// accepted (LocalAuthHint). (A deployed HTTP API's authorizer answers
// {"message":"Unauthorized"} before any function runs.)
//
// # Payload limits (Options.PayloadLimits)
//
// A deployed HTTP API with a Lambda proxy integration refuses a request in
// two places, and the gateway, with PayloadLimits on, refuses the same
// requests with the same answers; the handler is not invoked:
//
//   - The request body is over the HTTP API's payload quota, 10 MB
//     (MaxBodyBytes, 10,485,760 bytes; "Payload size 10 MB, cannot be
//     increased"): 413 with {"message":"Request Entity Too Large"}.
//     https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html
//     The quota is documented; the answer is API Gateway's own error shape
//     with 413's reason phrase. No capture of an HTTP API answering a body
//     over 10 MB was found; a REST API answers 413 with the text body "HTTP
//     content length exceeded 10485760 bytes." instead
//     (https://github.com/koki-develop/lgtm-generator/issues/10, a REST API:
//     its serverless.yml uses "http" events), which also gives the exact
//     byte figure.
//   - The body fits but the invocation payload, the event JSON with binary
//     bodies base64-encoded, is over Lambda's synchronous invocation limit,
//     6 MB = 6,291,456 bytes (MaxEventBytes; Lambda: "Request must be
//     smaller than 6291456 bytes for the InvokeFunction operation", and
//     through API Gateway "... byte payload is too large for the
//     RequestResponse invocation type (limit 6291456 bytes)"): the HTTP API
//     answers 413 with {"message":"Request Entity Too Large"} (a REST API
//     answers 413 {"message": "Request Too Long"}).
//     https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
//     https://theburningmonk.com/2020/04/hit-the-6mb-lambda-payload-limit-heres-what-you-can-do/
//     https://zaccharles.medium.com/deep-dive-lambdas-request-payload-size-limit-2-2-6350c1ae5577
//     https://github.com/aws/aws-lambda-dotnet/pull/1990 (AWS's own local
//     API Gateway emulator: HttpV2 mode answers 413 "Request Entity Too
//     Large", Rest mode "Request Too Long"; its test LargePayloadTests.cs)
//
// The event's size is the length of the JSON of the
// events.APIGatewayV2HTTPRequest the gateway built (HTML characters not
// escaped, as a non-Go serializer would not). A 5 MiB part, 6,990,508
// bytes once base64-encoded, is over it: in AWS such parts go to S3 through
// presigned URLs.
//
// With PayloadLimits off the gateway has no limit at all: the body is read
// whole, whatever its size, and only the functions' own limits answer.
//
// # CORS (Options.CORSOrigins)
//
// With origins set, the gateway plays the HTTP API's CorsConfiguration of
// template.yaml (TemplateCORS; X-Request-Id is exposed too), as documented at
// https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-cors.html:
//
//   - API Gateway answers preflight requests itself, for any path, even
//     without an OPTIONS route, and invokes no function. A preflight is an
//     OPTIONS request with both an Origin and an
//     Access-Control-Request-Method header (the documented condition); any
//     other OPTIONS request is routed as usual (no route: 404).
//   - It answers 204 No Content with an empty body. When the origin, the
//     requested method and every requested header are allowed, it adds
//     Access-Control-Allow-Origin ("*" when "*" is configured, else the
//     request's origin), Access-Control-Allow-Methods,
//     Access-Control-Allow-Headers and Access-Control-Max-Age; otherwise it
//     adds no Access-Control-* header at all and the browser refuses.
//     Access-Control-Expose-Headers is not sent on preflights
//     (https://github.com/aws/serverless-application-model/issues/2478).
//   - On any other request with an allowed Origin it adds
//     Access-Control-Allow-Origin and Access-Control-Expose-Headers to the
//     response, the gateway's own errors (404, 413) included.
//   - It drops the Access-Control-* headers a function returns ("API
//     Gateway ignores CORS headers returned from your backend integration").
//   - Origins match exactly (scheme, host and port, case-insensitively);
//     "*" matches any origin, "https://*" and "http://*" any origin of that
//     scheme, as the HTTP API's allowOrigins does.
//
// The documentation says when preflights are answered, that the configured
// headers are added and the backend's dropped, and how origins match. It
// does not give the preflight's status, what a refused preflight gets, or
// the exact header values; there the gateway follows what HTTP APIs are
// reported to answer (204; no Access-Control-* header for an origin that is
// not allowed) and otherwise chooses: methods and headers as configured,
// comma-separated (headers lower-cased), CORS headers on the gateway's own
// errors too, and "Vary: Origin" when a specific origin is echoed.
package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"
	"unsafe"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/uuid"
	asmbase64 "github.com/segmentio/asm/base64"

	"github.com/mocbuilders/moc-upload/shared/auth"
	"github.com/mocbuilders/moc-upload/shared/httpapi"
)

// Options say how closely the gateway plays API Gateway.
type Options struct {
	// PayloadLimits refuses what API Gateway and Lambda refuse in AWS: a
	// request body over 10 MB (MaxBodyBytes), an event over Lambda's 6 MB
	// (MaxEventBytes), both with 413 {"message":"Request Entity Too
	// Large"}. Off, the gateway has no size limit at all. On in `make
	// local` unless LOCAL_AWS_PAYLOAD_LIMITS=off.
	PayloadLimits bool
	// CORSOrigins turns on the HTTP API's CORS configuration (TemplateCORS) for
	// these origins: "*", "https://*", "http://*" or exact origins such as
	// "http://localhost:5173". Empty: no CORS handling, as an HTTP API
	// without a CorsConfiguration. `make local` reads LOCAL_CORS_ORIGINS
	// (default "*"; see ParseCORSOrigins).
	CORSOrigins []string
	// FunctionTimeout is the deadline each invocation's context gets, as
	// Lambda gives one (the handlers derive the deadlines of their S3 and
	// PostgreSQL calls from it). Zero: DefaultFunctionTimeout; negative:
	// none.
	FunctionTimeout time.Duration
}

// DefaultFunctionTimeout is template.yaml's Timeout of the HTTP functions
// (Globals.Function.Timeout; functions/template_test.go checks they agree).
const DefaultFunctionTimeout = 25 * time.Second

// Handler is a Lambda handler for HTTP API payload 2.0 events.
type Handler func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error)

// MaxBodyBytes is API Gateway HTTP API's payload limit: 10 MB, 10,485,760
// bytes.
const MaxBodyBytes = 10 << 20

// MaxEventBytes is Lambda's limit on a synchronous invocation's payload,
// here the event's JSON: 6 MB, 6,291,456 bytes.
const MaxEventBytes = 6 << 20

// tooLarge is what API Gateway HTTP API answers in both cases.
const tooLarge = "Request Entity Too Large"

// maxDrainBytes bounds how much of a refused body is read and dropped so
// that the client, still sending, reads the 413 instead of a reset
// connection.
const maxDrainBytes = 256 << 20

// maxPreallocBytes bounds the buffer allocated up front from a declared
// Content-Length; a larger body (only without PayloadLimits) is read as it
// comes, so a header alone cannot make the gateway allocate gigabytes.
const maxPreallocBytes = 256 << 20

// New returns a gateway serving every route of httpapi.Routes with the
// handler of its function. It fails when a function has no handler or an
// origin of opts.CORSOrigins is not one API Gateway accepts.
func New(handlers map[string]Handler, opts Options) (http.Handler, error) {
	mux := http.NewServeMux()
	for _, rt := range httpapi.Routes {
		h, ok := handlers[rt.Function]
		if !ok {
			return nil, fmt.Errorf("gateway: no handler for function %s", rt.Function)
		}
		timeout := opts.FunctionTimeout
		if timeout == 0 {
			timeout = DefaultFunctionTimeout
		}
		mux.Handle(rt.RouteKey(), &route{Route: rt, handler: h, limits: opts.PayloadLimits, timeout: timeout})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeMessage(w, http.StatusNotFound, "Not Found")
	})
	if len(opts.CORSOrigins) == 0 {
		return mux, nil
	}
	return TemplateCORS(opts.CORSOrigins).Handler(mux)
}

type route struct {
	httpapi.Route
	handler Handler
	limits  bool
	timeout time.Duration // < 0: none
}

func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	limit := int64(-1)
	if rt.limits {
		limit = MaxBodyBytes
	}
	body, err := readBody(r.Body, r.ContentLength, limit)
	if errors.Is(err, errBodyTooLarge) {
		// API Gateway refuses the request: no function runs.
		slog.Info("request body over API Gateway's 10 MB payload limit", "route", rt.RouteKey(),
			"path", r.URL.Path, "limit", MaxBodyBytes, "status", http.StatusRequestEntityTooLarge)
		writeMessage(w, http.StatusRequestEntityTooLarge, tooLarge)
		return
	}
	if err != nil {
		slog.Info("request body unreadable", "route", rt.RouteKey(), "path", r.URL.Path, "err", err)
		writeMessage(w, http.StatusBadRequest, "Bad Request")
		return
	}
	ev := rt.event(r, body)
	// Only the id outlives the call: the final log line must not keep ev,
	// with its base64 body, alive while the handler streams the part.
	requestID := ev.RequestContext.RequestID
	anonymous := ev.RequestContext.Authorizer == nil
	if rt.limits {
		size, err := EventSize(ev)
		if err != nil {
			slog.Error("event not serializable", "route", rt.RouteKey(), "err", err)
			writeMessage(w, http.StatusInternalServerError, "Internal Server Error")
			return
		}
		if size > MaxEventBytes {
			// Lambda refuses the invocation (RequestEntityTooLargeException);
			// the function never runs and API Gateway answers 413.
			slog.Info("event over Lambda's 6 MB invocation payload limit", "route", rt.RouteKey(),
				"path", r.URL.Path, "eventBytes", size, "limit", MaxEventBytes,
				"status", http.StatusRequestEntityTooLarge, "requestId", requestID)
			writeMessage(w, http.StatusRequestEntityTooLarge, tooLarge)
			return
		}
	}
	ctx := r.Context()
	if rt.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.timeout)
		defer cancel()
	}
	resp, err := rt.handler(ctx, ev)
	if err != nil {
		// What API Gateway answers when the function itself fails.
		slog.Error("function failed", "function", rt.Function, "err", err)
		writeMessage(w, http.StatusInternalServerError, "Internal Server Error")
		return
	}
	if anonymous && resp.StatusCode == http.StatusUnauthorized {
		explainUnauthorized(&resp)
	}
	if err := writeResponse(w, resp); err != nil {
		slog.Error("bad function response", "function", rt.Function, "err", err)
	}
	slog.Info("request", "route", rt.RouteKey(), "path", r.URL.Path, "status", resp.StatusCode,
		"ms", time.Since(start).Milliseconds(), "requestId", requestID)
}

var errBodyTooLarge = errors.New("request body over the payload limit")

// readBody reads the whole body, or, when limit >= 0, at most limit bytes:
// a longer body is errBodyTooLarge, and the rest of it (up to
// maxDrainBytes) is read and dropped so that the client gets the answer.
// length is the request's Content-Length (-1: unknown).
func readBody(body io.Reader, length, limit int64) ([]byte, error) {
	if length > 0 && (limit < 0 || length <= limit) && length <= maxPreallocBytes {
		// One buffer of the declared size: io.ReadAll would regrow its
		// buffer (and copy) about twice the body's size on the way. The
		// HTTP server ends the body after length bytes, so a body that
		// is shorter is an error here.
		b := make([]byte, length)
		if _, err := io.ReadFull(body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	if length > 0 && limit >= 0 && length > limit {
		_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrainBytes))
		return nil, errBodyTooLarge
	}
	if limit < 0 {
		return io.ReadAll(body)
	}
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrainBytes))
		return nil, errBodyTooLarge
	}
	return b, nil
}

// EventSize is the size in bytes of ev's JSON, the payload API Gateway
// sends Lambda, which Lambda refuses beyond MaxEventBytes.
func EventSize(ev events.APIGatewayV2HTTPRequest) (int, error) {
	var n countingWriter
	enc := json.NewEncoder(&n)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return 0, err
	}
	return int(n) - 1, nil // Encode ends with a newline
}

type countingWriter int

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

// event builds the payload 2.0 event API Gateway would send for r.
func (rt *route) event(r *http.Request, body []byte) events.APIGatewayV2HTTPRequest {
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
			ev.Body = base64String(body)
			ev.IsBase64Encoded = true
		}
	}
	return ev
}

// base64String is the standard base64 of b, as API Gateway puts a binary
// body in the event. In AWS, API Gateway pays for the encoding; here the
// gateway does, and encoding/base64 (about 1.9 GB/s here) took a third of
// the CPU of a proxied upload. segmentio/asm's encoder gives the same
// bytes with AVX2 (about 24 GB/s; plain Go where the CPU has none). The
// string shares the buffer instead of copying it (6.7 MiB for a 5 MiB
// part), as EncodeToString would: the buffer is made here, written once by
// Encode and never again.
func base64String(b []byte) string {
	buf := make([]byte, asmbase64.StdEncoding.EncodedLen(len(b)))
	asmbase64.StdEncoding.Encode(buf, b)
	return unsafe.String(unsafe.SliceData(buf), len(buf))
}

// authorizer plays the HTTP API's authorizer, either mode (template.yaml's
// AuthMode): the bearer token of "Authorization: Bearer <userId>" or,
// without one, the value of the cookie auth.CookieNameFromEnv() names ("Cookie:
// access_token=<userId>") is taken as the user id, unverified. A request
// with both is taken as the default mode (jwt) takes it, by its header;
// the cookie mode's authorizer would take the cookie. The cookie mode's
// authorizer passes the id as context userId
// (requestContext.authorizer.lambda); the gateway passes it as the JWT
// authorizer's sub claim, which the functions read the same way.
func authorizer(r *http.Request) *events.APIGatewayV2HTTPRequestContextAuthorizerDescription {
	token := auth.BearerToken(r.Header.Get("Authorization"))
	if token == "" {
		token = auth.CookieValue(r.Header.Values("Cookie"), auth.CookieNameFromEnv())
	}
	if token == "" {
		return nil
	}
	return &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
		JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{
			Claims: map[string]string{"sub": token, "iss": "local-dev"},
		},
	}
}

// LocalAuthHint says what the local gateway accepts as an identity.
func LocalAuthHint() string {
	return fmt.Sprintf("locally, send `Authorization: Bearer <userId>` or the cookie `%s=<userId>` (any user id you like, e.g. dev-user-1; the local gateway verifies no token)", auth.CookieNameFromEnv())
}

// explainUnauthorized adds LocalAuthHint to the function's 401 for a
// request that had no identity at all: to its error message (the
// contract's error shape) and as a WWW-Authenticate challenge.
func explainUnauthorized(resp *events.APIGatewayV2HTTPResponse) {
	if resp.Headers == nil {
		resp.Headers = map[string]string{}
	}
	resp.Headers["WWW-Authenticate"] = fmt.Sprintf(`Bearer realm="moc-upload (local)", error_description=%q`, LocalAuthHint())
	if resp.IsBase64Encoded {
		return
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(resp.Body), &body); err != nil {
		return
	}
	e, _ := body["error"].(map[string]any)
	msg, _ := e["message"].(string)
	if e == nil || msg == "" {
		return
	}
	e["message"] = msg + " (" + LocalAuthHint() + ")"
	if b, err := json.Marshal(body); err == nil {
		resp.Body = string(b)
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
