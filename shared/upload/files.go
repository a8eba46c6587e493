package upload

import (
	"cmp"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
)

// RegisteredFile is a new file and the PUT that uploads it whole.
type RegisteredFile struct {
	File *File
	// Upload uploads the whole file in one request straight to S3; the
	// file is otherwise uploaded in parts of its multipart upload.
	Upload PresignedRequest
}

// RegisterFile adds a file to an active session, opens its S3 multipart
// upload and presigns a PUT of the whole file. No transaction is open while
// S3 is asked: the registration is checked (a refusal asks S3 nothing),
// the upload is opened, then the file is inserted under the session's lock
// after the same checks, so concurrent registrations cannot break the
// per-category counts or take one name twice. An upload opened for a
// registration that then loses is aborted. A failed file of that name is
// replaced: its row goes in the same transaction, its object after.
func (s *Service) RegisterFile(ctx context.Context, userID, sessionID string, spec FileSpec, sums *Checksums) (*RegisteredFile, error) {
	errs := map[string]string{}
	spec.fieldErrors("", errs)
	if sums != nil {
		if sums.MD5 != "" && !isHex(sums.MD5, md5.Size) {
			errs["checksums.md5"] = "must be 32 hex digits"
		}
		if sums.SHA256 != "" && !isHex(sums.SHA256, 32) {
			errs["checksums.sha256"] = "must be 64 hex digits"
		}
	}
	if len(errs) > 0 {
		return nil, ValidationError(errs)
	}
	if err := s.Limits.checkTypeAndSize(spec); err != nil {
		return nil, err
	}
	var sess *Session
	err := s.Store.InTx(ctx, func(tx Tx) (err error) {
		sess, _, err = s.registrable(ctx, tx, userID, sessionID, spec, false)
		return err
	})
	if err != nil {
		return nil, err
	}
	now := s.now()
	id := s.NewID()
	file := &File{
		ID: id, SessionID: sessionID, Category: spec.Category, Name: spec.Name,
		MimeType: spec.Type, Ext: spec.Ext, Size: spec.Size,
		S3Key:     s.objectKey(userID, sess.ID, spec.Category, id, spec.Ext),
		Status:    FilePending,
		CreatedAt: now, UpdatedAt: now,
	}
	if sums != nil && (sums.MD5 != "" || sums.SHA256 != "") {
		file.Metadata.Checksums = sums
	}
	if file.UploadID, err = s.Blob.CreateMultipartUpload(ctx, file.S3Key, file.MimeType); err != nil {
		return nil, storageError("create multipart upload", err)
	}
	var replaced *File
	err = s.Store.InTx(ctx, func(tx Tx) (err error) {
		if _, replaced, err = s.registrable(ctx, tx, userID, sessionID, spec, true); err != nil {
			return err
		}
		if replaced != nil {
			if err := tx.DeleteFile(ctx, replaced.SessionID, replaced.ID); err != nil {
				return err
			}
		}
		err = tx.InsertFile(ctx, file)
		if errors.Is(err, ErrConflict) {
			return duplicateName(spec.Name)
		}
		return err
	})
	if err != nil {
		// Nothing will ever use this upload: give its storage back.
		cleanup, cancel := withinDeadline(ctx)
		defer cancel()
		_ = s.Blob.AbortMultipartUpload(cleanup, file.S3Key, file.UploadID)
		return nil, err
	}
	if replaced != nil {
		// Its row is gone; its object is not needed any more. A failure
		// leaves an object nothing refers to, and does not undo the
		// registration.
		if err := s.Blob.DeleteObject(ctx, replaced.S3Key); err != nil {
			slog.WarnContext(ctx, "the object of a replaced file stays in storage", "fileId", replaced.ID, "key", replaced.S3Key, "err", err)
		}
	}
	put, err := s.presignWholeFile(ctx, sess, file)
	if err != nil {
		return nil, err
	}
	return &RegisteredFile{File: file, Upload: put}, nil
}

// registrable checks that spec may be registered in the session: it takes
// writes, has no other file of that name (a file finalize refused is
// replaced by registering its name again: it is returned), and stays
// within the per-category counts. lock locks the session's row.
func (s *Service) registrable(ctx context.Context, tx Tx, userID, sessionID string, spec FileSpec, lock bool) (*Session, *File, error) {
	sess, err := s.sessionForWrite(ctx, tx, userID, sessionID, lock)
	if err != nil {
		return nil, nil, err
	}
	files, err := tx.ListFiles(ctx, sessionID)
	if err != nil {
		return nil, nil, err
	}
	var replaced *File
	specs := []FileSpec{spec}
	for _, f := range files {
		if f.Name == spec.Name {
			if f.Status != FileFailed {
				return nil, nil, duplicateName(spec.Name)
			}
			replaced = &f
			continue
		}
		specs = append(specs, FileSpec{Category: f.Category})
	}
	if err := s.Limits.checkCounts(specs, false); err != nil {
		return nil, nil, err
	}
	return sess, replaced, nil
}

func duplicateName(name string) *Error {
	return (&Error{Code: CodeDuplicateFileName, Message: "a file with this name is already registered in the session"}).
		WithDetails(map[string]any{"name": name})
}

func isHex(s string, n int) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == n
}

// PartResult is what UploadPart reports.
type PartResult struct {
	Part           Part
	CompletedParts int
	TotalParts     int
}

// UploadPart streams one part of a file to S3 and records it. size is the
// request's Content-Length; contentMD5 the optional Content-MD5 header.
// Re-uploading a part replaces it. Once recorded, the part is announced to
// Progress.
func (s *Service) UploadPart(ctx context.Context, userID, sessionID, fileID string, partNumber int, body io.Reader, size int64, contentMD5 string) (*PartResult, error) {
	res, err := s.StorePart(ctx, userID, sessionID, fileID, partNumber, body, size, contentMD5)
	if err != nil {
		return nil, err
	}
	s.AnnounceParts(ctx, sessionID, []PartResult{*res})
	return res, nil
}

// AnnounceParts tells Progress, in one call, about the parts of a session
// that one request stored with StorePart (a batch's, once its workers are
// done), sorted by file and CompletedParts: parts recorded concurrently
// reach the clients in the order they were counted.
func (s *Service) AnnounceParts(ctx context.Context, sessionID string, results []PartResult) {
	parts := make([]PartCompleted, 0, len(results))
	for _, r := range results {
		parts = append(parts, PartCompleted{SessionID: sessionID, FileID: r.Part.FileID, PartNumber: r.Part.PartNumber,
			ETag: r.Part.ETag, TotalParts: r.TotalParts, CompletedParts: r.CompletedParts})
	}
	SortParts(parts)
	s.announce(ctx, parts)
}

// SortParts orders parts by session, file, CompletedParts and part number,
// so that each file's CompletedParts never goes down from one to the next.
func SortParts(parts []PartCompleted) {
	slices.SortStableFunc(parts, func(a, b PartCompleted) int {
		return cmp.Or(strings.Compare(a.SessionID, b.SessionID), strings.Compare(a.FileID, b.FileID),
			cmp.Compare(a.CompletedParts, b.CompletedParts), cmp.Compare(a.PartNumber, b.PartNumber))
	})
}

// StorePart is UploadPart without the announcement: for a request that
// stores several parts and announces them once with AnnounceParts, so
// that Progress is called (and warns, when the WebSocket side is down)
// once per request.
func (s *Service) StorePart(ctx context.Context, userID, sessionID, fileID string, partNumber int, body io.Reader, size int64, contentMD5 string) (*PartResult, error) {
	// Check everything before a byte goes to S3; no lock is held while the
	// part streams.
	sess, file, err := s.fileForParts(ctx, userID, sessionID, fileID)
	if err != nil {
		return nil, err
	}
	total := TotalParts(file.Size, sess.PartSizeBytes)
	if err := checkPartNumber(partNumber, total); err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, Errorf(CodeBadRequest, "request body is empty")
	}
	if want := expectedPartSize(file.Size, sess.PartSizeBytes, partNumber); size != want {
		return nil, (&Error{Code: CodeInvalidPartSize, Message: "part has the wrong size"}).
			WithDetails(map[string]any{"partNumber": partNumber, "size": size, "expectedSize": want})
	}
	if contentMD5 != "" {
		if raw, err := base64.StdEncoding.DecodeString(contentMD5); err != nil || len(raw) != md5.Size {
			return nil, Errorf(CodeBadRequest, "Content-MD5 must be the base64 of a 16-byte MD5 digest")
		}
	}

	// The part is hashed only to check a Content-MD5 the client sent (S3
	// checks it too; this catches a store that does not). Without one no
	// MD5 is recorded, as for parts PUT to presigned URLs: nothing reads
	// it (finalize hashes the stored object against declared checksums),
	// and hashing every part cost a third of the proxied path's CPU.
	var sum hash.Hash
	if contentMD5 != "" {
		sum = md5.New()
		body = io.TeeReader(body, sum)
	}
	etag, err := s.Blob.UploadPart(ctx, file.S3Key, file.UploadID, partNumber, body, size, contentMD5)
	partMD5 := ""
	if err == nil && sum != nil {
		digest := sum.Sum(nil)
		if base64.StdEncoding.EncodeToString(digest) != contentMD5 {
			// A store that ignores Content-MD5 took the part (S3 itself
			// refuses it). It is not recorded, and the client is told to
			// send it again, which replaces it; until then the store
			// holds the bad bytes as that part, and complete, which uses
			// what the store lists, would take them.
			err = ErrBadDigest
		}
		partMD5 = hex.EncodeToString(digest)
	}
	switch {
	case errors.Is(err, ErrBadDigest):
		return nil, Errorf(CodeChecksumMismatch, "part bytes do not match Content-MD5")
	case err != nil:
		return nil, s.partRefused(ctx, userID, sessionID, fileID, err)
	}

	var res PartResult
	err = s.Store.InTx(ctx, func(tx Tx) error {
		// The part streamed without a lock: under the session's lock, check
		// again that the session still takes writes and the file parts, so
		// that nothing is recorded after an abort, a finalize or an expiry.
		// This refusal is the final answer: a retry gets the same. A share
		// lock: the parts of one session, from several clients at once,
		// are recorded side by side (each file's own row lock orders its
		// parts), while an abort or a finalize waits for them, and they
		// for it.
		sess, err := sessionOrNotFound(tx.ShareSession(ctx, sessionID, userID))
		if err != nil {
			return err
		}
		if err := s.checkWritable(sess); err != nil {
			return err
		}
		f, err := getFile(ctx, tx, sessionID, fileID, true)
		if err != nil {
			return err
		}
		if err := acceptsParts(f); err != nil {
			return err
		}
		now := s.now()
		p := Part{FileID: fileID, PartNumber: partNumber, ETag: etag, Size: size,
			MD5: partMD5, CreatedAt: now, UpdatedAt: now}
		if err := tx.UpsertPart(ctx, &p); err != nil {
			return err
		}
		if f.Status == FilePending {
			f.Status = FileUploading
			f.UpdatedAt = now
			if err := tx.UpdateFile(ctx, f); err != nil {
				return err
			}
		}
		parts, err := tx.ListParts(ctx, fileID)
		if err != nil {
			return err
		}
		res = PartResult{Part: p, CompletedParts: len(parts), TotalParts: total}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// CompleteFile completes a file's multipart upload once every part is
// there, however the parts arrived (S3 tells); a file PUT whole to its
// uploadUrl is completed as it is. When parts is not nil it must name
// exactly the parts S3 holds. Completing a completed file returns it again.
//
// No transaction is open while S3 is asked: the file is read, S3 is asked
// and the upload completed, then a second transaction records the result
// under the session's lock, unless the session stopped accepting writes
// meanwhile.
func (s *Service) CompleteFile(ctx context.Context, userID, sessionID, fileID string, parts []CompletedPart) (*File, error) {
	var sess *Session
	var file *File
	err := s.Store.InTx(ctx, func(tx Tx) (err error) {
		if sess, err = getSession(ctx, tx, userID, sessionID, false); err != nil {
			return err
		}
		if file, err = getFile(ctx, tx, sessionID, fileID, false); err != nil || file.Status == FileCompleted {
			return err
		}
		return s.checkWritable(sess)
	})
	if err != nil || file.Status == FileCompleted {
		return file, err
	}
	found, err := s.inspect(ctx, file)
	if err != nil {
		return nil, storageError("inspect file", err)
	}
	if !found.whole {
		stored := completeParts(file, sess.PartSizeBytes, found.parts)
		if missing := missingParts(stored, TotalParts(file.Size, sess.PartSizeBytes)); len(missing) > 0 {
			return nil, (&Error{Code: CodeIncompleteUpload, Message: "some parts have not been uploaded"}).
				WithDetails(map[string]any{"missingParts": missing})
		}
		if parts != nil {
			if err := matchParts(parts, stored); err != nil {
				return nil, err
			}
		}
		if err := s.completeInStorage(ctx, file, stored); err != nil {
			return nil, err
		}
	}
	var news []PartCompleted
	err = s.Store.InTx(ctx, func(tx Tx) error {
		news = nil
		sess, err := getSession(ctx, tx, userID, sessionID, true)
		if err != nil {
			return err
		}
		f, err := getFile(ctx, tx, sessionID, fileID, true)
		if err != nil {
			return err
		}
		if file = f; f.Status == FileCompleted {
			return nil // completed meanwhile (a concurrent complete or finalize)
		}
		if err := s.checkWritable(sess); err != nil {
			return err
		}
		recorded, err := tx.ListParts(ctx, fileID)
		if err != nil {
			return err
		}
		if _, err := s.record(ctx, tx, f, sess.PartSizeBytes, found, recorded, &news); err != nil || found.whole {
			return err
		}
		return s.markCompleted(ctx, tx, f)
	})
	if err != nil {
		return nil, err
	}
	s.announce(ctx, news)
	return file, nil
}

// completeInStorage completes f's multipart upload in S3. When S3 no
// longer knows the upload but has the object (a crash after an earlier
// complete, or a concurrent complete), the object is taken as it is.
func (s *Service) completeInStorage(ctx context.Context, f *File, parts []Part) error {
	cps := make([]CompletedPart, len(parts))
	for i, p := range parts {
		cps[i] = CompletedPart{PartNumber: p.PartNumber, ETag: p.ETag}
	}
	err := s.Blob.CompleteMultipartUpload(ctx, f.S3Key, f.UploadID, cps)
	if errors.Is(err, ErrNotFound) {
		if size, herr := s.Blob.Head(ctx, f.S3Key); herr == nil && size == f.Size {
			return nil
		}
	}
	if err != nil {
		err = storageError("complete multipart upload", err)
		if e, ok := AsError(err); ok && e.Code == CodeInvalidPart {
			// Finalize completes many files: say which.
			e.Details["fileId"] = f.ID
		}
		return err
	}
	return nil
}

func (s *Service) markCompleted(ctx context.Context, tx Tx, f *File) error {
	s.setCompleted(f)
	return tx.UpdateFile(ctx, f)
}

// setCompleted sets what a completed file has; the caller writes it.
func (s *Service) setCompleted(f *File) {
	f.Status = FileCompleted
	f.FileURL = s.Blob.ObjectURL(f.S3Key)
	f.UpdatedAt = s.now()
}

func missingParts(parts []Part, total int) []int {
	have := make(map[int]bool, len(parts))
	for _, p := range parts {
		have[p.PartNumber] = true
	}
	missing := []int{}
	for n := 1; n <= total; n++ {
		if !have[n] {
			missing = append(missing, n)
		}
	}
	return missing
}

// matchParts checks a client's part list against the recorded one; ETags
// are compared without surrounding quotes.
func matchParts(given []CompletedPart, recorded []Part) error {
	want := make(map[int]string, len(recorded))
	for _, p := range recorded {
		want[p.PartNumber] = trimQuotes(p.ETag)
	}
	mismatched := []int{}
	seen := map[int]bool{}
	for _, p := range given {
		if etag, ok := want[p.PartNumber]; !ok || seen[p.PartNumber] || etag != trimQuotes(p.ETag) {
			mismatched = append(mismatched, p.PartNumber)
		}
		seen[p.PartNumber] = true
	}
	if len(mismatched) == 0 && len(seen) == len(want) {
		return nil
	}
	sort.Ints(mismatched)
	return (&Error{Code: CodeBadRequest, Message: "parts do not match the uploaded parts"}).
		WithDetails(map[string]any{"mismatchedParts": mismatched, "expectedParts": len(want), "givenParts": len(given)})
}

func trimQuotes(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}
