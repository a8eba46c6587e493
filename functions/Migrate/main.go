// Command Migrate applies the database's migrations (embedded in
// shared/postgres) when CloudFormation asks: it is the handler of the
// stack's SchemaMigration custom resource (template.yaml), which
// CloudFormation creates on the first deploy and updates on every deploy
// that changes this function's code, and so its embedded migrations. It
// runs in the VPC, next to the database, reading the credentials from
// Secrets Manager like the other functions (shared/secrets).
//
// Create and Update migrate up and answer SUCCESS with the schema's
// version; a migration that fails answers FAILED with the reason, and the
// deploy fails and rolls back (the migration's own transaction has rolled
// back its changes). Delete does nothing: removing the stack leaves the
// data alone. The answer goes to the request's pre-signed ResponseURL
// (aws-lambda-go's cfn.LambdaWrap), always before the function's own
// timeout, so that CloudFormation never waits for an answer that will not
// come. `make migrate` applies the same migrations from a workstation.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/mocbuilders/moc-upload/shared/postgres"
	"github.com/mocbuilders/moc-upload/shared/secrets"
)

// physicalID names the one schema the resource stands for. It never
// changes, so an update is never a replacement (which would make
// CloudFormation delete the "old" resource).
const physicalID = "moc-upload-schema"

// answerMargin is kept of the function's time to send FAILED when the
// migration runs too long.
const answerMargin = 10 * time.Second

// maxReason bounds the reason sent back: CloudFormation takes a response
// of at most 4 KB.
const maxReason = 1000

func main() {
	slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stdout, nil)).With("function", "Migrate"))
	lambda.Start(cfn.LambdaWrap(handler(databaseURLFromEnv)))
}

// databaseURLFromEnv is DATABASE_URL, read (from the secret that
// DATABASE_SECRET_ARN names, when deployed) at the first request rather
// than at cold start: a secret that cannot be read must become a FAILED
// answer, not a function that never starts and never answers.
func databaseURLFromEnv(ctx context.Context) (string, error) {
	if err := secrets.Load(ctx); err != nil {
		return "", err
	}
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u, nil
	}
	return "", errors.New("neither DATABASE_URL nor DATABASE_SECRET_ARN is set")
}

// handler is the custom resource's function for cfn.LambdaWrap.
func handler(databaseURL func(context.Context) (string, error)) cfn.CustomResourceFunction {
	return func(ctx context.Context, ev cfn.Event) (string, map[string]any, error) {
		log := slog.With("requestType", ev.RequestType, "requestId", ev.RequestID)
		if ev.RequestType == cfn.RequestDelete {
			log.InfoContext(ctx, "stack resource deleted; the schema and its data stay")
			return physicalID, nil, nil
		}
		if deadline, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline.Add(-answerMargin))
			defer cancel()
		}
		dbURL, err := databaseURL(ctx)
		if err != nil {
			return physicalID, nil, failure(log, ctx, "database credentials", err)
		}
		start := time.Now()
		if err := postgres.Migrate(ctx, dbURL); err != nil {
			return physicalID, nil, failure(log, ctx, "migration", err)
		}
		version, err := postgres.SchemaVersion(ctx, dbURL)
		if err != nil {
			return physicalID, nil, failure(log, ctx, "reading the schema version", err)
		}
		log.InfoContext(ctx, "schema up to date", "version", version, "ms", time.Since(start).Milliseconds())
		return physicalID, map[string]any{"SchemaVersion": version}, nil
	}
}

// failure is the error CloudFormation shows as the resource's reason.
func failure(log *slog.Logger, ctx context.Context, what string, err error) error {
	log.ErrorContext(ctx, what+" failed", "err", err)
	msg := fmt.Sprintf("%s failed: %v", what, err)
	if len(msg) > maxReason {
		msg = msg[:maxReason] + "…"
	}
	return errors.New(msg + " (see the Migrate function's log)")
}
