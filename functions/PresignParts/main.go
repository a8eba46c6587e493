// Command PresignParts is the Lambda function behind POST /api/mocs/uploads/sessions/{sessionId}/files/{fileId}/parts/urls.
package main

import "github.com/mocbuilders/moc-upload/shared/app"

func main() { app.LambdaMain("PresignParts", app.Parts{}) }
