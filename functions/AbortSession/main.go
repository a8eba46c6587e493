// Command AbortSession is the Lambda function behind DELETE /api/mocs/uploads/sessions/{sessionId}.
package main

import "github.com/mocbuilders/moc-upload/shared/app"

func main() { app.LambdaMain("AbortSession", app.Parts{}) }
