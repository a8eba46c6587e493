// Command GetSession is the Lambda function behind GET /api/mocs/uploads/sessions/{sessionId}.
package main

import "github.com/mocbuilders/moc-upload/shared/app"

func main() { app.LambdaMain("GetSession", app.Parts{}) }
