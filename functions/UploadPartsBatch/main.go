// Command UploadPartsBatch is the Lambda function behind POST /api/mocs/uploads/sessions/{sessionId}/files/{fileId}/parts/batch.
package main

import "github.com/mocbuilders/moc-upload/shared/app"

func main() { app.LambdaMain("UploadPartsBatch", app.Parts{}) }
