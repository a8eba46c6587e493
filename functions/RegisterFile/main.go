// Command RegisterFile is the Lambda function behind POST /api/mocs/uploads/sessions/{sessionId}/files.
package main

import "github.com/mocbuilders/moc-upload/shared/app"

func main() { app.LambdaMain("RegisterFile", app.Parts{}) }
