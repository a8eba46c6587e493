// Command Sweeper is the scheduled Lambda function that dispatches again the outbox jobs not done in time.
// It links the Lambda client (invoker) to do so.
package main

import (
	"github.com/mocbuilders/moc-upload/shared/app"
	"github.com/mocbuilders/moc-upload/shared/app/invoker"
)

func main() { app.AsyncMain("Sweeper", app.Parts{Invoker: invoker.New}) }
