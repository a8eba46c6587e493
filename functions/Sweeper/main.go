// Command Sweeper is the scheduled Lambda function that dispatches again the outbox jobs not done in time
// (it links the Lambda client, invoker, to do so) and deletes the WebSocket connections past their expiry.
package main

import (
	"github.com/mocbuilders/moc-upload/shared/app"
	"github.com/mocbuilders/moc-upload/shared/app/invoker"
)

func main() { app.AsyncMain("Sweeper", app.Parts{Invoker: invoker.New}) }
