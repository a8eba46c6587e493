package wsgateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/coder/websocket"
)

// fakeFunctions plays WsConnect, WsDefault and WsDisconnect: it records
// every event, hands each new connection id to connected, answers
// {"action":"ping"} with {"type":"pong"}, and refuses or fails $connect
// when the query says so (refuse=<status>, fail=1).
type fakeFunctions struct {
	mu          sync.Mutex
	events      []events.APIGatewayWebsocketProxyRequest
	disconnects map[string]int
	connected   chan string
}

func newFakeFunctions() *fakeFunctions {
	return &fakeFunctions{disconnects: map[string]int{}, connected: make(chan string, 1000)}
}

func (f *fakeFunctions) handlers() map[string]Handler {
	return map[string]Handler{"WsConnect": f.connect, "WsDefault": f.message, "WsDisconnect": f.disconnect}
}

func (f *fakeFunctions) record(ev events.APIGatewayWebsocketProxyRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, ev)
	if ev.RequestContext.EventType == "DISCONNECT" {
		f.disconnects[ev.RequestContext.ConnectionID]++
	}
}

func (f *fakeFunctions) connect(_ context.Context, ev events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	f.record(ev)
	if ev.QueryStringParameters["fail"] != "" {
		return events.APIGatewayProxyResponse{}, errors.New("boom")
	}
	if s := ev.QueryStringParameters["refuse"]; s != "" {
		var status int
		_, _ = fmt.Sscan(s, &status)
		return events.APIGatewayProxyResponse{StatusCode: status, Body: `{"message":"not your session"}`}, nil
	}
	f.connected <- ev.RequestContext.ConnectionID
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
}

func (f *fakeFunctions) message(_ context.Context, ev events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	f.record(ev)
	switch ev.Body {
	case `{"action":"ping"}`:
		return events.APIGatewayProxyResponse{StatusCode: http.StatusOK, Body: `{"type":"pong"}`}, nil
	case "fail":
		return events.APIGatewayProxyResponse{}, errors.New("boom")
	}
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
}

func (f *fakeFunctions) disconnect(_ context.Context, ev events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	f.record(ev)
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
}

// eventsOf returns the recorded events of one type and connection ("" for any).
func (f *fakeFunctions) eventsOf(eventType, connectionID string) []events.APIGatewayWebsocketProxyRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []events.APIGatewayWebsocketProxyRequest
	for _, ev := range f.events {
		if ev.RequestContext.EventType == eventType && (connectionID == "" || ev.RequestContext.ConnectionID == connectionID) {
			out = append(out, ev)
		}
	}
	return out
}

func (f *fakeFunctions) disconnectCount(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.disconnects[id]
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type harness struct {
	t   *testing.T
	f   *fakeFunctions
	gw  *Gateway
	srv *httptest.Server
	api *apigatewaymanagementapi.Client
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	f := newFakeFunctions()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	gw := New(f.handlers(), opts)
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		gw.Close()
		srv.Close()
	})
	return &harness{t: t, f: f, gw: gw, srv: srv, api: sdkClient(srv.URL)}
}

// sdkClient is the real management API client, as a function builds it.
func sdkClient(endpoint string) *apigatewaymanagementapi.Client {
	return apigatewaymanagementapi.New(apigatewaymanagementapi.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDLOCAL", "secret", ""),
	})
}

func (h *harness) url(query string) string {
	return "ws" + strings.TrimPrefix(h.srv.URL, "http") + "/?" + query
}

// dial connects as user to session s1 and returns the client and its
// connection id.
func (h *harness) dial(user string) (*websocket.Conn, string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, h.url("sessionId=s1&token="+user), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = c.CloseNow() })
	select {
	case id := <-h.f.connected:
		return c, id
	case <-ctx.Done():
		h.t.Fatal("no $connect")
	}
	return nil, ""
}

func readText(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("message type %v, want text", typ)
	}
	return string(b)
}

func TestConnectWithoutTokenIsRefused401(t *testing.T) {
	h := newHarness(t, Options{})
	for _, q := range []string{"sessionId=s1", "sessionId=s1&token=", "sessionId=s1&token=%20"} {
		_, resp, err := websocket.Dial(context.Background(), h.url(q), nil)
		if err == nil {
			t.Fatalf("%s: connected without a token", q)
		}
		if resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: response %v, want 401", q, resp)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != `{"message":"Unauthorized"}` {
			t.Errorf("%s: body %s", q, body)
		}
	}
	if n := len(h.f.eventsOf("CONNECT", "")); n != 0 {
		t.Fatalf("$connect invoked %d times without a token", n)
	}
}

func TestConnectEvent(t *testing.T) {
	h := newHarness(t, Options{})
	ctx := context.Background()
	c, resp, err := websocket.Dial(ctx, h.url("sessionId=s1&token=dev-user-1&x=a&x=b"),
		&websocket.DialOptions{HTTPHeader: http.Header{"User-Agent": {"wstest/1"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	id := <-h.f.connected
	evs := h.f.eventsOf("CONNECT", id)
	if len(evs) != 1 {
		t.Fatalf("%d $connect events", len(evs))
	}
	ev := evs[0]
	rc := ev.RequestContext
	if rc.RouteKey != "$connect" || rc.Stage != "local" || rc.APIID != "local" || rc.MessageDirection != "IN" {
		t.Errorf("request context %+v", rc)
	}
	if len(id) != 16 || !strings.HasSuffix(id, "=") {
		t.Errorf("connection id %q is not like AWS's (16 characters ending in =)", id)
	}
	if rc.RequestID == "" || rc.RequestID == id || rc.ConnectedAt == 0 || rc.RequestTimeEpoch < rc.ConnectedAt {
		t.Errorf("ids and times: %+v", rc)
	}
	if _, err := time.Parse("02/Jan/2006:15:04:05 -0700", rc.RequestTime); err != nil {
		t.Errorf("requestTime %q: %v", rc.RequestTime, err)
	}
	if rc.Identity.SourceIP != "127.0.0.1" || rc.Identity.UserAgent != "wstest/1" {
		t.Errorf("identity %+v", rc.Identity)
	}
	if rc.DomainName != strings.TrimPrefix(h.srv.URL, "http://") {
		t.Errorf("domainName %q", rc.DomainName)
	}
	auth, ok := rc.Authorizer.(map[string]any)
	if !ok || auth["userId"] != "dev-user-1" || auth["principalId"] != "dev-user-1" {
		t.Errorf("authorizer %#v", rc.Authorizer)
	}
	if ev.QueryStringParameters["sessionId"] != "s1" || ev.QueryStringParameters["x"] != "b" ||
		strings.Join(ev.MultiValueQueryStringParameters["x"], ",") != "a,b" {
		t.Errorf("query %v %v", ev.QueryStringParameters, ev.MultiValueQueryStringParameters)
	}
	if ev.Headers["Sec-Websocket-Key"] == "" || ev.Headers["User-Agent"] != "wstest/1" ||
		ev.Headers["Host"] != rc.DomainName || ev.Headers["X-Forwarded-For"] != "127.0.0.1" ||
		len(ev.MultiValueHeaders["Upgrade"]) != 1 {
		t.Errorf("headers %v", ev.Headers)
	}
}

func TestConnectRefusedByFunction(t *testing.T) {
	h := newHarness(t, Options{})
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"sessionId=other&token=u1&refuse=403", http.StatusForbidden},
		{"token=u1&refuse=400", http.StatusBadRequest},
		{"sessionId=s1&token=u1&fail=1", http.StatusInternalServerError},
	} {
		_, resp, err := websocket.Dial(context.Background(), h.url(tc.query), nil)
		if err == nil {
			t.Fatalf("%s: connected", tc.query)
		}
		if resp == nil || resp.StatusCode != tc.want {
			t.Fatalf("%s: response %v, want %d", tc.query, resp, tc.want)
		}
	}
	if h.gw.Connections() != 0 {
		t.Fatalf("%d connections open", h.gw.Connections())
	}
	if n := len(h.f.eventsOf("DISCONNECT", "")); n != 0 {
		t.Fatalf("$disconnect invoked %d times for refused connections", n)
	}
}

func TestPingRoundTripThroughDefault(t *testing.T) {
	h := newHarness(t, Options{})
	c, id := h.dial("u1")
	ctx := context.Background()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"action":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, c); got != `{"type":"pong"}` {
		t.Fatalf("got %s", got)
	}
	msgs := h.f.eventsOf("MESSAGE", id)
	if len(msgs) != 1 {
		t.Fatalf("%d $default events", len(msgs))
	}
	rc := msgs[0].RequestContext
	if msgs[0].Body != `{"action":"ping"}` || rc.RouteKey != "$default" || rc.MessageID == nil || rc.MessageID == "" {
		t.Errorf("message event %+v", msgs[0])
	}
	if auth, _ := rc.Authorizer.(map[string]any); auth["userId"] != "u1" {
		t.Errorf("authorizer %v not passed on to $default", rc.Authorizer)
	}
	// A message the function answers with nothing sends nothing; one it
	// fails on gets API Gateway's error.
	if err := c.Write(ctx, websocket.MessageText, []byte("quiet")); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("fail")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, c); !strings.HasPrefix(got, `{"message":"Internal server error","connectionId":"`+id+`","requestId":"`) {
		t.Fatalf("after a failure got %s", got)
	}
	// A binary message arrives base64-encoded.
	if err := c.Write(ctx, websocket.MessageBinary, []byte{0xff, 0}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the binary message", func() bool { return len(h.f.eventsOf("MESSAGE", id)) == 4 })
	if ev := h.f.eventsOf("MESSAGE", id)[3]; !ev.IsBase64Encoded || ev.Body != "/wA=" {
		t.Errorf("binary message event: %v %q", ev.IsBase64Encoded, ev.Body)
	}
}

func TestManagementAPIThroughTheSDK(t *testing.T) {
	h := newHarness(t, Options{})
	c, id := h.dial("u1")
	ctx := context.Background()
	for i := range 20 {
		if _, err := h.api.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
			ConnectionId: aws.String(id), Data: fmt.Appendf(nil, `{"n":%d}`, i),
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		if got, want := readText(t, c), fmt.Sprintf(`{"n":%d}`, i); got != want {
			t.Fatalf("message %d: %s, want %s", i, got, want)
		}
	}

	before := time.Now()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"action":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	readText(t, c)
	out, err := h.api.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	if out.ConnectedAt == nil || out.LastActiveAt == nil || out.Identity == nil {
		t.Fatalf("GetConnection: %+v", out)
	}
	if aws.ToString(out.Identity.SourceIp) != "127.0.0.1" || !strings.Contains(aws.ToString(out.Identity.UserAgent), "Go-http-client") {
		t.Errorf("identity %s %s", aws.ToString(out.Identity.SourceIp), aws.ToString(out.Identity.UserAgent))
	}
	if out.ConnectedAt.After(before) || out.LastActiveAt.Before(before.Truncate(time.Millisecond)) {
		t.Errorf("connectedAt %v, lastActiveAt %v, message sent at %v", out.ConnectedAt, out.LastActiveAt, before)
	}
}

func TestManagementAPIAnswersGoneForUnknownConnections(t *testing.T) {
	h := newHarness(t, Options{})
	ctx := context.Background()
	id := aws.String("L0SM9cOFvHcCIhw=")
	var gone *types.GoneException
	_, err := h.api.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: id, Data: []byte("x")})
	if !errors.As(err, &gone) {
		t.Fatalf("PostToConnection: %v, want *types.GoneException", err)
	}
	if _, err = h.api.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: id}); !errors.As(err, &gone) {
		t.Fatalf("GetConnection: %v, want *types.GoneException", err)
	}
	if _, err = h.api.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: id}); !errors.As(err, &gone) {
		t.Fatalf("DeleteConnection: %v, want *types.GoneException", err)
	}

	// The raw answer is API Gateway's: 410, the type in x-amzn-ErrorType,
	// an empty JSON body.
	resp, err := http.Post(h.srv.URL+"/@connections/nope", "application/octet-stream", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone || resp.Header.Get("X-Amzn-Errortype") != "GoneException" ||
		resp.Header.Get("Content-Type") != "application/json" || len(body) != 0 || resp.Header.Get("X-Amzn-Requestid") == "" {
		t.Fatalf("410 answer: %d %v %q", resp.StatusCode, resp.Header, body)
	}
}

func TestManagementAPIForbiddenAndTooLarge(t *testing.T) {
	h := newHarness(t, Options{})
	_, id := h.dial("u1")
	ctx := context.Background()
	_, err := h.api.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
		ConnectionId: aws.String(id), Data: make([]byte, MaxMessageBytes+1),
	})
	var tooLarge *types.PayloadTooLargeException
	if !errors.As(err, &tooLarge) {
		t.Fatalf("PostToConnection of 128 KiB + 1: %v, want *types.PayloadTooLargeException", err)
	}
	for _, tc := range []struct{ method, path string }{
		{"PUT", "/@connections/" + id},
		{"GET", "/@connections"},
		{"GET", "/other/@connections/" + id},
		{"POST", "/nowhere"},
	} {
		req, _ := http.NewRequest(tc.method, h.srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || string(body) != `{"message":"Forbidden"}` {
			t.Errorf("%s %s: %d %s, want 403", tc.method, tc.path, resp.StatusCode, body)
		}
	}
}

// Connection ids are base64: "/" and "+" must survive the SDK's escaping,
// and the stage prefix of https://{domainName}/{stage} is accepted.
func TestManagementAPIEscapedIDsAndStagePath(t *testing.T) {
	var mu sync.Mutex
	n := 0
	h := newHarness(t, Options{NewID: func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return fmt.Sprintf("a/b+c%d=", n)
	}})
	c, id := h.dial("u1")
	if !strings.Contains(id, "/") {
		t.Fatalf("id %q", id)
	}
	ctx := context.Background()
	for _, api := range []*apigatewaymanagementapi.Client{h.api, sdkClient(h.srv.URL + "/local")} {
		if _, err := api.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
			ConnectionId: aws.String(id), Data: []byte("hello"),
		}); err != nil {
			t.Fatal(err)
		}
		if got := readText(t, c); got != "hello" {
			t.Fatalf("got %q", got)
		}
	}
}

func TestDisconnectOnceWhenTheClientCloses(t *testing.T) {
	h := newHarness(t, Options{})
	c, id := h.dial("u1")
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "$disconnect", func() bool { return h.f.disconnectCount(id) > 0 })
	waitFor(t, "no connection", func() bool { return h.gw.Connections() == 0 })
	ev := h.f.eventsOf("DISCONNECT", id)[0]
	rc := ev.RequestContext
	if rc.RouteKey != "$disconnect" || rc.DisconnectStatusCode != 1000 || rc.DisconnectReason == nil || *rc.DisconnectReason != "bye" {
		t.Errorf("disconnect event %+v", rc)
	}
	if auth, _ := rc.Authorizer.(map[string]any); auth["userId"] != "u1" {
		t.Errorf("authorizer %v not passed on to $disconnect", rc.Authorizer)
	}
	_, err := h.api.PostToConnection(context.Background(), &apigatewaymanagementapi.PostToConnectionInput{
		ConnectionId: aws.String(id), Data: []byte("late"),
	})
	var gone *types.GoneException
	if !errors.As(err, &gone) {
		t.Fatalf("post after close: %v, want GoneException", err)
	}
	// A client that just goes away (no close frame) is disconnected too.
	c2, id2 := h.dial("u2")
	_ = c2.CloseNow()
	waitFor(t, "$disconnect of a broken connection", func() bool { return h.f.disconnectCount(id2) > 0 })
	if code := h.f.eventsOf("DISCONNECT", id2)[0].RequestContext.DisconnectStatusCode; code != 1006 {
		t.Errorf("broken connection's disconnectStatusCode %d, want 1006", code)
	}
	h.gw.Close()
	if a, b := h.f.disconnectCount(id), h.f.disconnectCount(id2); a != 1 || b != 1 {
		t.Fatalf("$disconnect invoked %d and %d times, want once each", a, b)
	}
}

func TestDeleteConnection(t *testing.T) {
	h := newHarness(t, Options{})
	c, id := h.dial("u1")
	ctx := context.Background()
	if _, err := h.api.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
		ConnectionId: aws.String(id), Data: []byte("last words"),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.api.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	// The client gets what was posted before, then the close.
	if got := readText(t, c); got != "last words" {
		t.Fatalf("got %q", got)
	}
	_, _, err := c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("read after DELETE: %v, want close 1000", err)
	}
	waitFor(t, "$disconnect", func() bool { return h.f.disconnectCount(id) > 0 })
	var gone *types.GoneException
	if _, err := h.api.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: aws.String(id)}); !errors.As(err, &gone) {
		t.Fatalf("second DELETE: %v, want GoneException", err)
	}
	h.gw.Close()
	if n := h.f.disconnectCount(id); n != 1 {
		t.Fatalf("$disconnect invoked %d times, want once", n)
	}
}

func TestCloseEndsEveryConnection(t *testing.T) {
	h := newHarness(t, Options{})
	c, id := h.dial("u1")
	read := make(chan error, 1)
	go func() { // a client reading, as browsers do, answers the close frame
		_, _, err := c.Read(context.Background())
		read <- err
	}()
	h.gw.Close() // returns once $disconnect has run
	if n := h.f.disconnectCount(id); n != 1 {
		t.Fatalf("$disconnect invoked %d times", n)
	}
	if err := <-read; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("read after Close: %v, want close 1001", err)
	}
	if code := h.f.eventsOf("DISCONNECT", id)[0].RequestContext.DisconnectStatusCode; code != 1001 {
		t.Errorf("disconnectStatusCode %d, want 1001", code)
	}
	// Closed, the gateway refuses upgrades.
	if _, resp, err := websocket.Dial(context.Background(), h.url("token=u2"), nil); err == nil || resp == nil ||
		resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("upgrade after Close: %v %v, want 503", resp, err)
	}
}

// A route without a function: $connect accepts, messages get API
// Gateway's Forbidden.
func TestRoutesWithoutHandlers(t *testing.T) {
	gw := New(map[string]Handler{}, Options{Logger: quietLogger()})
	srv := httptest.NewServer(gw)
	defer srv.Close()
	defer gw.Close()
	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/?token=u1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, c); !strings.Contains(got, `"message":"Forbidden"`) {
		t.Fatalf("got %s", got)
	}
}

// 100 clients at once, each sent its own messages through the SDK
// concurrently, each receiving exactly its own, in order.
func TestManyConnections(t *testing.T) {
	h := newHarness(t, Options{})
	const clients, messages = 100, 20
	type client struct {
		c  *websocket.Conn
		id string
	}
	cs := make([]client, clients)
	var wg sync.WaitGroup
	errs := make(chan error, clients*2)
	var mu sync.Mutex
	for i := range cs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, h.url(fmt.Sprintf("sessionId=s1&token=user-%d", i)), nil)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			cs[i].c = c
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	byUser := map[string]string{}
	for _, ev := range h.f.eventsOf("CONNECT", "") {
		byUser[ev.QueryStringParameters["token"]] = ev.RequestContext.ConnectionID
	}
	for i := range cs {
		cs[i].id = byUser[fmt.Sprintf("user-%d", i)]
		if cs[i].id == "" {
			t.Fatalf("no connection id for client %d", i)
		}
		t.Cleanup(func() { _ = cs[i].c.CloseNow() })
	}
	if n := h.gw.Connections(); n != clients {
		t.Fatalf("%d connections, want %d", n, clients)
	}

	errs = make(chan error, clients*2)
	for i := range cs {
		wg.Go(func() { // poster
			for m := range messages {
				if _, err := h.api.PostToConnection(context.Background(), &apigatewaymanagementapi.PostToConnectionInput{
					ConnectionId: aws.String(cs[i].id), Data: fmt.Appendf(nil, "%s #%d", cs[i].id, m),
				}); err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Go(func() { // reader
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for m := range messages {
				_, b, err := cs[i].c.Read(ctx)
				if err != nil {
					errs <- err
					return
				}
				if want := fmt.Sprintf("%s #%d", cs[i].id, m); string(b) != want {
					errs <- fmt.Errorf("client %d got %q, want %q", i, b, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, c := range cs {
		wg.Go(func() { _ = c.c.Close(websocket.StatusNormalClosure, "") })
	}
	wg.Wait()
	waitFor(t, "every $disconnect", func() bool { return h.gw.Connections() == 0 })
	h.gw.Close()
	for _, c := range cs {
		if n := h.f.disconnectCount(c.id); n != 1 {
			t.Fatalf("$disconnect of %s invoked %d times", c.id, n)
		}
	}
}
