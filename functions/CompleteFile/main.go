// Command CompleteFile is the Lambda function behind POST /api/mocs/uploads/sessions/{sessionId}/files/{fileId}/complete.
package main

import "github.com/mocbuilders/moc-upload/shared/app"

func main() { app.LambdaMain("CompleteFile", app.Parts{}) }
