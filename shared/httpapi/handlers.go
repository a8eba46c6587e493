package httpapi

import (
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

type fileSpecJSON struct {
	Category string `json:"category"`
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	Type     string `json:"type"`
	Ext      string `json:"ext"`
}

func (f fileSpecJSON) spec() upload.FileSpec {
	return upload.FileSpec{Category: upload.Category(f.Category), Name: f.Name, Size: f.Size,
		Type: upload.NormalizeType(f.Type), Ext: f.Ext}
}

func (a *API) createSession(w http.ResponseWriter, r *http.Request) error {
	user, err := userID(r)
	if err != nil {
		return err
	}
	var body struct {
		Files []fileSpecJSON `json:"files"`
	}
	if _, err := a.decodeJSON(w, r, &body, false); err != nil {
		return err
	}
	specs := make([]upload.FileSpec, len(body.Files))
	for i, f := range body.Files {
		specs[i] = f.spec()
	}
	sess, err := a.svc.CreateSession(r.Context(), user, specs)
	if err != nil {
		return err
	}
	writeData(w, http.StatusCreated, map[string]any{
		"sessionId":     sess.ID,
		"partSizeBytes": sess.PartSizeBytes,
		"expiresAt":     rfc3339(sess.ExpiresAt),
	})
	return nil
}

type partJSON struct {
	PartNumber int    `json:"partNumber"`
	ETag       string `json:"etag"`
	Size       int64  `json:"size"`
}

func (a *API) getSession(w http.ResponseWriter, r *http.Request) error {
	user, sessionID, err := sessionRequest(r)
	if err != nil {
		return err
	}
	v, err := a.svc.GetSession(r.Context(), user, sessionID)
	if err != nil {
		return err
	}
	files := make([]map[string]any, 0, len(v.Files))
	for _, f := range v.Files {
		parts := make([]partJSON, 0, len(f.Parts))
		for _, p := range f.Parts {
			parts = append(parts, partJSON{PartNumber: p.PartNumber, ETag: p.ETag, Size: p.Size})
		}
		files = append(files, map[string]any{
			"fileId": f.File.ID, "category": f.File.Category, "name": f.File.Name,
			"size": f.File.Size, "type": f.File.MimeType, "ext": f.File.Ext,
			"status": f.File.Status, "totalParts": f.TotalParts, "uploadedParts": parts,
		})
	}
	data := map[string]any{
		"sessionId":     v.Session.ID,
		"status":        v.Status,
		"partSizeBytes": v.Session.PartSizeBytes,
		"expiresAt":     rfc3339(v.Session.ExpiresAt),
		"createdAt":     rfc3339(v.Session.CreatedAt),
		"files":         files,
	}
	if v.Session.MocID != nil {
		data["mocId"] = *v.Session.MocID
	}
	writeData(w, http.StatusOK, data)
	return nil
}

func (a *API) abortSession(w http.ResponseWriter, r *http.Request) error {
	user, sessionID, err := sessionRequest(r)
	if err != nil {
		return err
	}
	if err := a.svc.AbortSession(r.Context(), user, sessionID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) registerFile(w http.ResponseWriter, r *http.Request) error {
	user, sessionID, err := sessionRequest(r)
	if err != nil {
		return err
	}
	var body struct {
		Category  string            `json:"category"`
		Name      string            `json:"name"`
		Size      int64             `json:"size"`
		Type      string            `json:"type"`
		Ext       string            `json:"ext"`
		Checksums *upload.Checksums `json:"checksums"`
		// The seed story's spelling of name, size and type.
		FileKey       string `json:"fileKey"`
		FileSizeBytes int64  `json:"fileSizeBytes"`
		MimeType      string `json:"mimeType"`
	}
	if _, err := a.decodeJSON(w, r, &body, false); err != nil {
		return err
	}
	spec := fileSpecJSON{body.Category, body.Name, body.Size, body.Type, body.Ext}.spec()
	if spec.Name == "" && body.FileKey != "" {
		spec.Name = body.FileKey
		if spec.Ext == "" {
			spec.Ext = strings.TrimPrefix(path.Ext(body.FileKey), ".")
		}
	}
	if spec.Size == 0 {
		spec.Size = body.FileSizeBytes
	}
	if spec.Type == "" {
		spec.Type = upload.NormalizeType(body.MimeType)
	}
	if spec.Category == "" {
		if c, ok := upload.CategoryForType(spec.Type); ok {
			spec.Category = c
		}
	}
	reg, err := a.svc.RegisterFile(r.Context(), user, sessionID, spec, body.Checksums)
	if err != nil {
		return err
	}
	f := reg.File
	writeData(w, http.StatusCreated, map[string]any{
		"fileId":          f.ID,
		"uploadId":        f.UploadID,
		"partSizeBytes":   upload.PartSizeBytes,
		"totalParts":      upload.TotalParts(f.Size, upload.PartSizeBytes),
		"uploadUrl":       reg.Upload.URL,
		"uploadMethod":    reg.Upload.Method,
		"uploadHeaders":   reg.Upload.Header,
		"uploadExpiresAt": rfc3339(reg.Upload.ExpiresAt),
	})
	return nil
}

func (a *API) uploadPart(w http.ResponseWriter, r *http.Request) error {
	user, sessionID, fileID, err := fileRequest(r)
	if err != nil {
		return err
	}
	n, err := partNumber(r)
	if err != nil {
		return err
	}
	size := r.ContentLength
	if size < 0 {
		return upload.Errorf(upload.CodeBadRequest, "Content-Length is required")
	}
	res, err := a.svc.UploadPart(r.Context(), user, sessionID, fileID, n, r.Body, size, r.Header.Get("Content-MD5"))
	if err != nil {
		return err
	}
	writeData(w, http.StatusOK, map[string]any{
		"partNumber":     res.Part.PartNumber,
		"etag":           res.Part.ETag,
		"size":           res.Part.Size,
		"completedParts": res.CompletedParts,
		"totalParts":     res.TotalParts,
	})
	return nil
}

func (a *API) completeFile(w http.ResponseWriter, r *http.Request) error {
	user, sessionID, fileID, err := fileRequest(r)
	if err != nil {
		return err
	}
	var body struct {
		Parts []partJSON `json:"parts"`
	}
	if _, err := a.decodeJSON(w, r, &body, true); err != nil {
		return err
	}
	var parts []upload.CompletedPart
	if body.Parts != nil {
		parts = make([]upload.CompletedPart, len(body.Parts))
		for i, p := range body.Parts {
			parts[i] = upload.CompletedPart{PartNumber: p.PartNumber, ETag: p.ETag}
		}
	}
	f, err := a.svc.CompleteFile(r.Context(), user, sessionID, fileID, parts)
	if err != nil {
		return err
	}
	writeData(w, http.StatusOK, map[string]any{"fileId": f.ID, "fileUrl": f.FileURL})
	return nil
}

func (a *API) finalize(w http.ResponseWriter, r *http.Request) error {
	user, err := userID(r)
	if err != nil {
		return err
	}
	var body struct {
		UploadSessionID string   `json:"uploadSessionId"`
		SessionID       string   `json:"sessionId"`
		Title           string   `json:"title"`
		Description     *string  `json:"description"`
		Tags            []string `json:"tags"`
		Theme           *string  `json:"theme"`
	}
	if _, err := a.decodeJSON(w, r, &body, false); err != nil {
		return err
	}
	req := upload.FinalizeRequest{SessionID: body.UploadSessionID, Title: body.Title,
		Description: body.Description, Tags: body.Tags, Theme: body.Theme}
	if req.SessionID == "" {
		req.SessionID = body.SessionID
	}
	if err := req.Check(validUUID); err != nil {
		return err
	}
	moc, resumed, err := a.svc.Finalize(r.Context(), user, req)
	if err != nil {
		return err
	}
	d, err := a.svc.Details(r.Context(), moc)
	if err != nil {
		return err
	}
	out := mocJSON(d)
	status := http.StatusCreated
	if resumed {
		out["idempotent"], out["resumed"] = true, true
		status = http.StatusOK
	}
	writeData(w, status, out)
	return nil
}

func (a *API) getMoc(w http.ResponseWriter, r *http.Request) error {
	user, err := userID(r)
	if err != nil {
		return err
	}
	mocID, err := pathID(r, "mocId")
	if err != nil {
		return err
	}
	d, err := a.svc.GetMoc(r.Context(), user, mocID)
	if err != nil {
		return err
	}
	writeData(w, http.StatusOK, mocJSON(d))
	return nil
}

// mocJSON is the MOC as the contract shows it; pdfKey, imageKeys and
// partsKeys hold file URLs, as the old service's did.
func mocJSON(d *upload.MocDetails) map[string]any {
	m := d.Moc
	var pdfKey *string
	imageKeys, partsKeys := []string{}, []string{}
	files := make([]map[string]any, 0, len(m.Files))
	for _, f := range m.Files {
		switch f.Category {
		case upload.CategoryInstruction:
			if pdfKey == nil {
				u := f.FileURL
				pdfKey = &u
			}
		case upload.CategoryPartsList:
			partsKeys = append(partsKeys, f.FileURL)
		default:
			imageKeys = append(imageKeys, f.FileURL)
		}
		files = append(files, map[string]any{
			"fileId": f.ID, "category": f.Category, "name": f.OriginalFilename,
			"mimeType": f.MimeType, "size": f.Size, "downloadUrl": d.DownloadURLs[f.ID],
		})
	}
	return map[string]any{
		"id":              m.ID,
		"title":           m.Title,
		"slug":            m.Slug,
		"description":     m.Description,
		"status":          m.Status,
		"tags":            m.Tags,
		"theme":           m.Theme,
		"createdAt":       rfc3339(m.CreatedAt),
		"pdfKey":          pdfKey,
		"imageKeys":       imageKeys,
		"partsKeys":       partsKeys,
		"files":           files,
		"thumbnailUrl":    d.ThumbnailURL,
		"thumbnailStatus": m.ThumbnailStatus,
	}
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
