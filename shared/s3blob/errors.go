package s3blob

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// wrap adds context to an SDK error and, when it means something to the
// domain, the matching upload sentinel. The SDK error stays in the chain.
func wrap(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if s := sentinel(err); s != nil {
		return fmt.Errorf("%s: %w: %w", msg, s, err)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// sentinel maps an SDK (or transport) error to upload.ErrNotFound,
// upload.ErrBadDigest or upload.ErrUnavailable; nil when none applies.
func sentinel(err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return nil // the caller gave up; nothing to say about the store
	}
	switch apiCode(err) {
	case "NoSuchKey", "NotFound", "NoSuchUpload":
		return upload.ErrNotFound
	case "BadDigest", "InvalidDigest":
		return upload.ErrBadDigest
	}
	if unavailable(err) {
		return upload.ErrUnavailable
	}
	return nil
}

// unavailable reports whether err means the store could not be reached or
// could not serve the request: retries exhausted, a network failure, a 5xx
// or throttling answer, or a deadline that ran out while waiting for it.
func unavailable(err error) bool {
	var maxAttempts *retry.MaxAttemptsError
	var quota ratelimit.QuotaExceededError
	var send *smithyhttp.RequestSendError
	var netErr net.Error
	var resp *smithyhttp.ResponseError
	switch {
	case errors.As(err, &maxAttempts),
		errors.As(err, &quota),
		errors.Is(err, errNotRewindable),
		errors.As(err, &send),
		errors.As(err, &netErr),
		errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.As(err, &resp) && (resp.HTTPStatusCode() >= 500 || resp.HTTPStatusCode() == 429):
		return true
	}
	return retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary
}

// apiCode is the S3 error code of err ("NoSuchKey", …), or "".
func apiCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}
