package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/mocbuilders/moc-upload/shared/httpapi"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// frozenStore is a database that never answers: each transaction waits
// until its context ends, then fails as the PostgreSQL adapter does (see
// shared/postgres's tests against a real frozen server).
type frozenStore struct{}

func (frozenStore) InTx(ctx context.Context, _ func(upload.Tx) error) error {
	<-ctx.Done()
	return fmt.Errorf("postgres: begin: %w: %w", upload.ErrDatabaseUnavailable, ctx.Err())
}

// Under Lambda the request ends before the invocation does: a frozen
// dependency is answered with the retryable 503, while there is time left
// to send it, not cut off by Lambda's timeout.
func TestRequestEndsBeforeInvocationDeadline(t *testing.T) {
	svc := &upload.Service{Store: frozenStore{}, Limits: upload.DefaultLimits(), Now: time.Now}
	h := httpapi.New(svc).AllRoutes()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ev := events.APIGatewayV2HTTPRequest{
		Version: "2.0", RouteKey: "$default", RawPath: sessionPath,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RequestID: "gw-request-1",
			HTTP:      events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "GET", Path: sessionPath},
			Authorizer: &events.APIGatewayV2HTTPRequestContextAuthorizerDescription{
				JWT: &events.APIGatewayV2HTTPRequestContextAuthorizerJWTDescription{Claims: map[string]string{"sub": "u1"}},
			},
		},
	}
	done := make(chan events.APIGatewayV2HTTPResponse, 1)
	go func() {
		resp, err := httpadapter.NewV2(h).ProxyWithContext(ctx, ev)
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	select {
	case resp := <-done:
		if ctx.Err() != nil {
			t.Errorf("answered after the invocation's deadline: %v", ctx.Err())
		}
		env := wantProxyError(t, resp, http.StatusServiceUnavailable, upload.CodeDatabaseUnavailable)
		if env.Error.Details["retryable"] != true || resp.Headers["Retry-After"] == "" {
			t.Errorf("details %v, Retry-After %q: want retryable with Retry-After", env.Error.Details, resp.Headers["Retry-After"])
		}
	case <-time.After(time.Minute):
		t.Fatal("the request still waits on a frozen database after a minute")
	}
}
