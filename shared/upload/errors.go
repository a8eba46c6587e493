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
	CodeInvalidPart          = "INVALID_PART"
	CodeS3Unavailable        = "S3_UNAVAILABLE"
	CodeDatabaseUnavailable  = "DATABASE_UNAVAILABLE"
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
	// ErrInvalidPart: the blob store refused to complete a multipart upload
	// with the parts it was given (S3's InvalidPart, InvalidPartOrder,
	// EntityTooSmall): a part changed or went missing since it was listed.
	// The error may also be a *PartsRefusedError naming the parts.
	ErrInvalidPart = errors.New("invalid part")
	// ErrDatabaseUnavailable: the database could not be reached, or could
	// not answer in time (connection lost, statement or lock timeout,
	// too many connections). Retrying later may succeed.
	ErrDatabaseUnavailable = errors.New("database unavailable")
)

// PartsRefusedError is the blob store's refusal to complete a multipart
// upload, with the parts that were refused: those the store does not hold,
// or holds with another ETag or an unusable size. It wraps ErrInvalidPart.
type PartsRefusedError struct {
	// PartNumbers are the refused parts, ascending; empty when the store
	// holds every part as given (it changed back meanwhile).
	PartNumbers []int
	Err         error // the store's error
}

func (e *PartsRefusedError) Error() string {
	return fmt.Sprintf("parts %v refused: %v", e.PartNumbers, e.Err)
}

func (e *PartsRefusedError) Unwrap() []error { return []error{ErrInvalidPart, e.Err} }

// Retry-After of the retryable 503s: long enough for a retry not to meet
// the same failure at once, short enough for a client to wait it out.
const (
	storageRetryAfterSeconds  = 1
	databaseRetryAfterSeconds = 2
)

// AsError returns err as a client error when it is one (or wraps one). A
// database that could not be reached (ErrDatabaseUnavailable) is the
// retryable 503 DATABASE_UNAVAILABLE, wherever in the domain it happened.
func AsError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	if errors.Is(err, ErrDatabaseUnavailable) {
		return databaseUnavailable(), true
	}
	return nil, false
}

func databaseUnavailable() *Error {
	return &Error{
		Code:              CodeDatabaseUnavailable,
		Message:           "the database is unavailable, try again",
		Details:           map[string]any{"retryable": true},
		RetryAfterSeconds: databaseRetryAfterSeconds,
	}
}

// ValidationError builds a 422 naming the fields that broke their rule.
func ValidationError(fieldErrors map[string]string) *Error {
	return &Error{
		Code:    CodeValidation,
		Message: "request validation failed",
		Details: map[string]any{"errors": fieldErrors},
	}
}

// storageError turns a blob-store failure into the contract's answer: 503
// when the store is unreachable, 409 INVALID_PART when it refused parts
// (never a 500: the client can mend it), and leaves any other failure
// internal.
func storageError(op string, err error) error {
	switch {
	case errors.Is(err, ErrUnavailable):
		return &Error{
			Code:              CodeS3Unavailable,
			Message:           "storage is unavailable, try again",
			Details:           map[string]any{"retryable": true},
			RetryAfterSeconds: storageRetryAfterSeconds,
		}
	case errors.Is(err, ErrInvalidPart):
		return invalidParts(err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// invalidParts is the 409 for parts S3 refused at completion. Complete
// and finalize list the parts S3 holds before completing, so a refusal
// means a part was replaced or removed meanwhile (a re-upload racing the
// complete): the client sends the named parts again, or, when none is
// named, repeats the request, which lists the parts anew.
func invalidParts(err error) *Error {
	parts := []int{}
	var refused *PartsRefusedError
	if errors.As(err, &refused) && refused.PartNumbers != nil {
		parts = refused.PartNumbers
	}
	msg := fmt.Sprintf("storage refused parts that changed while the upload was being completed: send parts %v again, then repeat this request", parts)
	if len(parts) == 0 {
		msg = "storage refused parts that changed while the upload was being completed: repeat this request"
	}
	return (&Error{Code: CodeInvalidPart, Message: msg}).WithDetails(map[string]any{"invalidParts": parts})
}
