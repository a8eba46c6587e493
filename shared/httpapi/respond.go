package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/awslabs/aws-lambda-go-api-proxy/core"
	"github.com/google/uuid"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// statusOf is the one table from error codes to HTTP statuses.
var statusOf = map[string]int{
	upload.CodeBadRequest:           http.StatusBadRequest,
	upload.CodeInvalidPartNumber:    http.StatusBadRequest,
	upload.CodeInvalidPartSize:      http.StatusBadRequest,
	upload.CodeChecksumMismatch:     http.StatusBadRequest,
	upload.CodeFileValidationFailed: http.StatusBadRequest,
	upload.CodeSessionNotActive:     http.StatusBadRequest,
	upload.CodeUnauthorized:         http.StatusUnauthorized,
	upload.CodeNotFound:             http.StatusNotFound,
	upload.CodeConflict:             http.StatusConflict,
	upload.CodeDuplicateFileName:    http.StatusConflict,
	upload.CodeFileAlreadyCompleted: http.StatusConflict,
	upload.CodeIncompleteUpload:     http.StatusConflict,
	upload.CodeInvalidPart:          http.StatusConflict,
	upload.CodeSessionExpired:       http.StatusGone,
	upload.CodePayloadTooLarge:      http.StatusRequestEntityTooLarge,
	upload.CodeFileTooLarge:         http.StatusRequestEntityTooLarge,
	upload.CodeUnsupportedMediaType: http.StatusUnsupportedMediaType,
	upload.CodeValidation:           http.StatusUnprocessableEntity,
	upload.CodeTooManyRequests:      http.StatusTooManyRequests,
	upload.CodeS3Unavailable:        http.StatusServiceUnavailable,
	upload.CodeDatabaseUnavailable:  http.StatusServiceUnavailable,
	upload.CodeInternal:             http.StatusInternalServerError,
}

// StatusOf returns the HTTP status of an error code.
func StatusOf(code string) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

type successBody struct {
	Success   bool   `json:"success"`
	Data      any    `json:"data"`
	Timestamp string `json:"timestamp"`
}

type errorBody struct {
	Success       bool        `json:"success"`
	Error         errorDetail `json:"error"`
	CorrelationID string      `json:"correlationId"`
	Timestamp     string      `json:"timestamp"`
}

type errorDetail struct {
	Code    string         `json:"code"`
	Type    string         `json:"type"` // repeats Code for older clients
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}

func timestamp() string { return time.Now().UTC().Format(time.RFC3339Nano) }

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// writeData sends the success envelope with one data wrapper.
func writeData(w http.ResponseWriter, status int, data any) {
	writeJSON(w, status, successBody{Success: true, Data: data, Timestamp: timestamp()})
}

// writeError sends the error envelope. A client error keeps its code and
// message; anything else is logged and shown as a bare INTERNAL_ERROR.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	e, ok := upload.AsError(err)
	if !ok {
		logger(r).ErrorContext(r.Context(), "internal error", "err", err)
		e = &upload.Error{Code: upload.CodeInternal, Message: "an internal error occurred"}
	} else if errors.Is(r.Context().Err(), context.DeadlineExceeded) {
		logger(r).WarnContext(r.Context(), "request timed out", "err", err)
	}
	status := StatusOf(e.Code)
	if status >= 500 {
		logger(r).ErrorContext(r.Context(), "request failed", "code", e.Code, "status", status)
	} else {
		logger(r).InfoContext(r.Context(), "request refused", "code", e.Code, "status", status, "message", e.Message)
	}
	if e.RetryAfterSeconds > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfterSeconds))
	}
	id := correlationID(r)
	setCorrelationHeaders(w, id)
	writeJSON(w, status, errorBody{
		Error:         errorDetail{Code: e.Code, Type: errorType(e.Code), Message: e.Message, Details: e.Details},
		CorrelationID: id,
		Timestamp:     timestamp(),
	})
}

// errorType is error.type: the code, except where the old web client keys
// on another name (its mapHttpErrorToUploadError shows the session-expired
// banner only for EXPIRED_SESSION).
func errorType(code string) string {
	if code == upload.CodeSessionExpired {
		return "EXPIRED_SESSION"
	}
	return code
}

// setCorrelationHeaders names the request on a response: X-Correlation-Id,
// repeated as X-Request-Id, the name the old web client reads.
func setCorrelationHeaders(w http.ResponseWriter, id string) {
	w.Header().Set("X-Correlation-Id", id)
	w.Header().Set("X-Request-Id", id)
}

type correlationKey struct{}

// withCorrelationID stores the request's correlation id in its context: the
// client's X-Correlation-Id, else API Gateway's request id, else a new one.
func withCorrelationID(r *http.Request) *http.Request {
	id := r.Header.Get("X-Correlation-Id")
	if id == "" || len(id) > 128 {
		id = ""
		if gw, ok := core.GetAPIGatewayV2ContextFromContext(r.Context()); ok {
			id = gw.RequestID
		}
	}
	if id == "" {
		id = uuid.NewString()
	}
	return r.WithContext(context.WithValue(r.Context(), correlationKey{}, id))
}

func correlationID(r *http.Request) string {
	id, _ := r.Context().Value(correlationKey{}).(string)
	return id
}

func logger(r *http.Request) *slog.Logger {
	l := slog.Default().With("method", r.Method, "path", r.URL.Path, "correlationId", correlationID(r))
	if id := r.PathValue("sessionId"); id != "" {
		l = l.With("sessionId", id)
	}
	return l
}
