// Command CreateSession is the Lambda function behind POST /api/mocs/uploads/sessions.
package main

import "github.com/mocbuilders/moc-upload/shared/app"

func main() { app.LambdaMain("CreateSession", app.Parts{}) }
