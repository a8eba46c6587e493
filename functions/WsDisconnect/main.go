// Command WsDisconnect is the Lambda function behind the WebSocket API route $disconnect.
package main

import "github.com/mocbuilders/moc-upload/shared/app"

func main() { app.WebSocketMain("WsDisconnect") }
