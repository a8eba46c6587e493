// Command HttpAuthorizer is the HTTP API's Lambda REQUEST authorizer when
// the stack's AuthMode is "cookie": it verifies the JWT in the cookie
// AUTH_COOKIE_NAME (or, without it, the Authorization bearer token)
// against the issuer's JWKS (JWT_ISSUER, JWT_AUDIENCE, JWKS_URL), with the
// same verifier as WsAuthorizer; see shared/auth.
package main

import "github.com/mocbuilders/moc-upload/shared/auth"

func main() { auth.AuthorizerMain("HttpAuthorizer", auth.CookieAuthorizerFromEnv) }
