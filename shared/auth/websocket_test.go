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

const methodArn = "arn:aws:execute-api:us-east-1:123456789012:w1s2o3c4k5/dev/$connect"

func connectRequest(token string) events.APIGatewayCustomAuthorizerRequestTypeRequest {
	req := events.APIGatewayCustomAuthorizerRequestTypeRequest{
		Type:      "REQUEST",
		MethodArn: methodArn,
		QueryStringParameters: map[string]string{
			"sessionId": "5eed0000-0000-4000-8000-000000000001",
		},
	}
	if token != "" {
		req.QueryStringParameters["token"] = token
	}
	return req
}

func TestWebSocketAuthorizerAllows(t *testing.T) {
	iss := authtest.NewIssuer(t)
	h := auth.WebSocketAuthorizer(newVerifier(t, auth.Config{Issuer: iss.URL, Audiences: []string{audience}}))

	resp, err := h(t.Context(), connectRequest(iss.Token(t, user, audience, nil)))
	if err != nil {
		t.Fatal(err)
	}
	// What API Gateway reads, as it reads it: the JSON.
	raw, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		PrincipalID    string `json:"principalId"`
		PolicyDocument struct {
			Version   string
			Statement []struct {
				Action   []string
				Effect   string
				Resource []string
			}
		} `json:"policyDocument"`
		Context map[string]any `json:"context"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.PrincipalID != user {
		t.Errorf("principalId = %q, want %q", got.PrincipalID, user)
	}
	if got.Context["userId"] != user || len(got.Context) != 1 {
		t.Errorf("context = %v, want {userId: %s}", got.Context, user)
	}
	st := got.PolicyDocument.Statement
	if got.PolicyDocument.Version != "2012-10-17" || len(st) != 1 || st[0].Effect != "Allow" ||
		len(st[0].Action) != 1 || st[0].Action[0] != "execute-api:Invoke" ||
		len(st[0].Resource) != 1 || st[0].Resource[0] != methodArn {
		t.Errorf("policyDocument = %s, want Allow execute-api:Invoke on %s only", raw, methodArn)
	}
}

func TestWebSocketAuthorizerRefuses(t *testing.T) {
	iss := authtest.NewIssuer(t)
	h := auth.WebSocketAuthorizer(newVerifier(t, auth.Config{Issuer: iss.URL, Audiences: []string{audience}}))
	for name, token := range map[string]string{
		"missing":        "",
		"garbage":        "garbage",
		"expired":        iss.Token(t, user, audience, map[string]any{"exp": time.Now().Add(-time.Hour)}),
		"wrong audience": iss.Token(t, user, "other", nil),
		"wrong issuer":   iss.Token(t, user, audience, map[string]any{"iss": "https://evil.example"}),
		"another key":    authtest.NewKey(t, iss.Key.KID).Sign(t, iss.Claims(user, audience)),
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := h(t.Context(), connectRequest(token))
			// API Gateway answers 401 only for exactly this message.
			if err == nil || err.Error() != "Unauthorized" || !errors.Is(err, auth.ErrUnauthorized) {
				t.Fatalf("error = %v, want Unauthorized", err)
			}
			if resp.PrincipalID != "" || len(resp.PolicyDocument.Statement) != 0 {
				t.Errorf("a refusal with a policy: %+v", resp)
			}
		})
	}
}

// Keys that cannot be fetched are not the client's fault: not a 401.
func TestWebSocketAuthorizerWithoutKeys(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v := newVerifier(t, auth.Config{Issuer: iss.URL, JWKSURL: iss.URL + "/missing", Audiences: []string{audience}})
	_, err := auth.WebSocketAuthorizer(v)(t.Context(), connectRequest(iss.Token(t, user, audience, nil)))
	if err == nil || err.Error() == "Unauthorized" {
		t.Fatalf("error = %v, want a failure other than Unauthorized", err)
	}
}
