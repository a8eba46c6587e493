// Command Webhook is the async Lambda function that sends a finalized MOC's moc.finalized webhook (an outbox job).
package main

import "github.com/mocbuilders/moc-upload/shared/app"

func main() { app.AsyncMain("Webhook", app.Parts{}) }
