// Package wsapi is the WebSocket face of the upload service: the API
// Gateway WebSocket API's routes and the Lambda handlers behind them.
// Clients connect to watch a session's upload progress; the events
// themselves are sent by shared/progress.
package wsapi

// Route is one WebSocket API route and the Lambda function that serves it.
type Route struct {
	Key      string // API Gateway's route key: $connect, $disconnect, $default
	Function string // functions/<Function>/main.go, <Function>Function in template.yaml
}

// Routes is the WebSocket API's routing table.
var Routes = []Route{
	{"$connect", "WsConnect"},
	{"$disconnect", "WsDisconnect"},
	{"$default", "WsDefault"},
}
