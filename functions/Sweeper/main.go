// Command Sweeper is the scheduled Lambda function that dispatches again the outbox jobs not done in time.
package main

import "github.com/mocbuilders/moc-upload/shared/app"

func main() { app.AsyncMain("Sweeper") }
