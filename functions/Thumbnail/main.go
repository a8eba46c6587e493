// Command Thumbnail is the async Lambda function that makes a finalized MOC's thumbnail (an outbox job).
package main

import "github.com/mocbuilders/moc-upload/shared/app"

func main() { app.AsyncMain("Thumbnail") }
