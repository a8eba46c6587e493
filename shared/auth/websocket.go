package auth

import (
	"context"
	"errors"
	"log/slog"

	"github.com/aws/aws-lambda-go/events"
)

// ErrUnauthorized is what an authorizer returns to refuse a request: API
// Gateway answers 401 when a Lambda authorizer fails with exactly the
// message "Unauthorized" (any other error is a 500).
var ErrUnauthorized = errors.New("Unauthorized") // exactly this text

// authorize verifies token for an authorizer and returns its user id, or
// the error the authorizer returns: ErrUnauthorized for a bad token (401;
// the reason is logged as refused, never the token), another error for
// keys that cannot be fetched (500: the token may well be good).
func authorize(ctx context.Context, log *slog.Logger, v *Verifier, token, refused string) (string, error) {
	userID, err := v.Verify(ctx, token)
	switch {
	case errors.Is(err, ErrInvalidToken):
		log.InfoContext(ctx, refused, "reason", err.Error())
		return "", ErrUnauthorized
	case err != nil:
		log.ErrorContext(ctx, "cannot verify tokens", "err", err)
		return "", errors.New("auth: cannot verify tokens now")
	}
	return userID, nil
}

// TokenQueryParameter is the query parameter that carries the token on
// $connect (browsers cannot set headers on a WebSocket); template.yaml's
// authorizer has route.request.querystring.token as its identity source.
const TokenQueryParameter = "token"

// ContextUserID is the authorizer context key of the user id; the
// WebSocket functions read requestContext.authorizer.userId.
const ContextUserID = "userId"

// WebSocketAuthorizerHandler is the Lambda handler of the WebSocket API's
// $connect REQUEST authorizer.
type WebSocketAuthorizerHandler func(context.Context, events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error)

// WebSocketAuthorizer verifies the `token` query parameter of a $connect
// request. A valid token → an Allow policy for the request's method ARN,
// principalId the token's sub and context {"userId": sub}; no token or a
// bad one → ErrUnauthorized (401, the upgrade fails); keys that cannot be
// fetched → another error (500), since the token may well be good.
//
// API Gateway does not cache WebSocket authorizer results: every $connect
// is verified.
func WebSocketAuthorizer(v *Verifier) WebSocketAuthorizerHandler {
	return func(ctx context.Context, req events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
		log := slog.With("requestId", req.RequestContext.RequestID)
		userID, err := authorize(ctx, log, v, req.QueryStringParameters[TokenQueryParameter], "connection refused")
		if err != nil {
			return events.APIGatewayCustomAuthorizerResponse{}, err
		}
		log.InfoContext(ctx, "connection allowed", "userId", userID)
		return AllowPolicy(userID, req.MethodArn), nil
	}
}

// AllowPolicy is an authorizer's answer that lets userID invoke methodArn
// (and nothing else), with the user id in the context.
func AllowPolicy(userID, methodArn string) events.APIGatewayCustomAuthorizerResponse {
	return events.APIGatewayCustomAuthorizerResponse{
		PrincipalID: userID,
		PolicyDocument: events.APIGatewayCustomAuthorizerPolicy{
			Version: "2012-10-17",
			Statement: []events.IAMPolicyStatement{{
				Action:   []string{"execute-api:Invoke"},
				Effect:   "Allow",
				Resource: []string{methodArn},
			}},
		},
		Context: map[string]any{ContextUserID: userID},
	}
}
