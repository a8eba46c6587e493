// Command WsConnect is the Lambda function behind the WebSocket API route $connect.
package main

import "github.com/mocbuilders/moc-upload/shared/app"

func main() { app.WebSocketMain("WsConnect") }
