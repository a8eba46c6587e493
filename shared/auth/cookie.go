package auth

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/aws/aws-lambda-go/events"
)

// DefaultCookieName is the cookie the HTTP API's cookie authorizer reads
// the JWT from unless AUTH_COOKIE_NAME names another.
const DefaultCookieName = "access_token"

// HTTPAuthorizerHandler is the Lambda handler of the HTTP API's REQUEST
// authorizer (payload format 2.0, simple responses).
type HTTPAuthorizerHandler func(context.Context, events.APIGatewayV2CustomAuthorizerV2Request) (events.APIGatewayV2CustomAuthorizerSimpleResponse, error)

// CookieAuthorizerFromEnv is the HttpAuthorizer function's handler: a
// CookieAuthorizer for the cookie AUTH_COOKIE_NAME names (default
// DefaultCookieName).
func CookieAuthorizerFromEnv(v *Verifier) HTTPAuthorizerHandler {
	return CookieAuthorizer(v, CookieNameFromEnv())
}

// CookieNameFromEnv is the cookie AUTH_COOKIE_NAME names, default
// DefaultCookieName: the deployed cookie authorizer's, and the local
// gateway's.
func CookieNameFromEnv() string {
	if name := strings.TrimSpace(os.Getenv("AUTH_COOKIE_NAME")); name != "" {
		return name
	}
	return DefaultCookieName
}

// CookieAuthorizer verifies the JWT of an HTTP API request for clients
// that authenticate with a cookie (the old web client sends no
// Authorization header): the token is the value of the cookie named
// cookieName or, without that cookie, the bearer token of the
// Authorization header, so that the API's other clients keep working. It
// is verified by v, the same Verifier (and so the same rules) as the
// WebSocket $connect authorizer's.
//
// A valid token → isAuthorized with context {"userId": sub}, which the
// functions read as requestContext.authorizer.lambda.userId; no token or a
// bad one → ErrUnauthorized (API Gateway answers 401
// {"message":"Unauthorized"}, as its JWT authorizer does); keys that cannot
// be fetched → another error (500), since the token may well be good.
func CookieAuthorizer(v *Verifier, cookieName string) HTTPAuthorizerHandler {
	return func(ctx context.Context, req events.APIGatewayV2CustomAuthorizerV2Request) (events.APIGatewayV2CustomAuthorizerSimpleResponse, error) {
		log := slog.With("requestId", req.RequestContext.RequestID, "routeKey", req.RouteKey)
		token := cookieToken(req, cookieName)
		if token == "" {
			token = BearerToken(header(req.Headers, "authorization"))
		}
		userID, err := authorize(ctx, log, v, token, "request refused")
		if err != nil {
			return events.APIGatewayV2CustomAuthorizerSimpleResponse{}, err
		}
		return events.APIGatewayV2CustomAuthorizerSimpleResponse{
			IsAuthorized: true,
			Context:      map[string]any{ContextUserID: userID},
		}, nil
	}
}

// cookieToken is the value of the first cookie named name: from the
// event's cookies (payload 2.0 splits the Cookie header there), else from
// a Cookie header.
func cookieToken(req events.APIGatewayV2CustomAuthorizerV2Request, name string) string {
	lines := req.Cookies
	if len(lines) == 0 {
		if h := header(req.Headers, "cookie"); h != "" {
			lines = []string{h}
		}
	}
	return CookieValue(lines, name)
}

// CookieValue finds the cookie name among Cookie header lines (each
// "a=1; b=2" or one "a=1"); "" when it is not there. The local gateway
// reads the cookie the same way.
func CookieValue(lines []string, name string) string {
	for _, line := range lines {
		cookies, err := http.ParseCookie(line)
		if err != nil {
			// One malformed pair must not hide a good one: look at each.
			for part := range strings.SplitSeq(line, ";") {
				if c, err := http.ParseCookie(strings.TrimSpace(part)); err == nil {
					cookies = append(cookies, c...)
				}
			}
		}
		for _, c := range cookies {
			if c.Name == name && c.Value != "" {
				return c.Value
			}
		}
	}
	return ""
}

// BearerToken is the token of an "Authorization: Bearer <token>" value.
func BearerToken(h string) string {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// header reads a header of a payload 2.0 event, whose names API Gateway
// sends in lower case (and tests may not).
func header(h map[string]string, lower string) string {
	if v, ok := h[lower]; ok {
		return v
	}
	for k, v := range h {
		if strings.EqualFold(k, lower) {
			return v
		}
	}
	return ""
}
