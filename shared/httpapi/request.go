package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/awslabs/aws-lambda-go-api-proxy/core"
	"github.com/google/uuid"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// userIDPattern is what a user id (the JWT sub claim) may look like; it
// becomes part of S3 keys, so nothing that could change a key's meaning.
var userIDPattern = regexp.MustCompile(`^[A-Za-z0-9._@:+=|-]{1,128}$`)

// userID is the caller's identity: the sub claim the HTTP API's JWT
// authorizer (or the local gateway, playing it) put in the request context.
func userID(r *http.Request) (string, error) {
	gw, ok := core.GetAPIGatewayV2ContextFromContext(r.Context())
	if !ok || gw.Authorizer == nil || gw.Authorizer.JWT == nil {
		return "", upload.Errorf(upload.CodeUnauthorized, "authentication required")
	}
	sub := gw.Authorizer.JWT.Claims["sub"]
	if !userIDPattern.MatchString(sub) {
		return "", upload.Errorf(upload.CodeUnauthorized, "authentication required")
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
	if err := json.Unmarshal(raw, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return false, upload.ValidationError(map[string]string{typeErr.Field: fmt.Sprintf("must be a %s", jsonKind(typeErr.Type.Kind().String()))})
		}
		return false, upload.Errorf(upload.CodeBadRequest, "request body is not a valid JSON object")
	}
	return true, nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int64", "int32", "float64":
		return "number"
	case "slice":
		return "list"
	case "struct", "map", "ptr":
		return "object"
	}
	return goKind
}
