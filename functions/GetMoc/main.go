// Command GetMoc is the Lambda function behind GET /api/mocs/{mocId}.
package main

import "github.com/mocbuilders/moc-upload/shared/app"

func main() { app.LambdaMain("GetMoc", app.Parts{}) }
