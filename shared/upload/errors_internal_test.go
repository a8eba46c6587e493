package upload

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// S3's refusal of parts at completion is a 409 naming the parts, never
// an internal error.
func TestStorageErrorInvalidPart(t *testing.T) {
	s3err := errors.New("api error InvalidPart: One or more of the specified parts could not be found")
	for _, tt := range []struct {
		name string
		err  error
		want []int
	}{
		{"named parts", fmt.Errorf("s3: complete: %w", &PartsRefusedError{PartNumbers: []int{2, 3}, Err: s3err}), []int{2, 3}},
		{"no part named", fmt.Errorf("s3: complete: %w", &PartsRefusedError{PartNumbers: []int{}, Err: s3err}), []int{}},
		{"bare sentinel", fmt.Errorf("s3: complete: %w", ErrInvalidPart), []int{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := AsError(storageError("complete multipart upload", tt.err))
			if !ok || e.Code != CodeInvalidPart {
				t.Fatalf("storageError = %v, want INVALID_PART", e)
			}
			if got, _ := e.Details["invalidParts"].([]int); !slices.Equal(got, tt.want) || got == nil {
				t.Errorf("invalidParts = %v, want %v", e.Details["invalidParts"], tt.want)
			}
		})
	}
}

// Unreachable storage and an unreachable database are retryable 503s with
// Retry-After; other failures stay internal.
func TestRetryableUnavailability(t *testing.T) {
	e, ok := AsError(storageError("head", fmt.Errorf("s3: head k: %w", ErrUnavailable)))
	if !ok || e.Code != CodeS3Unavailable || e.RetryAfterSeconds <= 0 || e.Details["retryable"] != true {
		t.Errorf("storage: %+v", e)
	}
	e, ok = AsError(fmt.Errorf("postgres: begin: %w: %w", ErrDatabaseUnavailable, errors.New("connection refused")))
	if !ok || e.Code != CodeDatabaseUnavailable || e.RetryAfterSeconds <= 0 || e.Details["retryable"] != true {
		t.Errorf("database: %+v", e)
	}
	if _, ok := AsError(storageError("head", errors.New("access denied"))); ok {
		t.Error("another storage failure became a client error")
	}
	// A client error in the chain wins over the database's unavailability.
	both := errors.Join(Errorf(CodeNotFound, "upload session not found"), ErrDatabaseUnavailable)
	if e, _ := AsError(both); e.Code != CodeNotFound {
		t.Errorf("AsError(both) = %v, want the client error", e)
	}
}
