// Package wsgateway plays the API Gateway WebSocket API for local runs
// (`sam local` has none): it accepts real WebSocket clients, turns each
// connection, message and disconnection into the
// events.APIGatewayWebsocketProxyRequest API Gateway would send, invokes the
// route's Lambda handler in-process, and serves the management API
// (`@connections`) the functions call to push messages, on the same port.
//
// # Routes
//
// The routes are shared/wsapi.Routes; handlers are given by function name.
// Every client message goes to $default: with no custom route in the
// table, that is where API Gateway's route selection sends every message.
//
//   - $connect: a GET upgrade request on / (or /{Stage}) with the query
//     ?sessionId=<id>&token=<token>. The gateway first plays the Lambda
//     REQUEST authorizer whose identity source is the token query parameter:
//     no, an empty or a blank token → 401 {"message":"Unauthorized"} and no
//     function runs (API Gateway refuses a missing identity source with 401
//     without invoking the authorizer, and WsAuthorizer a blank one).
//     Otherwise the token is the user id, as the HTTP gateway's dev-mode
//     bearer token, and requestContext.authorizer is
//     {"principalId": token, "userId": token}. The $connect handler then
//     runs before the upgrade: an error refuses it with 500
//     {"message":"Internal server error"}, a status outside 2xx with that
//     status (and the handler's body and headers); anything else accepts it
//     ("Until execution of the integration associated with the $connect
//     route is completed, the upgrade request is pending ... If the $connect
//     request fails ... the connection will not be made",
//     https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-route-keys-connect-disconnect.html).
//     A status of 0 counts as 200. A Sec-WebSocket-Protocol header in the
//     handler's response selects that subprotocol, as in AWS.
//   - $default: each message (text; a binary message arrives base64-encoded
//     with isBase64Encoded) invokes it with eventType MESSAGE, a new
//     messageId and the connection's authorizer context. A non-empty
//     response body is sent back to the client as one text message: API
//     Gateway does this only when the route has a route response
//     (RouteResponseSelectionExpression $default), which template.yaml is
//     to configure for $default; without it the body is dropped in AWS. Messages of one connection are handled one at
//     a time, in order. A handler error sends {"message": "Internal server
//     error", "connectionId": …, "requestId": …} to the client, and a route
//     without a handler {"message": "Forbidden", …}: the messages API
//     Gateway is reported to send, which serverless-offline's emulator
//     (src/events/websocket/WebSocketClients.js) sends too.
//   - $disconnect: once per connection, after it has ended for any reason
//     (the client closed it or went away, DELETE @connections, Close), with
//     eventType DISCONNECT, disconnectStatusCode (the close code; 1006 when
//     the connection broke without one) and disconnectReason. Its response
//     is ignored, as in AWS.
//
// Events carry what the captured AWS events in aws-lambda-go's
// events/testdata (apigw-websocket-request*.json) carry: requestId and
// extendedRequestId, requestTime ("02/Jan/2006:15:04:05 -0700") and
// requestTimeEpoch, messageDirection "IN", stage, connectedAt (ms), identity
// {sourceIp, userAgent}, domainName (the request's Host), apiId. $connect
// has the request's headers (plus X-Forwarded-For/-Port/-Proto, as API
// Gateway adds) and query string, single-valued (the last value) and
// multi-valued; messages have none; $disconnect has the headers of the
// captured event (Host, x-api-key, X-Forwarded-For, x-restapi). Connection,
// request and message ids look like AWS's: 16 characters of base64 ending
// in "=" (e.g. "L0SM9cOFvHcCIhw="); they may contain "/" and "+", so a
// client must escape them in URLs, as it must in AWS.
//
// # Management API
//
// What the aws-sdk-go-v2 apigatewaymanagementapi client calls with
// BaseEndpoint http://<addr> (or http://<addr>/<Stage>, the form
// https://{domainName}/{stage} takes locally), per the service's Smithy
// model (aws-sdk-js-v3 codegen/sdk-codegen/aws-models/apigatewaymanagementapi.2018-11-29.json):
//
//   - POST /@connections/{connectionId}: the body (at most 128 KiB, the
//     model's limit on Data) is sent to the client as one text message;
//     200 with an empty body once it is written. Over the limit: 413
//     PayloadTooLargeException.
//   - GET /@connections/{connectionId}: 200
//     {"connectedAt": …, "identity": {"sourceIp": …, "userAgent": …},
//     "lastActiveAt": …} (ISO 8601; the wire names are the model's jsonName
//     traits; the CLI prints them capitalised). lastActiveAt is the time of
//     the client's last message, connectedAt before any.
//   - DELETE /@connections/{connectionId}: 204; the gateway closes the
//     connection (close code 1000) and $disconnect runs.
//   - A connection that does not exist, has ended or is being closed: 410
//     with the header x-amzn-ErrorType: GoneException, Content-Type
//     application/json and an empty body, as API Gateway answers (captured
//     with the AWS CLI's debug log in
//     https://github.com/rusoto/rusoto/issues/1904: "POST
//     /v0/@connections/Z6qZrfhjFiACFtw%3D HTTP/1.1" 410 0, 'Content-Type':
//     'application/json', 'Content-Length': '0', 'x-amzn-ErrorType':
//     'GoneException'). The SDK maps it to *types.GoneException.
//   - A message the connection cannot take yet (more than QueueLength
//     waiting): 429 LimitExceededException ("the WebSocket client side
//     buffer is full").
//   - Any other path or method: 403 {"message":"Forbidden"} with
//     x-amzn-ErrorType: ForbiddenException (API Gateway answers a request
//     to a wrong management path 403 {"message":"Forbidden"},
//     https://github.com/aws/aws-sdk-php/issues/1955).
//
// Requests are signed with SigV4 by the SDK; the gateway accepts any
// signature, or none (it is local: there is no IAM).
//
// # Concurrency
//
// Each connection has one writer goroutine: posts and $default responses
// are queued (QueueLength) and written in order. A POST answers once its
// message is written, so sequential posts arrive in order and a DELETE
// after them closes the connection after they were delivered.
//
// # Not played
//
// Client messages are limited to 128 KiB (MaxMessageBytes; beyond it the
// connection closes with 1009), but the 32 KB frame quota is not enforced;
// the 10-minute idle timeout and the two-hour connection limit are not
// played; no Lambda authorizer runs (there is no JWT locally). Choices with
// no AWS source: a request on / that is not a WebSocket upgrade gets 426;
// a refused upgrade carries the $connect handler's body and headers; the
// close code of DELETE @connections is 1000 and of Close 1001 (after
// Close, upgrades get 503); the bodies of 413 and 429 ({"message": …});
// the authorizer context is passed on to $default and $disconnect.
package wsgateway

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/coder/websocket"

	"github.com/mocbuilders/moc-upload/shared/wsapi"
)

// Handler is a Lambda handler for API Gateway WebSocket API events.
type Handler func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error)

// Options say how the gateway names itself and where it logs.
type Options struct {
	// Logger receives one line per connection, message, disconnection and
	// management call (slog.Default() when nil).
	Logger *slog.Logger
	// Stage is requestContext.stage ("local" when empty). The upgrade is
	// also accepted on /{Stage} and the management API on
	// /{Stage}/@connections/{id}, where https://{domainName}/{stage} leads.
	Stage string
	// APIID is requestContext.apiId ("local" when empty).
	APIID string
	// NewID makes connection, request and message ids (AWS-like when nil).
	NewID func() string
	// QueueLength is how many messages may wait for a connection's writer
	// (256 when 0); a POST beyond it gets 429 LimitExceededException.
	QueueLength int
}

// MaxMessageBytes is API Gateway's WebSocket message payload quota, 128 KB:
// the most a client message or a PostToConnection body may hold.
const MaxMessageBytes = 128 << 10

// writeTimeout bounds one write to a client; a client that does not read
// for that long is disconnected.
const writeTimeout = 10 * time.Second

// Gateway is a local WebSocket API. It is an http.Handler; Close ends every
// connection.
type Gateway struct {
	routes map[string]route // by route key
	opts   Options
	log    *slog.Logger

	mu     sync.Mutex
	conns  map[string]*conn
	closed bool
	wg     sync.WaitGroup // one per upgrade request, until its connection's $disconnect has run
}

type route struct {
	wsapi.Route
	handler Handler // nil: the route has no integration
}

// New returns a gateway serving wsapi.Routes with the handlers of their
// functions. A function without a handler is a route without an integration
// (logged): $connect then accepts every authorized client, $disconnect does
// nothing and messages get {"message": "Forbidden", …}.
func New(handlers map[string]Handler, opts Options) *Gateway {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Stage == "" {
		opts.Stage = "local"
	}
	if opts.APIID == "" {
		opts.APIID = "local"
	}
	if opts.NewID == nil {
		opts.NewID = NewID
	}
	if opts.QueueLength <= 0 {
		opts.QueueLength = 256
	}
	g := &Gateway{routes: map[string]route{}, opts: opts, log: opts.Logger, conns: map[string]*conn{}}
	for _, rt := range wsapi.Routes {
		h := handlers[rt.Function]
		if h == nil {
			g.log.Warn("websocket route without a handler", "route", rt.Key, "function", rt.Function)
		}
		g.routes[rt.Key] = route{Route: rt, handler: h}
	}
	return g
}

// NewID returns an id like API Gateway's connection and request ids: 11
// random bytes in standard base64, 16 characters ending in "=".
func NewID() string {
	var b [11]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// ServeHTTP serves the WebSocket upgrade on / and the management API on
// /@connections/{id}.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if id, ok := g.connectionPath(r); ok {
		g.manage(w, r, id)
		return
	}
	if r.URL.Path == "/" || r.URL.Path == "/"+g.opts.Stage {
		g.connect(w, r)
		return
	}
	writeAWSError(w, http.StatusForbidden, "ForbiddenException", `{"message":"Forbidden"}`)
}

// connectionPath returns the connection id of a management API path,
// /@connections/{id} or /{Stage}/@connections/{id}, its segments unescaped
// one by one so that an id holding "/" (escaped %2F) stays whole.
func (g *Gateway) connectionPath(r *http.Request) (string, bool) {
	segs := strings.Split(r.URL.EscapedPath(), "/")
	if len(segs) == 0 || segs[0] != "" {
		return "", false
	}
	segs = segs[1:]
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil {
			return "", false
		}
		segs[i] = u
	}
	if len(segs) == 3 && segs[0] == g.opts.Stage {
		segs = segs[1:]
	}
	if len(segs) != 2 || segs[0] != "@connections" || segs[1] == "" {
		return "", false
	}
	return segs[1], true
}

// connect plays the authorizer and $connect, then upgrades and serves the
// connection until it ends.
func (g *Gateway) connect(w http.ResponseWriter, r *http.Request) {
	if !headerHasToken(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Upgrade", "websocket")
		writeMessage(w, http.StatusUpgradeRequired, "Upgrade Required")
		return
	}
	if !g.enter() {
		writeMessage(w, http.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	defer g.wg.Done()
	token := strings.TrimSpace(r.URL.Query().Get("token"))
	if token == "" {
		g.log.Info("websocket connect refused: no token", "status", http.StatusUnauthorized)
		writeMessage(w, http.StatusUnauthorized, "Unauthorized")
		return
	}
	start := time.Now()
	c := &conn{
		g:           g,
		id:          g.opts.NewID(),
		connectedAt: start,
		sourceIP:    sourceIP(r),
		userAgent:   r.UserAgent(),
		host:        r.Host,
		authorizer:  map[string]any{"principalId": token, "userId": token},
		out:         make(chan outgoing, g.opts.QueueLength),
		done:        make(chan struct{}),
		closeReq:    make(chan struct{}),
	}
	c.lastActive.Store(start.UnixMilli())
	ev := g.connectEvent(r, c, start)
	resp, err := g.invoke(r.Context(), "$connect", ev)
	if err != nil {
		g.log.Error("websocket $connect function failed", "connectionId", c.id, "err", err,
			"status", http.StatusInternalServerError, "requestId", ev.RequestContext.RequestID)
		writeMessage(w, http.StatusInternalServerError, "Internal server error")
		return
	}
	status := resp.StatusCode
	if status == 0 {
		status = http.StatusOK
	}
	if status < 200 || status > 299 {
		g.log.Info("websocket connect refused by $connect", "connectionId", c.id, "status", status,
			"ms", time.Since(start).Milliseconds(), "requestId", ev.RequestContext.RequestID)
		refuse(w, status, resp)
		return
	}
	// Reachable before the client sees the 101, as in AWS once the upgrade
	// is answered: a post waits in the queue until the writer starts.
	if !g.register(c) {
		writeMessage(w, http.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	accept := &websocket.AcceptOptions{InsecureSkipVerify: true} // API Gateway checks no Origin
	if p := responseHeader(resp, "Sec-WebSocket-Protocol"); p != "" {
		accept.Subprotocols = []string{p}
	}
	ws, err := websocket.Accept(w, r, accept)
	if err != nil {
		// Accept has answered. The function was told of a connection that
		// never opened, as happens in AWS when the client goes away.
		g.log.Info("websocket upgrade failed", "connectionId", c.id, "err", err)
		g.unregister(c)
		close(c.done)
		return
	}
	ws.SetReadLimit(MaxMessageBytes)
	g.log.Info("websocket connected", "connectionId", c.id, "user", token,
		"ms", time.Since(start).Milliseconds(), "requestId", ev.RequestContext.RequestID)
	c.run(ws)
}

// enter counts an upgrade in progress, for Close to wait for; false once
// the gateway is closed.
func (g *Gateway) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// register makes c reachable by the management API; false once the gateway
// is closed.
func (g *Gateway) register(c *conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.conns[c.id] = c
	return true
}

// unregister makes c unreachable: from now on the management API answers 410.
func (g *Gateway) unregister(c *conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conns[c.id] == c {
		delete(g.conns, c.id)
	}
}

func (g *Gateway) lookup(id string) *conn {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.conns[id]
}

// Connections is how many connections are open.
func (g *Gateway) Connections() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// Close ends every connection (close code 1001) and returns once their
// $disconnect handlers have run (a client that does not answer the close
// frame holds it up to 10 s). Upgrades after Close are refused with 503.
func (g *Gateway) Close() {
	g.mu.Lock()
	g.closed = true
	conns := make([]*conn, 0, len(g.conns))
	for _, c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	for _, c := range conns {
		c.closeWith(websocket.StatusGoingAway, "going away")
	}
	g.wg.Wait()
}

// invoke runs routeKey's handler; a route without one answers 200, as a
// route without an integration.
func (g *Gateway) invoke(ctx context.Context, routeKey string, ev events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	rt := g.routes[routeKey]
	if rt.handler == nil {
		return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
	}
	resp, err := rt.handler(ctx, ev)
	if err != nil {
		return resp, fmt.Errorf("%s: %w", rt.Function, err)
	}
	return resp, nil
}

// hasHandler says whether routeKey has an integration.
func (g *Gateway) hasHandler(routeKey string) bool { return g.routes[routeKey].handler != nil }

// refuse answers a refused upgrade with the $connect response.
func refuse(w http.ResponseWriter, status int, resp events.APIGatewayProxyResponse) {
	for k, v := range resp.Headers {
		w.Header().Set(k, v)
	}
	for k, vs := range resp.MultiValueHeaders {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	body := []byte(resp.Body)
	if resp.IsBase64Encoded {
		if b, err := base64.StdEncoding.DecodeString(resp.Body); err == nil {
			body = b
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func responseHeader(resp events.APIGatewayProxyResponse, name string) string {
	for k, v := range resp.Headers {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	for k, vs := range resp.MultiValueHeaders {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

// writeMessage writes API Gateway's own error shape, {"message": msg}.
func writeMessage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"message":%q}`, msg)
}

// writeAWSError writes a management API error as API Gateway does: the
// error's name in x-amzn-ErrorType (where the SDK looks first), a JSON body
// (possibly empty).
func writeAWSError(w http.ResponseWriter, status int, errorType, body string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h["x-amzn-ErrorType"] = []string{errorType}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// errGone is a message that could not be delivered: the connection ended.
var errGone = errors.New("connection gone")
