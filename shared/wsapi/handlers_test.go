package wsapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/uuid"

	"github.com/mocbuilders/moc-upload/local/stacktest"
	"github.com/mocbuilders/moc-upload/shared/postgres"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// The handlers run against a real PostgreSQL: the upload service reads the
// sessions, the store keeps the connections.
func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

type fixture struct {
	api   *API
	store *postgres.Store
	now   time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	url := stacktest.Postgres(t)
	if err := postgres.Migrate(t.Context(), url); err != nil {
		t.Fatal(err)
	}
	store, err := postgres.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	f := &fixture{store: store, now: time.Now().UTC().Truncate(time.Microsecond)}
	svc := &upload.Service{Store: store, Limits: upload.DefaultLimits(), Now: func() time.Time { return f.now }, NewID: uuid.NewString}
	f.api = New(svc, store)
	f.api.Now = func() time.Time { return f.now }
	return f
}

// session inserts a session of userID that expires in ttl.
func (f *fixture) session(t *testing.T, userID string, ttl time.Duration) string {
	t.Helper()
	s := &upload.Session{ID: uuid.NewString(), UserID: userID, Status: upload.SessionActive,
		PartSizeBytes: upload.PartSizeBytes, ExpiresAt: f.now.Add(ttl), CreatedAt: f.now, UpdatedAt: f.now}
	if err := f.store.InTx(t.Context(), func(tx upload.Tx) error { return tx.InsertSession(t.Context(), s) }); err != nil {
		t.Fatal(err)
	}
	return s.ID
}

// row is a connection's stored user, session and expiry; ok is false when
// there is none.
func (f *fixture) row(t *testing.T, connID string) (userID, sessionID string, expires time.Time, ok bool) {
	t.Helper()
	err := f.store.Pool().QueryRow(t.Context(),
		`SELECT user_id, session_id::text, expires_at FROM websocket_connections WHERE connection_id = $1`, connID).
		Scan(&userID, &sessionID, &expires)
	if err != nil {
		return "", "", time.Time{}, false
	}
	return userID, sessionID, expires.UTC(), true
}

func connectReq(connID string, authorizer any, query map[string]string) events.APIGatewayWebsocketProxyRequest {
	return events.APIGatewayWebsocketProxyRequest{
		QueryStringParameters: query,
		RequestContext: events.APIGatewayWebsocketProxyRequestContext{
			RouteKey: "$connect", EventType: "CONNECT", ConnectionID: connID, RequestID: "req-1",
			Authorizer: authorizer,
		},
	}
}

func user(id string) map[string]any { return map[string]any{"userId": id, "principalId": id} }

func call(t *testing.T, h Handler, req events.APIGatewayWebsocketProxyRequest) events.APIGatewayProxyResponse {
	t.Helper()
	res, err := h(t.Context(), req)
	if err != nil {
		t.Fatalf("handler returned an error: %v", err)
	}
	return res
}

func TestConnectSavesTheConnection(t *testing.T) {
	f := newFixture(t)
	sid := f.session(t, "u1", 30*time.Minute)
	res := call(t, f.api.Connect, connectReq("conn-1=", user("u1"), map[string]string{"sessionId": sid, "token": "u1"}))
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d %s, want 200", res.StatusCode, res.Body)
	}
	u, s, exp, ok := f.row(t, "conn-1=")
	if !ok || u != "u1" || s != sid {
		t.Fatalf("row = %q %q %v, want u1 %s", u, s, ok, sid)
	}
	if want := f.now.Add(30*time.Minute + DefaultExpiryGrace); !exp.Equal(want) {
		t.Errorf("expires %v, want the session's expiry plus the grace, %v", exp, want)
	}
	ids, err := f.store.SessionConnections(t.Context(), sid)
	if err != nil || len(ids) != 1 || ids[0] != "conn-1=" {
		t.Errorf("SessionConnections = %v, %v", ids, err)
	}
}

func TestConnectExpiryIsAtMostTwoHours(t *testing.T) {
	f := newFixture(t)
	sid := f.session(t, "u1", 5*time.Hour)
	if res := call(t, f.api.Connect, connectReq("c1", user("u1"), map[string]string{"sessionId": sid})); res.StatusCode != 200 {
		t.Fatalf("status %d %s", res.StatusCode, res.Body)
	}
	if _, _, exp, _ := f.row(t, "c1"); !exp.Equal(f.now.Add(2 * time.Hour)) {
		t.Errorf("expires %v, want now + 2h (%v)", exp, f.now.Add(2*time.Hour))
	}
}

func TestConnectAuthorizerShapes(t *testing.T) {
	f := newFixture(t)
	sid := f.session(t, "u1", time.Hour)
	// As API Gateway delivers it: JSON, the REQUEST authorizer's context
	// flattened next to principalId.
	var fromJSON events.APIGatewayWebsocketProxyRequest
	raw := `{"queryStringParameters":{"sessionId":"` + sid + `","token":"t"},
		"requestContext":{"routeKey":"$connect","eventType":"CONNECT","connectionId":"json=","requestId":"r",
		"authorizer":{"principalId":"someone","userId":"u1","integrationLatency":12}}}`
	if err := json.Unmarshal([]byte(raw), &fromJSON); err != nil {
		t.Fatal(err)
	}
	for name, req := range map[string]events.APIGatewayWebsocketProxyRequest{
		"json event":        fromJSON,
		"principalId only":  connectReq("p", map[string]any{"principalId": "u1"}, map[string]string{"sessionId": sid}),
		"map[string]string": connectReq("s", map[string]string{"userId": "u1"}, map[string]string{"sessionId": sid}),
	} {
		if res := call(t, f.api.Connect, req); res.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d %s, want 200", name, res.StatusCode, res.Body)
		}
	}
}

func TestConnectRefusals(t *testing.T) {
	f := newFixture(t)
	mine := f.session(t, "u1", time.Hour)
	theirs := f.session(t, "u2", time.Hour)
	expired := f.session(t, "u1", -time.Second)
	expiring := f.session(t, "u1", 0) // expires this instant
	for _, c := range []struct {
		name       string
		authorizer any
		query      map[string]string
		connID     string
		want       int
	}{
		{"no authorizer", nil, map[string]string{"sessionId": mine}, "c", http.StatusUnauthorized},
		{"empty user", map[string]any{"userId": ""}, map[string]string{"sessionId": mine}, "c", http.StatusUnauthorized},
		{"user not a string", map[string]any{"userId": 42}, map[string]string{"sessionId": mine}, "c", http.StatusUnauthorized},
		{"no sessionId", user("u1"), nil, "c", http.StatusBadRequest},
		{"malformed sessionId", user("u1"), map[string]string{"sessionId": "abc"}, "c", http.StatusBadRequest},
		{"no connection id", user("u1"), map[string]string{"sessionId": mine}, "", http.StatusBadRequest},
		{"another user's session", user("u1"), map[string]string{"sessionId": theirs}, "c", http.StatusForbidden},
		{"unknown session", user("u1"), map[string]string{"sessionId": uuid.NewString()}, "c", http.StatusForbidden},
		{"expired session", user("u1"), map[string]string{"sessionId": expired}, "c", http.StatusGone},
		{"session expiring now", user("u1"), map[string]string{"sessionId": expiring}, "c", http.StatusGone},
		{"another user's expired session", user("u2"), map[string]string{"sessionId": expired}, "c", http.StatusForbidden},
	} {
		res := call(t, f.api.Connect, connectReq(c.connID, c.authorizer, c.query))
		if res.StatusCode != c.want {
			t.Errorf("%s: status %d %s, want %d", c.name, res.StatusCode, res.Body, c.want)
		}
		var body struct{ Message string }
		if err := json.Unmarshal([]byte(res.Body), &body); err != nil || body.Message == "" {
			t.Errorf("%s: body %q, want {\"message\":…}", c.name, res.Body)
		}
	}
	var n int
	if err := f.store.Pool().QueryRow(t.Context(), `SELECT count(*) FROM websocket_connections`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d rows after refusals (%v), want 0", n, err)
	}
}

func TestConnectSweepsExpiredRows(t *testing.T) {
	f := newFixture(t)
	sid := f.session(t, "u1", time.Hour)
	if err := f.store.SaveConnection(t.Context(), "stale", "u1", sid, time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if res := call(t, f.api.Connect, connectReq("fresh", user("u1"), map[string]string{"sessionId": sid})); res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if _, _, _, ok := f.row(t, "stale"); ok {
		t.Error("the expired row survived a connect")
	}
	if _, _, _, ok := f.row(t, "fresh"); !ok {
		t.Error("the new row is missing")
	}
}

// failingConns fails every call, as a database that is down does.
type failingConns struct{}

func (failingConns) SaveConnection(context.Context, string, string, string, time.Time) error {
	return errors.New("db down")
}
func (failingConns) DeleteConnection(context.Context, string) error { return errors.New("db down") }
func (failingConns) DeleteExpiredConnections(context.Context) (int64, error) {
	return 0, errors.New("db down")
}

func TestStoreFailureIs500WithoutDetail(t *testing.T) {
	f := newFixture(t)
	sid := f.session(t, "u1", time.Hour)
	api := New(f.api.sessions, failingConns{})
	for name, res := range map[string]events.APIGatewayProxyResponse{
		"connect":    call(t, api.Connect, connectReq("c", user("u1"), map[string]string{"sessionId": sid})),
		"disconnect": call(t, api.Disconnect, connectReq("c", nil, nil)),
	} {
		if res.StatusCode != http.StatusInternalServerError || strings.Contains(res.Body, "db down") {
			t.Errorf("%s: %d %s, want 500 without the error's text", name, res.StatusCode, res.Body)
		}
	}
}

func TestDisconnectDeletes(t *testing.T) {
	f := newFixture(t)
	sid := f.session(t, "u1", time.Hour)
	call(t, f.api.Connect, connectReq("c1", user("u1"), map[string]string{"sessionId": sid}))
	req := events.APIGatewayWebsocketProxyRequest{RequestContext: events.APIGatewayWebsocketProxyRequestContext{
		RouteKey: "$disconnect", EventType: "DISCONNECT", ConnectionID: "c1"}}
	for range 2 { // a second $disconnect finds nothing: still 200
		if res := call(t, f.api.Disconnect, req); res.StatusCode != http.StatusOK {
			t.Fatalf("status %d %s", res.StatusCode, res.Body)
		}
	}
	if _, _, _, ok := f.row(t, "c1"); ok {
		t.Error("the connection is still stored")
	}
}

func TestDefault(t *testing.T) {
	f := newFixture(t)
	const hint = `; send {\"action\":\"ping\"}"}`
	for _, c := range []struct {
		body   string
		base64 bool
		want   string
	}{
		{`{"action":"ping"}`, false, `{"type":"pong"}`},
		{` {"action" : "ping", "extra": 1} `, false, `{"type":"pong"}`},
		{`{"action":"ping"}`, true, `{"type":"pong"}`},
		{`{"action":"subscribe"}`, false, `{"type":"error","message":"unknown action: \"subscribe\"` + hint},
		{`{"action":"PING"}`, false, `{"type":"error","message":"unknown action: \"PING\"` + hint},
		{`{"hello":1}`, false, `{"type":"error","message":"unknown action: the message has no \"action\"` + hint},
		{`ping`, false, `{"type":"error","message":"unknown action: the message is not a JSON object with a string \"action\"` + hint},
		{``, false, `{"type":"error","message":"unknown action: the message is not a JSON object with a string \"action\"` + hint},
		{`{"action":5}`, false, `{"type":"error","message":"unknown action: the message is not a JSON object with a string \"action\"` + hint},
		{`{"action":"` + strings.Repeat("x", 100) + `"}`, false,
			`{"type":"error","message":"unknown action: \"` + strings.Repeat("x", 64) + `…\"` + hint},
	} {
		body := c.body
		if c.base64 {
			body = base64.StdEncoding.EncodeToString([]byte(body))
		}
		req := events.APIGatewayWebsocketProxyRequest{Body: body, IsBase64Encoded: c.base64,
			RequestContext: events.APIGatewayWebsocketProxyRequestContext{RouteKey: "$default", EventType: "MESSAGE", ConnectionID: "c1"}}
		res := call(t, f.api.Default, req)
		if res.StatusCode != http.StatusOK || res.Body != c.want {
			t.Errorf("body %q: %d %s\nwant 200 %s", c.body, res.StatusCode, res.Body, c.want)
		}
	}
}

func TestHandlerPerFunction(t *testing.T) {
	f := newFixture(t)
	for _, rt := range Routes {
		h, err := f.api.Handler(rt.Function)
		if err != nil || h == nil {
			t.Errorf("Handler(%s) = %v", rt.Function, err)
		}
		if got, ok := RouteByKey(rt.Key); !ok || got.Function != rt.Function {
			t.Errorf("RouteByKey(%s) = %v, %v", rt.Key, got.Function, ok)
		}
	}
	h, _ := f.api.Handler("WsDefault")
	if res := call(t, h, events.APIGatewayWebsocketProxyRequest{Body: `{"action":"ping"}`}); res.Body != PongBody {
		t.Errorf("WsDefault answered %s", res.Body)
	}
	if _, err := f.api.Handler("GetSession"); err == nil {
		t.Error("Handler of an HTTP function succeeded")
	}
}

func TestUserID(t *testing.T) {
	for _, c := range []struct {
		authorizer any
		want       string
	}{
		{map[string]any{"userId": "u1", "principalId": "p"}, "u1"},
		{map[string]any{"principalId": "p"}, "p"},
		{map[string]any{"userId": "", "principalId": "p"}, "p"},
		{map[string]string{"userId": "u1"}, "u1"},
		{map[string]any{"userId": 7}, ""},
		{"u1", ""},
		{nil, ""},
	} {
		if got := UserID(c.authorizer); got != c.want {
			t.Errorf("UserID(%#v) = %q, want %q", c.authorizer, got, c.want)
		}
	}
}
