// Command WsAuthorizer is the Lambda REQUEST authorizer of the WebSocket
// API's $connect route: it verifies the JWT in the `token` query parameter
// (JWT_ISSUER, JWT_AUDIENCE, JWKS_URL; see shared/auth).
package main

import "github.com/mocbuilders/moc-upload/shared/auth"

func main() { auth.AuthorizerMain("WsAuthorizer", auth.WebSocketAuthorizer) }
