// Command PresignPart is the Lambda function behind GET /api/mocs/uploads/sessions/{sessionId}/files/{fileId}/parts/{partNumber}/url.
package main

import "github.com/mocbuilders/moc-upload/shared/app"

func main() { app.LambdaMain("PresignPart", app.Parts{}) }
