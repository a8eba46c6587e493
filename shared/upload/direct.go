package upload

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"strconv"
	"time"
)

// Bytes can reach S3 without passing through the service: a whole file PUT
// to the uploadUrl that RegisterFile hands out, or parts PUT to presigned
// UploadPart URLs. S3 is the source of truth for what arrived; the database
// records what the service has learnt. The service learns from S3 when a
// session is read, and when a file is completed or finalized.

// MaxPresignedParts bounds the URLs one PresignParts call returns.
const MaxPresignedParts = 1000

// DefaultUploadURLTTL is how long presigned upload URLs live by default.
const DefaultUploadURLTTL = 15 * time.Minute

// uploadURLTTL is how long an upload URL made now for sess lives: the
// configured lifetime, but never past the session's expiry (a file that
// arrives later could not be finalized).
func (s *Service) uploadURLTTL(sess *Session) (time.Duration, time.Time) {
	ttl := s.UploadURLTTL
	if ttl <= 0 {
		ttl = DefaultUploadURLTTL
	}
	now := s.now()
	if left := sess.ExpiresAt.Sub(now); left < ttl {
		ttl = left
	}
	// S3 counts whole seconds.
	ttl = max(ttl.Truncate(time.Second), time.Second)
	return ttl, now.Add(ttl)
}

// presignWholeFile returns the PUT that uploads f in one request. The
// declared MD5, when there is one, is signed in, so S3 refuses other bytes.
func (s *Service) presignWholeFile(ctx context.Context, sess *Session, f *File) (PresignedRequest, error) {
	var contentMD5 string
	if sums := f.Metadata.Checksums; sums != nil && sums.MD5 != "" {
		raw, _ := hex.DecodeString(sums.MD5) // checked at registration
		contentMD5 = base64.StdEncoding.EncodeToString(raw)
	}
	ttl, expires := s.uploadURLTTL(sess)
	req, err := s.Blob.PresignPutObject(ctx, f.S3Key, f.MimeType, contentMD5, f.Size, ttl)
	if err != nil {
		return PresignedRequest{}, err
	}
	req.ExpiresAt = expires
	return req, nil
}

// PresignedPart is a presigned UploadPart URL for one part.
type PresignedPart struct {
	PartNumber int
	PresignedRequest
}

// PresignParts returns presigned UploadPart URLs for a file's parts:
// partNumbers, or when it is nil every part S3 does not hold yet (at most
// MaxPresignedParts). md5s optionally maps part numbers to the part's
// Content-MD5 (base64 or hex), which is then signed into the URL so S3
// refuses other bytes.
func (s *Service) PresignParts(ctx context.Context, userID, sessionID, fileID string, partNumbers []int, md5s map[int]string) ([]PresignedPart, error) {
	sess, file, err := s.fileForParts(ctx, userID, sessionID, fileID)
	if err != nil {
		return nil, err
	}
	total := TotalParts(file.Size, sess.PartSizeBytes)
	digests := make(map[int]string, len(md5s))
	errs := map[string]string{}
	for n, sum := range md5s {
		d, ok := ContentMD5(sum)
		if !ok {
			errs["md5s."+strconv.Itoa(n)] = "must be an MD5 digest: base64 of 16 bytes, or 32 hex digits"
		}
		digests[n] = d
	}
	if len(partNumbers) > MaxPresignedParts {
		errs["partNumbers"] = "must list at most " + strconv.Itoa(MaxPresignedParts) + " parts"
	}
	if len(errs) > 0 {
		return nil, ValidationError(errs)
	}
	for n := range md5s {
		if err := checkPartNumber(n, total); err != nil {
			return nil, err
		}
	}
	if partNumbers == nil {
		have, err := s.storedParts(ctx, file)
		if err != nil {
			return nil, err
		}
		for n := 1; n <= total && len(partNumbers) < MaxPresignedParts; n++ {
			if p, ok := have[n]; !ok || p.Size != expectedPartSize(file.Size, sess.PartSizeBytes, n) {
				partNumbers = append(partNumbers, n)
			}
		}
	}
	seen := map[int]bool{}
	ttl, expires := s.uploadURLTTL(sess)
	out := make([]PresignedPart, 0, len(partNumbers))
	for _, n := range partNumbers {
		if err := checkPartNumber(n, total); err != nil {
			return nil, err
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		req, err := s.Blob.PresignUploadPart(ctx, file.S3Key, file.UploadID, n,
			expectedPartSize(file.Size, sess.PartSizeBytes, n), digests[n], ttl)
		if err != nil {
			return nil, err
		}
		req.ExpiresAt = expires
		out = append(out, PresignedPart{PartNumber: n, PresignedRequest: req})
	}
	return out, nil
}

// storedParts is what S3 holds of the file's multipart upload, by number.
func (s *Service) storedParts(ctx context.Context, f *File) (map[int]StoredPart, error) {
	parts, err := s.Blob.ListParts(ctx, f.S3Key, f.UploadID)
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(CodeFileAlreadyCompleted, "file is no longer accepting parts")
	}
	if err != nil {
		return nil, storageError("list parts", err)
	}
	have := make(map[int]StoredPart, len(parts))
	for _, p := range parts {
		have[p.PartNumber] = p
	}
	return have, nil
}

// fileForParts reads the user's session and a file of it that takes parts:
// the session takes writes (404, 410, 400 SESSION_NOT_ACTIVE) and the file
// is neither completed nor failed (404, 409 FILE_ALREADY_COMPLETED).
func (s *Service) fileForParts(ctx context.Context, userID, sessionID, fileID string) (sess *Session, file *File, err error) {
	err = s.Store.InTx(ctx, func(tx Tx) error {
		if sess, err = s.sessionForWrite(ctx, tx, userID, sessionID, false); err != nil {
			return err
		}
		if file, err = getFile(ctx, tx, sessionID, fileID, false); err != nil {
			return err
		}
		return acceptsParts(file)
	})
	return sess, file, err
}

// acceptsParts refuses parts for a file that is completed or failed.
func acceptsParts(f *File) error {
	switch f.Status {
	case FileCompleted:
		return Errorf(CodeFileAlreadyCompleted, "file is already completed")
	case FileFailed:
		return Errorf(CodeFileAlreadyCompleted, "file failed validation at finalize: register its name again to replace it")
	}
	return nil
}

func checkPartNumber(n, total int) error {
	if n < 1 || n > total {
		return (&Error{Code: CodeInvalidPartNumber, Message: "part number is out of range"}).
			WithDetails(map[string]any{"partNumber": n, "min": 1, "max": total})
	}
	return nil
}

// ContentMD5 turns an MD5 digest given as base64 (the Content-MD5 header's
// form) or as 32 hex digits into its base64 form.
func ContentMD5(s string) (string, bool) {
	if len(s) == 32 {
		if raw, err := hex.DecodeString(s); err == nil {
			return base64.StdEncoding.EncodeToString(raw), true
		}
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != 16 {
		return "", false
	}
	return s, true
}

// inStorage is what S3 holds for a file that is not completed yet.
type inStorage struct {
	// whole: the object exists with the declared size, PUT in one request
	// to the file's uploadUrl (or completed by an earlier run that crashed
	// before recording it).
	whole bool
	// parts are the multipart upload's parts, by number.
	parts []StoredPart
}

// inspect asks S3 what it holds for f: the parts of its multipart upload
// and, when there are none, whether the whole object is there. A file PUT
// whole has its unused multipart upload aborted.
func (s *Service) inspect(ctx context.Context, f *File) (inStorage, error) {
	parts, err := s.Blob.ListParts(ctx, f.S3Key, f.UploadID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return inStorage{}, err
	}
	if len(parts) > 0 {
		return inStorage{parts: parts}, nil
	}
	size, err := s.Blob.Head(ctx, f.S3Key)
	switch {
	case errors.Is(err, ErrNotFound):
		return inStorage{}, nil
	case err != nil:
		return inStorage{}, err
	}
	if size != f.Size {
		return inStorage{}, nil
	}
	s.abortUnused(ctx, f)
	return inStorage{whole: true}, nil
}

// inspectAll inspects, in parallel, the files for which which is true; the
// others get a zero inStorage.
func (s *Service) inspectAll(ctx context.Context, files []File, which func(*File) bool) ([]inStorage, error) {
	found := make([]inStorage, len(files))
	errs := make([]error, len(files))
	s.parallel(len(files), func(i int) {
		if which(&files[i]) {
			found[i], errs[i] = s.inspect(ctx, &files[i])
		}
	})
	return found, errors.Join(errs...)
}

// receiving says whether a file is still waiting for its bytes.
func receiving(f *File) bool { return f.Status == FilePending || f.Status == FileUploading }

// completeParts are the parts of stored that can complete f's upload, as
// Parts: those of a size right for their number. A part of the wrong size
// cannot be completed and must be sent again.
func completeParts(f *File, partSize int64, stored []StoredPart) []Part {
	total := TotalParts(f.Size, partSize)
	parts := make([]Part, 0, len(stored))
	for _, sp := range stored {
		if sp.PartNumber <= total && sp.Size == expectedPartSize(f.Size, partSize, sp.PartNumber) {
			parts = append(parts, Part{FileID: f.ID, PartNumber: sp.PartNumber, ETag: sp.ETag, Size: sp.Size})
		}
	}
	return parts
}

// abortUnused aborts the multipart upload of a file that was PUT whole.
// It is best effort: the bucket's lifecycle rule removes it later.
func (s *Service) abortUnused(ctx context.Context, f *File) {
	if err := s.Blob.AbortMultipartUpload(ctx, f.S3Key, f.UploadID); err != nil && !errors.Is(err, ErrNotFound) {
		slog.WarnContext(ctx, "abort the unused multipart upload of a file uploaded whole",
			"fileId", f.ID, "err", err)
	}
}

// record writes what inspect found into tx: a whole file is completed;
// parts the database does not know, or knows with another ETag, are
// recorded, and added to news for Progress once tx commits. It returns
// the file's parts as S3 holds them (see completeParts). It makes no S3
// call: inspect aborted a whole file's unused upload.
func (s *Service) record(ctx context.Context, tx Tx, f *File, partSize int64, found inStorage, recorded []Part, news *[]PartCompleted) ([]Part, error) {
	if found.whole {
		return nil, s.markCompleted(ctx, tx, f)
	}
	known := make(map[int]Part, len(recorded))
	for _, p := range recorded {
		known[p.PartNumber] = p
	}
	stored := completeParts(f, partSize, found.parts)
	total := TotalParts(f.Size, partSize)
	// Progress counts distinct parts: those already recorded, then each
	// new part number as it is recorded.
	completed := 0
	for _, sp := range stored {
		if _, ok := known[sp.PartNumber]; ok {
			completed++
		}
	}
	now := s.now()
	parts := make([]Part, 0, len(stored))
	var changed []Part
	for _, sp := range stored {
		p, ok := known[sp.PartNumber]
		if !ok || trimQuotes(p.ETag) != sp.ETag || p.Size != sp.Size {
			// Sent straight to S3, or replaced there since: the MD5 of
			// its bytes is not known.
			p = sp
			p.CreatedAt, p.UpdatedAt = now, now
			changed = append(changed, p)
			if !ok {
				completed++
			}
			*news = append(*news, PartCompleted{SessionID: f.SessionID, FileID: f.ID, PartNumber: p.PartNumber,
				ETag: p.ETag, TotalParts: total, CompletedParts: completed})
		}
		parts = append(parts, p)
	}
	if err := tx.UpsertParts(ctx, changed); err != nil {
		return nil, err
	}
	if len(parts) > 0 && f.Status == FilePending {
		f.Status, f.UpdatedAt = FileUploading, now
		if err := tx.UpdateFile(ctx, f); err != nil {
			return nil, err
		}
	}
	return parts, nil
}
