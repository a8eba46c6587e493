package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/mocbuilders/moc-upload/shared/httpapi"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// TestStatusOf is the contract's table of codes and statuses (API.md,
// Conventions), one row per code constant of upload/errors.go.
func TestStatusOf(t *testing.T) {
	tests := []struct {
		code string
		want int
	}{
		{upload.CodeBadRequest, http.StatusBadRequest},
		{upload.CodeValidation, http.StatusUnprocessableEntity},
		{upload.CodeUnauthorized, http.StatusUnauthorized},
		{upload.CodeNotFound, http.StatusNotFound},
		{upload.CodeConflict, http.StatusConflict},
		{upload.CodeDuplicateFileName, http.StatusConflict},
		{upload.CodeFileAlreadyCompleted, http.StatusConflict},
		{upload.CodeIncompleteUpload, http.StatusConflict},
		{upload.CodeSessionExpired, http.StatusGone},
		{upload.CodeSessionNotActive, http.StatusBadRequest},
		{upload.CodePayloadTooLarge, http.StatusRequestEntityTooLarge},
		{upload.CodeFileTooLarge, http.StatusRequestEntityTooLarge},
		{upload.CodeUnsupportedMediaType, http.StatusUnsupportedMediaType},
		{upload.CodeTooManyRequests, http.StatusTooManyRequests},
		{upload.CodeInvalidPartNumber, http.StatusBadRequest},
		{upload.CodeInvalidPartSize, http.StatusBadRequest},
		{upload.CodeChecksumMismatch, http.StatusBadRequest},
		{upload.CodeFileValidationFailed, http.StatusBadRequest},
		{upload.CodeS3Unavailable, http.StatusServiceUnavailable},
		{upload.CodeInternal, http.StatusInternalServerError},

		// Anything unknown is a fault, not a client error.
		{"", http.StatusInternalServerError},
		{"NO_SUCH_CODE", http.StatusInternalServerError},
		{"bad_request", http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			if got := httpapi.StatusOf(tt.code); got != tt.want {
				t.Errorf("StatusOf(%q) = %d, want %d", tt.code, got, tt.want)
			}
		})
	}
}
