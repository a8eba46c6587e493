// Package invoker gives app.Parts its Invoker: the Lambda API client
// (package invoke) that starts the async functions. It is a package of its
// own so that only the functions that dispatch (Finalize, the Sweeper) and
// the local stack link aws-sdk-go-v2's Lambda client; package app cannot
// import it without every function linking it.
package invoker

import (
	"context"

	"github.com/mocbuilders/moc-upload/shared/app"
	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/invoke"
)

// New is app.Parts.Invoker: the client for cfg's LAMBDA_ENDPOINT (AWS
// Lambda when unset), in its region and with its credentials.
func New(ctx context.Context, cfg app.Config) (followup.Invoker, error) {
	return invoke.New(ctx, invoke.Config{
		Endpoint:        cfg.LambdaEndpoint,
		Region:          cfg.S3Region,
		AccessKeyID:     cfg.S3AccessKey,
		SecretAccessKey: cfg.S3SecretKey,
		SessionToken:    cfg.AWSSessionToken,
	})
}
