// Package wsapi is the WebSocket face of the upload service: the API
// Gateway WebSocket API's routes and the Lambda handlers behind them.
// Clients connect to watch a session's upload progress; the events
// themselves are sent by shared/progress.
//
// # Routes
//
//   - $connect (WsConnect): wss://…/{stage}?sessionId=<id>&token=<token>.
//     In AWS a Lambda REQUEST authorizer checks the token and puts the
//     user id in its context as "userId" (its principalId is accepted
//     too); the local gateway does the same. The connection is saved in
//     PostgreSQL (websocket_connections) with its user, session and expiry.
//   - $disconnect (WsDisconnect): the connection is deleted.
//   - $default (WsDefault): {"action":"ping"} → {"type":"pong"}; anything
//     else → {"type":"error","message":"unknown action: …"}.
//
// # Considerations
//
// The handlers use the database only (the connections and the session's
// owner), never S3. Connection rows expire with their session (plus a
// grace) and at most after API Gateway's 2-hour connection limit; expired
// rows are swept on $connect. API Gateway passes $default's answer back
// to the client only when the route has a route response ("two-way
// communication"): RouteResponseSelectionExpression "$default" on the
// AWS::ApiGatewayV2::Route and an AWS::ApiGatewayV2::RouteResponse with
// RouteResponseKey "$default"; a Lambda proxy integration needs no
// integration response. Without it the ping is handled but no pong sent.
package wsapi

import (
	"context"

	"github.com/aws/aws-lambda-go/events"
)

// Route is one WebSocket API route and the Lambda function that serves it.
type Route struct {
	Key      string // API Gateway's route key: $connect, $disconnect, $default
	Function string // functions/<Function>/main.go, <Function>Function in template.yaml
	handle   func(a *API, ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error)
}

// Routes is the WebSocket API's routing table.
var Routes = []Route{
	{"$connect", "WsConnect", (*API).Connect},
	{"$disconnect", "WsDisconnect", (*API).Disconnect},
	{"$default", "WsDefault", (*API).Default},
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

// RouteByKey finds the route of an API Gateway route key ($connect, …).
func RouteByKey(key string) (Route, bool) {
	for _, rt := range Routes {
		if rt.Key == key {
			return rt, true
		}
	}
	return Route{}, false
}
