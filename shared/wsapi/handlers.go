package wsapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/uuid"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// Sessions is what the handlers need of the upload service
// (*upload.Service): the user's session, read without S3 calls. A session
// that is not the user's is an *upload.Error with code NOT_FOUND.
type Sessions interface {
	SessionToWatch(ctx context.Context, userID, sessionID string) (*upload.Session, error)
}

// Connections is what the handlers need of the connections store
// (*postgres.Store).
type Connections interface {
	// SaveConnection records a connection; an unknown session wraps
	// upload.ErrNotFound.
	SaveConnection(ctx context.Context, connectionID, userID, sessionID string, expiresAt time.Time) error
	// DeleteConnection forgets a connection; a missing one is not an error.
	DeleteConnection(ctx context.Context, connectionID string) error
	// DeleteExpiredConnections sweeps the rows past their expiry.
	DeleteExpiredConnections(ctx context.Context) (int64, error)
}

// Handler is a WebSocket route's Lambda handler: API Gateway's WebSocket
// event in, the route's response out.
type Handler = func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error)

// Defaults of an API's fields.
const (
	// DefaultMaxConnectionAge is API Gateway's limit on a WebSocket
	// connection's duration: a row older than that has no connection.
	DefaultMaxConnectionAge = 2 * time.Hour
	// DefaultExpiryGrace keeps a connection past its session's expiry for
	// the events of work that began before it (a finalize under way).
	DefaultExpiryGrace = 5 * time.Minute
)

// API serves the WebSocket routes.
type API struct {
	sessions Sessions
	conns    Connections

	// MaxConnectionAge bounds a connection row's life (default
	// DefaultMaxConnectionAge).
	MaxConnectionAge time.Duration
	// ExpiryGrace is added to the session's expiry (default
	// DefaultExpiryGrace); the row expires then or at MaxConnectionAge,
	// whichever is sooner.
	ExpiryGrace time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// New returns the WebSocket API over the upload service (to check that a
// session is the user's) and the connections store.
func New(sessions Sessions, conns Connections) *API {
	return &API{sessions: sessions, conns: conns, MaxConnectionAge: DefaultMaxConnectionAge,
		ExpiryGrace: DefaultExpiryGrace, Now: time.Now}
}

// Handler returns the handler of the named function's route.
func (a *API) Handler(function string) (Handler, error) {
	rt, ok := RouteByFunction(function)
	if !ok {
		return nil, fmt.Errorf("wsapi: no WebSocket route for function %q", function)
	}
	return func(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
		return rt.handle(a, ctx, req)
	}, nil
}

// Connect serves $connect: ?sessionId=<id>, the user from the authorizer.
// No user → 401; no or malformed sessionId → 400; a session that is
// unknown or not the user's → 403; a session past its expiresAt → 410
// (as the HTTP API's SESSION_EXPIRED); otherwise the connection is saved
// and the answer is 200. Any status but 2xx makes API Gateway refuse the
// upgrade with that status. Nothing is posted to the connection here: it
// does not exist for the management API until $connect has returned.
func (a *API) Connect(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	connID := req.RequestContext.ConnectionID
	log := slog.With("route", "$connect", "connectionId", connID, "requestId", req.RequestContext.RequestID)
	userID := UserID(req.RequestContext.Authorizer)
	if userID == "" {
		return status(http.StatusUnauthorized, "no authenticated user"), nil
	}
	if connID == "" {
		return status(http.StatusBadRequest, "no connection id"), nil
	}
	sessionID := req.QueryStringParameters["sessionId"]
	if !isUUID(sessionID) {
		return status(http.StatusBadRequest, "query parameter sessionId must be an upload session id"), nil
	}
	log = log.With("userId", userID, "sessionId", sessionID)

	sess, err := a.sessions.SessionToWatch(ctx, userID, sessionID)
	if e, ok := upload.AsError(err); ok && e.Code == upload.CodeNotFound {
		return status(http.StatusForbidden, "not your upload session"), nil
	}
	if err != nil {
		log.ErrorContext(ctx, "connect: read session", "err", err)
		return status(http.StatusInternalServerError, "internal error"), nil
	}
	// Past its expiry a session takes no more writes (a finalize of it
	// only returns the MOC it already has): nothing would ever be sent,
	// and the row would be saved already expired, or nearly.
	if !a.now().Before(sess.ExpiresAt) {
		return status(http.StatusGone, "upload session has expired"), nil
	}

	// Rows whose $disconnect never came: swept here, where it costs no
	// upload anything.
	if n, err := a.conns.DeleteExpiredConnections(ctx); err != nil {
		log.WarnContext(ctx, "connect: sweep expired connections", "err", err)
	} else if n > 0 {
		log.InfoContext(ctx, "connect: swept expired connections", "deleted", n)
	}

	expires := a.expiry(sess)
	err = a.conns.SaveConnection(ctx, connID, userID, sessionID, expires)
	if errors.Is(err, upload.ErrNotFound) { // the session was deleted meanwhile
		return status(http.StatusForbidden, "not your upload session"), nil
	}
	if err != nil {
		log.ErrorContext(ctx, "connect: save connection", "err", err)
		return status(http.StatusInternalServerError, "internal error"), nil
	}
	log.InfoContext(ctx, "connected", "expiresAt", expires)
	return status(http.StatusOK, "connected"), nil
}

// expiry is when a connection to sess stops being listed: the session's
// expiry plus ExpiryGrace, and no later than MaxConnectionAge from now.
func (a *API) expiry(sess *upload.Session) time.Time {
	now := a.now()
	maxAge, grace := a.MaxConnectionAge, a.ExpiryGrace
	if maxAge <= 0 {
		maxAge = DefaultMaxConnectionAge
	}
	if grace < 0 {
		grace = 0
	}
	return minTime(sess.ExpiresAt.Add(grace), now.Add(maxAge)).UTC()
}

func (a *API) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Disconnect serves $disconnect: the connection is forgotten. API Gateway
// ignores the answer; a failure is logged, and the row expires anyway.
func (a *API) Disconnect(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	connID := req.RequestContext.ConnectionID
	if connID == "" {
		return status(http.StatusBadRequest, "no connection id"), nil
	}
	if err := a.conns.DeleteConnection(ctx, connID); err != nil {
		slog.ErrorContext(ctx, "disconnect: delete connection", "route", "$disconnect", "connectionId", connID,
			"requestId", req.RequestContext.RequestID, "err", err)
		return status(http.StatusInternalServerError, "internal error"), nil
	}
	return status(http.StatusOK, "disconnected"), nil
}

// Messages the $default route answers with.
const (
	// PongBody answers {"action":"ping"}.
	PongBody = `{"type":"pong"}`
	// MessageTypeError is the type of the answer to anything else.
	MessageTypeError = "error"
)

// ErrorMessage is the answer to a message the API does not understand.
type ErrorMessage struct {
	Type    string `json:"type"` // MessageTypeError
	Message string `json:"message"`
}

// Default serves $default, every message a client sends: {"action":"ping"}
// is answered with {"type":"pong"}, anything else with
// {"type":"error","message":"unknown action: …; send {\"action\":\"ping\"}"}
// (status 200 either way: the message was handled). API Gateway sends the
// body back to the client as one message only when the route has a route
// response (see Considerations in the package doc).
func (a *API) Default(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	body := req.Body
	if req.IsBase64Encoded {
		if b, err := base64.StdEncoding.DecodeString(body); err == nil {
			body = string(b)
		}
	}
	var msg struct {
		Action *string `json:"action"`
	}
	var what string
	switch err := json.Unmarshal([]byte(body), &msg); {
	case err != nil:
		what = `the message is not a JSON object with a string "action"`
	case msg.Action == nil:
		what = `the message has no "action"`
	case *msg.Action == "ping":
		return reply(PongBody), nil
	default:
		what = fmt.Sprintf("%q", clip(*msg.Action, 64))
	}
	b, _ := json.Marshal(ErrorMessage{Type: MessageTypeError, Message: "unknown action: " + what + `; send {"action":"ping"}`})
	return reply(string(b)), nil
}

// clip shortens s to at most n runes.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

// UserID is the user the authorizer let in: the "userId" of the Lambda
// REQUEST authorizer's context (API Gateway flattens the context into
// requestContext.authorizer), else its "principalId". "" when there is
// none.
func UserID(authorizer any) string {
	for _, key := range []string{"userId", "principalId"} {
		var v any
		switch m := authorizer.(type) {
		case map[string]any:
			v = m[key]
		case map[string]string:
			v = m[key]
		}
		if s, ok := v.(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// isUUID reports whether s is a UUID in the canonical 36-character form.
func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

// status is an answer to $connect or $disconnect, as API Gateway's own
// errors are shaped: {"message":"…"}.
func status(code int, message string) events.APIGatewayProxyResponse {
	b, _ := json.Marshal(map[string]string{"message": message})
	return events.APIGatewayProxyResponse{StatusCode: code, Headers: map[string]string{"Content-Type": "application/json"}, Body: string(b)}
}

// reply is a $default answer: body goes back to the client as one message.
func reply(body string) events.APIGatewayProxyResponse {
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK, Body: body}
}
