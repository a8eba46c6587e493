package httpapi_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/mocbuilders/moc-upload/shared/httpapi"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// With the stack's AuthMode cookie, the caller's identity comes from the
// Lambda authorizer (shared/auth's CookieAuthorizer) as context userId,
// requestContext.authorizer.lambda.userId, and is checked as a JWT's sub.
func TestLambdaAuthorizerUserID(t *testing.T) {
	h := httpapi.New(nil).AllRoutes()
	for _, c := range []struct {
		name    string
		context map[string]any
		status  int
		code    string
	}{
		{"userId", map[string]any{"userId": "u1"}, http.StatusBadRequest, upload.CodeBadRequest}, // past auth, to the bad path id
		{"bad userId", map[string]any{"userId": "a/b"}, http.StatusUnauthorized, upload.CodeUnauthorized},
		{"not a string", map[string]any{"userId": 7}, http.StatusUnauthorized, upload.CodeUnauthorized},
		{"no userId", map[string]any{"principalId": "u1"}, http.StatusUnauthorized, upload.CodeUnauthorized},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := "/api/mocs/uploads/sessions/123"
			ev := events.APIGatewayV2HTTPRequest{
				Version: "2.0",
				RawPath: path,
				RequestContext: events.APIGatewayV2HTTPRequestContext{
					HTTP:       events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "GET", Path: path},
					Authorizer: &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{Lambda: c.context},
				},
			}
			resp, err := httpadapter.NewV2(h).ProxyWithContext(context.Background(), ev)
			if err != nil {
				t.Fatal(err)
			}
			wantProxyError(t, resp, c.status, c.code)
		})
	}
}
