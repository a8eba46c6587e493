package upload

import (
	"errors"
	"fmt"
)

// Error codes of the API contract (../shared/API.md). httpapi maps each to
// exactly one HTTP status.
const (
	CodeBadRequest           = "BAD_REQUEST"
	CodeValidation           = "VALIDATION_ERROR"
	CodeUnauthorized         = "UNAUTHORIZED"
	CodeNotFound             = "NOT_FOUND"
	CodeConflict             = "CONFLICT"
	CodeDuplicateFileName    = "DUPLICATE_FILE_NAME"
	CodeFileAlreadyCompleted = "FILE_ALREADY_COMPLETED"
	CodeIncompleteUpload     = "INCOMPLETE_UPLOAD"
	CodeSessionExpired       = "SESSION_EXPIRED"
	CodeSessionNotActive     = "SESSION_NOT_ACTIVE"
	CodePayloadTooLarge      = "PAYLOAD_TOO_LARGE"
	CodeFileTooLarge         = "FILE_TOO_LARGE"
	CodeUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE"
	CodeTooManyRequests      = "TOO_MANY_REQUESTS"
	CodeInvalidPartNumber    = "INVALID_PART_NUMBER"
	CodeInvalidPartSize      = "INVALID_PART_SIZE"
	CodeChecksumMismatch     = "CHECKSUM_MISMATCH"
	CodeFileValidationFailed = "FILE_VALIDATION_FAILED"
	CodeS3Unavailable        = "S3_UNAVAILABLE"
	CodeInternal             = "INTERNAL_ERROR"
)

// Error is an error a client may see: a contract code, a message that is
// safe to show, and optional details. Anything that is not an *Error is an
// internal fault and is shown as INTERNAL_ERROR without its text.
type Error struct {
	Code    string
	Message string
	Details map[string]any
	// RetryAfterSeconds, when > 0, is sent as a Retry-After header.
	RetryAfterSeconds int
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf makes an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithDetails returns e with details set.
func (e *Error) WithDetails(d map[string]any) *Error {
	e.Details = d
	return e
}

// Sentinel errors the adapters wrap, so the domain can tell what happened
// without knowing the driver.
var (
	// ErrNotFound: no such row or object.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a unique constraint refused the write.
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: the blob store could not be reached after retries.
	ErrUnavailable = errors.New("storage unavailable")
	// ErrBadDigest: the blob store refused a part whose Content-MD5 did not match.
	ErrBadDigest = errors.New("bad digest")
)

// AsError returns err as a client error when it is one (or wraps one).
func AsError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// ValidationError builds a 422 naming the fields that broke their rule.
func ValidationError(fieldErrors map[string]string) *Error {
	return &Error{
		Code:    CodeValidation,
		Message: "request validation failed",
		Details: map[string]any{"errors": fieldErrors},
	}
}

// storageError turns a blob-store failure into the contract's 503 when the
// store is unreachable, and leaves any other failure internal.
func storageError(op string, err error) error {
	if errors.Is(err, ErrUnavailable) {
		return (&Error{Code: CodeS3Unavailable, Message: "storage is unavailable, try again"}).
			WithDetails(map[string]any{"retryable": true})
	}
	return fmt.Errorf("%s: %w", op, err)
}
