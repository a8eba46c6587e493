package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/awslabs/aws-lambda-go-api-proxy/core"
	"github.com/google/uuid"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// userID is the caller's identity: the sub claim the HTTP API's JWT
// authorizer (or the local gateway, playing it) put in the request context.
// It becomes a segment of the user's object keys, so a sub that could
// change a key's shape (upload.CheckUserID) is refused, saying why.
func userID(r *http.Request) (string, error) {
	gw, ok := core.GetAPIGatewayV2ContextFromContext(r.Context())
	if !ok || gw.Authorizer == nil || (gw.Authorizer.JWT == nil && gw.Authorizer.Lambda == nil) {
		return "", upload.Errorf(upload.CodeUnauthorized, "authentication required")
	}
	var sub string
	if gw.Authorizer.JWT != nil {
		sub = gw.Authorizer.JWT.Claims["sub"]
	} else {
		// The stack's cookie authorizer (AuthMode cookie, shared/auth's
		// CookieAuthorizer) passes the verified sub as context userId.
		sub, _ = gw.Authorizer.Lambda["userId"].(string)
	}
	if sub == "" {
		return "", upload.Errorf(upload.CodeUnauthorized, "authentication required: the token has no subject (sub)")
	}
	if msg := upload.CheckUserID(sub); msg != "" {
		return "", upload.Errorf(upload.CodeUnauthorized, "the token's subject (sub) cannot be used as a user id: it %s", msg)
	}
	return sub, nil
}

// pathID reads a path parameter that must be a UUID (400 otherwise).
func pathID(r *http.Request, name string) (string, error) {
	v := r.PathValue(name)
	if !validUUID(v) {
		return "", (&upload.Error{Code: upload.CodeBadRequest, Message: name + " must be a UUID"}).
			WithDetails(map[string]any{"parameter": name})
	}
	return strings.ToLower(v), nil
}

// sessionRequest reads the caller and the session id of a session route.
func sessionRequest(r *http.Request) (user, sessionID string, err error) {
	if user, err = userID(r); err != nil {
		return "", "", err
	}
	sessionID, err = pathID(r, "sessionId")
	return user, sessionID, err
}

// fileRequest reads the caller, session id and file id of a file route.
func fileRequest(r *http.Request) (user, sessionID, fileID string, err error) {
	if user, sessionID, err = sessionRequest(r); err != nil {
		return "", "", "", err
	}
	fileID, err = pathID(r, "fileId")
	return user, sessionID, fileID, err
}

// partNumber reads the partNumber path parameter: 1..10000, no sign, no
// leading zeros.
func partNumber(r *http.Request) (int, error) {
	raw := r.PathValue("partNumber")
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > upload.MaxParts || strconv.Itoa(n) != raw {
		return 0, (&upload.Error{Code: upload.CodeInvalidPartNumber, Message: "partNumber must be a whole number from 1 to 10000"}).
			WithDetails(map[string]any{"partNumber": raw})
	}
	return n, nil
}

func validUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

// decodeJSON reads a JSON object body into v. An empty body is an error
// unless optional is set, in which case it reports false.
func (a *API) decodeJSON(w http.ResponseWriter, r *http.Request, v any, optional bool) (bool, error) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.MaxJSONBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return false, upload.Errorf(upload.CodePayloadTooLarge, "request body is larger than %d bytes", a.MaxJSONBytes)
	}
	if err != nil {
		return false, upload.Errorf(upload.CodeBadRequest, "request body could not be read")
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		if optional {
			return false, nil
		}
		return false, upload.Errorf(upload.CodeBadRequest, "request body is required")
	}
	if raw[0] != '{' {
		return false, upload.Errorf(upload.CodeBadRequest, "request body must be a JSON object")
	}
	if !utf8.Valid(raw) && json.Valid(raw) {
		// encoding/json would quietly turn the bad bytes into U+FFFD.
		field, inName := invalidUTF8At(raw)
		msg := "must be valid UTF-8"
		if inName {
			msg = "has a member name that is not valid UTF-8"
		}
		return false, upload.ValidationError(map[string]string{field: msg})
	}
	if err := json.Unmarshal(raw, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			field := pathAt(raw, typeErr.Offset)
			if field == "" {
				field = typeErr.Field
			}
			return false, upload.ValidationError(map[string]string{field: "must be " + jsonKind(typeErr.Type.Kind())})
		}
		return false, upload.Errorf(upload.CodeBadRequest, "request body is not a valid JSON object")
	}
	return true, nil
}

// jsonKind says in plain words what JSON a Go kind takes.
func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "another JSON type"
}

// Every request gets a deadline, so that no wait (a frozen S3 or
// PostgreSQL, a lock held elsewhere, a pool with no free connection) can
// outlast it and the client still gets an answer (a retryable 503) instead
// of API Gateway's timeout. Under Lambda the context carries the
// invocation's deadline: the request's ends deadlineReserve before it,
// time left to write the answer. Without one (tools, tests) it ends after
// defaultRequestTimeout.
const (
	deadlineReserve       = time.Second
	defaultRequestTimeout = 60 * time.Second
)

// withDeadline returns r with its deadline, and the cancel to call when
// the request is done.
func withDeadline(r *http.Request) (*http.Request, context.CancelFunc) {
	deadline := time.Now().Add(defaultRequestTimeout)
	if d, ok := r.Context().Deadline(); ok {
		// A short invocation keeps three quarters of its time for the work.
		reserve := min(deadlineReserve, time.Until(d)/4)
		deadline = d.Add(-reserve)
	}
	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	return r.WithContext(ctx), cancel
}
