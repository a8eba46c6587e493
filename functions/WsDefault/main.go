// Command WsDefault is the Lambda function behind the WebSocket API route $default.
package main

import "github.com/mocbuilders/moc-upload/shared/app"

func main() { app.WebSocketMain("WsDefault") }
