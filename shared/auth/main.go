package auth

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
)

// AuthorizerMain is all an authorizer function's main does: read the
// configuration from the environment and build the Verifier once (cold
// start), then serve invocations with the handler newHandler makes of it
// until the runtime stops the process. A bad configuration stops the cold
// start with a message naming every problem.
//
//	func main() { auth.AuthorizerMain("WsAuthorizer", auth.WebSocketAuthorizer) }
func AuthorizerMain[H any](function string, newHandler func(*Verifier) H) {
	slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stdout, nil)).With("function", function))
	if err := run(context.Background(), newHandler); err != nil {
		slog.Error("cold start failed", "err", err)
		os.Exit(1)
	}
}

func run[H any](ctx context.Context, newHandler func(*Verifier) H) error {
	cfg, err := ConfigFromEnv()
	if err != nil {
		return err
	}
	v, err := NewVerifier(ctx, cfg)
	if err != nil {
		return err
	}
	if !v.Ready() {
		slog.Warn("the JWKS could not be fetched at cold start; tokens get it again", "jwksUrl", v.JWKSURL())
	}
	lambda.Start(newHandler(v))
	return nil
}
