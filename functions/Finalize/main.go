// Command Finalize is the Lambda function behind POST /api/mocs/uploads/finalize.
package main

import "github.com/mocbuilders/moc-upload/shared/app"

func main() { app.LambdaMain("Finalize") }
