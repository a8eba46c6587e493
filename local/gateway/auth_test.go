package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/mocbuilders/moc-upload/shared/httpapi"
)

// whoAmI answers as the functions do: 401 in the contract's error shape
// without an identity, else 200 with the sub it was given.
func whoAmI(_ context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	a := ev.RequestContext.Authorizer
	if a == nil || a.JWT == nil || a.JWT.Claims["sub"] == "" {
		return events.APIGatewayV2HTTPResponse{
			StatusCode: http.StatusUnauthorized,
			Headers:    map[string]string{"Content-Type": "application/json"},
			Body:       `{"success":false,"error":{"code":"UNAUTHORIZED","type":"UNAUTHORIZED","message":"authentication required"},"correlationId":"c","timestamp":"t"}`,
		}, nil
	}
	return events.APIGatewayV2HTTPResponse{StatusCode: http.StatusOK, Body: a.JWT.Claims["sub"]}, nil
}

func authGateway(t *testing.T) *httptest.Server {
	handlers := map[string]Handler{}
	for _, rt := range httpapi.Routes {
		handlers[rt.Function] = whoAmI
	}
	gw, err := New(handlers, Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	return srv
}

// Both of the stack's auth modes work locally: the bearer header (the JWT
// authorizer's) and the cookie (the cookie authorizer's), the header first.
func TestGatewayAcceptsBearerAndCookie(t *testing.T) {
	t.Setenv("AUTH_COOKIE_NAME", "")
	srv := authGateway(t)
	for name, c := range map[string]struct {
		header, cookie, want string
	}{
		"bearer":            {header: "Bearer alice", want: "alice"},
		"cookie":            {cookie: "theme=dark; access_token=bob", want: "bob"},
		"bearer wins":       {header: "Bearer alice", cookie: "access_token=bob", want: "alice"},
		"basic, cookie":     {header: "Basic YTpi", cookie: "access_token=bob", want: "bob"},
		"empty bearer only": {header: "Bearer ", want: ""},
	} {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+sessionPath, strings.NewReader(`{}`))
			if c.header != "" {
				req.Header.Set("Authorization", c.header)
			}
			if c.cookie != "" {
				req.Header.Set("Cookie", c.cookie)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body strings.Builder
			_, _ = io.Copy(&body, resp.Body)
			if c.want == "" {
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("status %d, want 401", resp.StatusCode)
				}
				return
			}
			if resp.StatusCode != http.StatusOK || body.String() != c.want {
				t.Errorf("status %d body %q, want 200 %q", resp.StatusCode, body.String(), c.want)
			}
		})
	}
}

// A request without any identity gets the function's 401, in the
// contract's shape, saying what the local gateway accepts.
func TestGatewayUnauthorizedSaysWhatWorks(t *testing.T) {
	t.Setenv("AUTH_COOKIE_NAME", "session_jwt")
	srv := authGateway(t)
	resp, err := http.Post(srv.URL+sessionPath, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Success bool
		Error   struct{ Code, Message string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized || body.Success || body.Error.Code != "UNAUTHORIZED" {
		t.Fatalf("status %d body %+v, want the function's 401", resp.StatusCode, body)
	}
	for _, want := range []string{"authentication required", "Authorization: Bearer <userId>", "session_jwt=<userId>"} {
		if !strings.Contains(body.Error.Message, want) {
			t.Errorf("message %q does not say %q", body.Error.Message, want)
		}
	}
	if h := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer ") || !strings.Contains(h, "session_jwt=<userId>") {
		t.Errorf("WWW-Authenticate = %q", h)
	}
}
