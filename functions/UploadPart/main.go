// Command UploadPart is the Lambda function behind PUT /api/mocs/uploads/sessions/{sessionId}/files/{fileId}/parts/{partNumber}.
package main

import "github.com/mocbuilders/moc-upload/shared/app"

func main() { app.LambdaMain("UploadPart", app.Parts{}) }
