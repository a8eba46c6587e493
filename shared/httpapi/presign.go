package httpapi

import (
	"net/http"
	"strconv"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// presignPart answers GET …/parts/{partNumber}/url[?md5=<Content-MD5>].
func (a *API) presignPart(w http.ResponseWriter, r *http.Request) error {
	user, sessionID, fileID, err := fileRequest(r)
	if err != nil {
		return err
	}
	n, err := partNumber(r)
	if err != nil {
		return err
	}
	var md5s map[int]string
	if q := r.URL.Query(); q.Has("md5") {
		if _, ok := upload.ContentMD5(q.Get("md5")); !ok {
			return upload.ValidationError(map[string]string{"md5": "must be an MD5 digest: base64 of 16 bytes (URL-encoded), or 32 hex digits"})
		}
		md5s = map[int]string{n: q.Get("md5")}
	}
	parts, err := a.svc.PresignParts(r.Context(), user, sessionID, fileID, []int{n}, md5s)
	if err != nil {
		return err
	}
	writeData(w, http.StatusOK, presignedPartJSON(parts[0]))
	return nil
}

// presignParts answers POST …/parts/urls with {"partNumbers":[…],
// "md5s":{"<n>":"<Content-MD5>"}}; no partNumbers → every part S3 does not
// hold yet.
func (a *API) presignParts(w http.ResponseWriter, r *http.Request) error {
	user, sessionID, fileID, err := fileRequest(r)
	if err != nil {
		return err
	}
	var body struct {
		PartNumbers []int             `json:"partNumbers"`
		MD5s        map[string]string `json:"md5s"`
	}
	if _, err := a.decodeJSON(w, r, &body, true); err != nil {
		return err
	}
	var md5s map[int]string
	for k, v := range body.MD5s {
		n, err := strconv.Atoi(k)
		if err != nil || strconv.Itoa(n) != k {
			return upload.ValidationError(map[string]string{"md5s": "keys must be part numbers"})
		}
		if md5s == nil {
			md5s = map[int]string{}
		}
		md5s[n] = v
	}
	parts, err := a.svc.PresignParts(r.Context(), user, sessionID, fileID, body.PartNumbers, md5s)
	if err != nil {
		return err
	}
	out := make([]map[string]any, len(parts))
	for i, p := range parts {
		out[i] = presignedPartJSON(p)
	}
	writeData(w, http.StatusOK, map[string]any{"parts": out})
	return nil
}

func presignedPartJSON(p upload.PresignedPart) map[string]any {
	return map[string]any{
		"partNumber": p.PartNumber,
		"url":        p.URL,
		"method":     p.Method,
		"headers":    p.Header,
		"expiresAt":  rfc3339(p.ExpiresAt),
	}
}
