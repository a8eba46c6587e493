// Command Finalize is the Lambda function behind POST /api/mocs/uploads/finalize.
// It starts the finalized MOC's follow-up work (Thumbnail, Webhook), so it
// links the Lambda client (invoker).
package main

import (
	"github.com/mocbuilders/moc-upload/shared/app"
	"github.com/mocbuilders/moc-upload/shared/app/invoker"
)

func main() { app.LambdaMain("Finalize", app.Parts{Invoker: invoker.New}) }
