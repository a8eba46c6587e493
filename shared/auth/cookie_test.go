package auth_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/mocbuilders/moc-upload/shared/auth"
	"github.com/mocbuilders/moc-upload/shared/auth/authtest"
)

const cookieName = "access_token"

// httpRequest is the payload 2.0 event API Gateway sends the HTTP API's
// REQUEST authorizer: the Cookie header split into cookies.
func httpRequest(cookies []string, headers map[string]string) events.APIGatewayV2CustomAuthorizerV2Request {
	return events.APIGatewayV2CustomAuthorizerV2Request{
		Version:  "2.0",
		Type:     "REQUEST",
		RouteArn: "arn:aws:execute-api:us-east-1:123456789012:h1t2t3p4/$default/POST/api/mocs/uploads/sessions",
		RouteKey: "POST /api/mocs/uploads/sessions",
		Cookies:  cookies,
		Headers:  headers,
	}
}

// The cookie authorizer against a local JWKS server: a good token in the
// cookie (among others) is let in with the user id in the context, as
// API Gateway reads it.
func TestCookieAuthorizerAllows(t *testing.T) {
	iss := authtest.NewIssuer(t)
	h := auth.CookieAuthorizer(newVerifier(t, auth.Config{Issuer: iss.URL, Audiences: []string{audience}}), cookieName)
	good := iss.Token(t, user, audience, nil)

	for name, req := range map[string]events.APIGatewayV2CustomAuthorizerV2Request{
		"cookies":              httpRequest([]string{"theme=dark", cookieName + "=" + good, "x=1"}, nil),
		"cookie header":        httpRequest(nil, map[string]string{"cookie": "theme=dark; " + cookieName + "=" + good}),
		"malformed neighbour":  httpRequest([]string{`bad cookie=ü"; ` + cookieName + "=" + good}, nil),
		"bearer, no cookie":    httpRequest([]string{"theme=dark"}, map[string]string{"authorization": "Bearer " + good}),
		"cookie before bearer": httpRequest([]string{cookieName + "=" + good}, map[string]string{"authorization": "Bearer garbage"}),
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := h(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := json.Marshal(resp)
			var got struct {
				IsAuthorized bool           `json:"isAuthorized"`
				Context      map[string]any `json:"context"`
			}
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			if !got.IsAuthorized || got.Context["userId"] != user || len(got.Context) != 1 {
				t.Errorf("response = %s, want isAuthorized and context {userId: %s}", raw, user)
			}
		})
	}
}

// Refused: API Gateway answers 401 only for an error whose message is
// exactly "Unauthorized".
func TestCookieAuthorizerRefuses(t *testing.T) {
	iss := authtest.NewIssuer(t)
	h := auth.CookieAuthorizer(newVerifier(t, auth.Config{Issuer: iss.URL, Audiences: []string{audience}}), cookieName)
	otherKey := authtest.NewKey(t, iss.Key.KID) // same kid, a key the JWKS does not have
	for name, cookies := range map[string][]string{
		"missing cookie": {"theme=dark"},
		"no cookies":     nil,
		"other name":     {"id_token=" + iss.Token(t, user, audience, nil)},
		"garbage":        {cookieName + "=garbage"},
		"expired":        {cookieName + "=" + iss.Token(t, user, audience, map[string]any{"exp": time.Now().Add(-time.Hour)})},
		"wrong audience": {cookieName + "=" + iss.Token(t, user, "other", nil)},
		"wrong key":      {cookieName + "=" + otherKey.Sign(t, iss.Claims(user, audience))},
		"wrong issuer":   {cookieName + "=" + iss.Token(t, user, audience, map[string]any{"iss": "https://evil.example"})},
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := h(t.Context(), httpRequest(cookies, nil))
			if !errors.Is(err, auth.ErrUnauthorized) || err.Error() != "Unauthorized" {
				t.Fatalf("err = %v, want exactly Unauthorized", err)
			}
			if resp.IsAuthorized || resp.Context != nil {
				t.Errorf("response = %+v, want nothing authorized", resp)
			}
		})
	}
}

// An issuer that cannot be reached is the service's fault: a 500, not a
// 401 that would log the user out.
func TestCookieAuthorizerKeysUnavailable(t *testing.T) {
	iss := authtest.NewIssuer(t)
	token := iss.Token(t, user, audience, nil)
	v := newVerifier(t, auth.Config{Issuer: iss.URL, JWKSURL: iss.URL + "/missing.json", Audiences: []string{audience}})
	_, err := auth.CookieAuthorizer(v, cookieName)(t.Context(), httpRequest([]string{cookieName + "=" + token}, nil))
	if err == nil || errors.Is(err, auth.ErrUnauthorized) {
		t.Fatalf("err = %v, want a failure other than Unauthorized", err)
	}
}

func TestCookieValue(t *testing.T) {
	for _, c := range []struct {
		lines []string
		want  string
	}{
		{[]string{"a=1; access_token=tok; b=2"}, "tok"},
		{[]string{"a=1", "access_token=tok"}, "tok"},
		{[]string{"access_token=; access_token=second"}, "second"},
		{[]string{"access_tokens=x"}, ""},
		{nil, ""},
	} {
		if got := auth.CookieValue(c.lines, "access_token"); got != c.want {
			t.Errorf("CookieValue(%q) = %q, want %q", c.lines, got, c.want)
		}
	}
}

// The HttpAuthorizer function reads the cookie AUTH_COOKIE_NAME names
// (blank: access_token), and no other.
func TestCookieAuthorizerFromEnv(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v := newVerifier(t, auth.Config{Issuer: iss.URL, Audiences: []string{audience}})
	good := iss.Token(t, user, audience, nil)
	for _, c := range []struct {
		env, cookie string
		allowed     bool
	}{
		{"session_jwt", "session_jwt", true},
		{"session_jwt", auth.DefaultCookieName, false},
		{" ", auth.DefaultCookieName, true},
		{"", auth.DefaultCookieName, true},
	} {
		t.Setenv("AUTH_COOKIE_NAME", c.env)
		resp, err := auth.CookieAuthorizerFromEnv(v)(t.Context(), httpRequest([]string{c.cookie + "=" + good}, nil))
		if c.allowed && (err != nil || !resp.IsAuthorized) {
			t.Errorf("AUTH_COOKIE_NAME=%q, cookie %s: %+v, %v; want authorized", c.env, c.cookie, resp, err)
		}
		if !c.allowed && !errors.Is(err, auth.ErrUnauthorized) {
			t.Errorf("AUTH_COOKIE_NAME=%q, cookie %s: err = %v, want Unauthorized", c.env, c.cookie, err)
		}
	}
}
