// Package auth verifies the service's bearer tokens, JWTs from the identity
// provider, and holds the Lambda authorizers that use them. The WebSocket
// API needs it: JWT authorizers exist only for HTTP APIs, so its $connect
// route has a Lambda REQUEST authorizer (WebSocketAuthorizer,
// functions/WsAuthorizer) that verifies the token the browser passes in the
// query string. The HTTP API needs it only with the stack's AuthMode
// cookie: API Gateway's JWT authorizer reads the Authorization header
// alone, and the web client sends its token in a cookie, so a Lambda
// REQUEST authorizer (CookieAuthorizer, functions/HttpAuthorizer) reads
// the cookie (or else the header) and verifies the token with the same
// Verifier, so that both APIs accept exactly the same tokens.
//
// One Verifier per process, built at cold start from the environment by
// AuthorizerMain, serves every authorizer of this package: the JWKS is
// fetched and cached once, then refreshed in the background.
//
// # Configuration
//
//   - JWT_ISSUER (required): the issuer the tokens must name in `iss`,
//     exactly; for Cognito https://cognito-idp.<region>.amazonaws.com/<poolId>.
//     An https URL (http only for a loopback host, as in tests).
//   - JWT_AUDIENCE (required): the accepted audiences, comma-separated
//     (Cognito: the app client ids). A token is accepted when its `aud` has
//     one of them, or, without `aud`, when its `client_id` is one of them
//     (Cognito access tokens), as API Gateway's JWT authorizer does.
//   - JWKS_URL (optional): where the issuer's public keys are; default
//     <JWT_ISSUER>/.well-known/jwks.json (Cognito's, Auth0's and most OIDC
//     providers' location).
//   - AUTH_COOKIE_NAME (HttpAuthorizer only; default DefaultCookieName): the
//     cookie holding the token.
//
// The same token that the HTTP API's JWT authorizer accepts is accepted
// here: the signature by a key of the JWKS that the token's `kid` names,
// `iss`, the audience, `exp` (required), `nbf` and `iat`, with a leeway of
// DefaultLeeway for clock skew, and a non-empty `sub`, which is the user id.
//
// # Considerations
//
// The JWKS is fetched at cold start (best effort, bounded by
// prefetchTimeout), then refreshed by github.com/lestrrat-go/jwx's cache in
// the background (honouring Cache-Control, between 15 minutes and
// maxRefreshInterval). A token whose `kid` is not in the cached set forces
// a refresh (the issuer rotated its keys), at most once per forceBackoff,
// so that made-up key ids cannot make every invocation fetch the JWKS.
//
// A token that fails verification is the client's fault (ErrInvalidToken:
// the authorizers answer 401). A JWKS that cannot be fetched is the
// service's (ErrKeysUnavailable: the authorizers fail, API Gateway answers
// 500, and nothing is cached as refused).
//
// No IAM actions are needed: the JWKS is public.
package auth

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// DefaultLeeway is the clock skew allowed on `exp`, `nbf` and `iat`.
const DefaultLeeway = 30 * time.Second

// Config is what a Verifier needs; ConfigFromEnv reads it from the
// environment.
type Config struct {
	Issuer    string   // JWT_ISSUER: the exact `iss` of accepted tokens
	Audiences []string // JWT_AUDIENCE: a token must have one of them (aud, else client_id)
	JWKSURL   string   // JWKS_URL; empty → Issuer + "/.well-known/jwks.json"

	// Leeway is the clock skew allowed on exp, nbf and iat; zero →
	// DefaultLeeway.
	Leeway time.Duration
	// HTTPClient fetches the JWKS; nil → jwx's default client (a timeout,
	// no https → http redirects).
	HTTPClient *http.Client
	// Now is the clock; nil → time.Now. For tests.
	Now func() time.Time
}

// ConfigFromEnv reads JWT_ISSUER, JWT_AUDIENCE and JWKS_URL; the error names
// every variable that is missing or malformed.
func ConfigFromEnv() (Config, error) { return ConfigFrom(os.Getenv) }

// ConfigFrom reads the configuration through getenv.
func ConfigFrom(getenv func(string) string) (Config, error) {
	var problems []string
	c := Config{
		Issuer:  strings.TrimSpace(getenv("JWT_ISSUER")),
		JWKSURL: strings.TrimSpace(getenv("JWKS_URL")),
	}
	if c.Issuer == "" {
		problems = append(problems, "JWT_ISSUER is required (the identity provider's issuer URL)")
	} else if err := checkURL(c.Issuer); err != nil {
		problems = append(problems, fmt.Sprintf("JWT_ISSUER %q: %v", c.Issuer, err))
	}
	for a := range strings.SplitSeq(getenv("JWT_AUDIENCE"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.Audiences = append(c.Audiences, a)
		}
	}
	if len(c.Audiences) == 0 {
		problems = append(problems, "JWT_AUDIENCE is required (the accepted audiences, comma-separated)")
	}
	if c.JWKSURL != "" {
		if err := checkURL(c.JWKSURL); err != nil {
			problems = append(problems, fmt.Sprintf("JWKS_URL %q: %v", c.JWKSURL, err))
		}
	}
	if len(problems) > 0 {
		return c, errors.New("configuration: " + strings.Join(problems, "; "))
	}
	return c, nil
}

// Validate checks a Config built in code as ConfigFrom checks the
// environment's.
func (c Config) Validate() error {
	var problems []string
	if err := checkURL(c.Issuer); err != nil {
		problems = append(problems, fmt.Sprintf("issuer %q: %v", c.Issuer, err))
	}
	if len(c.Audiences) == 0 {
		problems = append(problems, "no audience")
	}
	for _, a := range c.Audiences {
		if strings.TrimSpace(a) == "" {
			problems = append(problems, "an empty audience")
		}
	}
	if c.JWKSURL != "" {
		if err := checkURL(c.JWKSURL); err != nil {
			problems = append(problems, fmt.Sprintf("JWKS URL %q: %v", c.JWKSURL, err))
		}
	}
	if c.Leeway < 0 {
		problems = append(problems, "negative leeway")
	}
	if len(problems) > 0 {
		return errors.New("auth: " + strings.Join(problems, "; "))
	}
	return nil
}

// jwksURL is where the issuer's keys are.
func (c Config) jwksURL() string {
	if c.JWKSURL != "" {
		return c.JWKSURL
	}
	return strings.TrimSuffix(c.Issuer, "/") + "/.well-known/jwks.json"
}

// checkURL accepts an absolute https URL, or http to a loopback host (a
// local issuer in tests), without query or fragment.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return errors.New("want an absolute https URL")
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return errors.New("want https (http only for localhost)")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return errors.New("want no user, query or fragment")
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
