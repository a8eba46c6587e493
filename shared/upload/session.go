package upload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// CreateSession opens an upload session for the files the client means to
// upload, within the user's daily quota.
func (s *Service) CreateSession(ctx context.Context, userID string, files []FileSpec) (*Session, error) {
	// The user id becomes a segment of every key of the session's files:
	// the HTTP layer refuses such ids already, and no caller may get past.
	if msg := CheckUserID(userID); msg != "" {
		return nil, Errorf(CodeUnauthorized, "the user id %s", msg)
	}
	if err := s.checkDeclaredFiles(files); err != nil {
		return nil, err
	}
	now := s.now()
	sess := &Session{
		ID:            s.NewID(),
		UserID:        userID,
		Status:        SessionActive,
		PartSizeBytes: PartSizeBytes,
		ExpiresAt:     now.Add(time.Duration(s.Limits.SessionTTLMinutes) * time.Minute),
		CreatedAt:     now,
		UpdatedAt:     now,
	}
	err := s.Store.InTx(ctx, func(tx Tx) error {
		ok, err := tx.IncrementDailyUploads(ctx, userID, now, s.Limits.SessionsPerDay)
		if err != nil {
			return err
		}
		if !ok {
			return dailyLimitError(now, s.Limits.SessionsPerDay)
		}
		return tx.InsertSession(ctx, sess)
	})
	if err != nil {
		return nil, err
	}
	return sess, nil
}

func (s *Service) checkDeclaredFiles(files []FileSpec) error {
	if len(files) == 0 {
		return ValidationError(map[string]string{"files": "must list at least one file"})
	}
	errs := map[string]string{}
	for i, f := range files {
		f.fieldErrors(fmt.Sprintf("files[%d].", i), errs)
	}
	if len(errs) > 0 {
		return ValidationError(errs)
	}
	for _, f := range files {
		if err := s.Limits.checkTypeAndSize(f); err != nil {
			return err
		}
	}
	return s.Limits.checkCounts(files, true)
}

func dailyLimitError(now time.Time, limit int) *Error {
	next := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	wait := int(next.Sub(now).Seconds() + 0.999)
	return &Error{
		Code:              CodeTooManyRequests,
		Message:           fmt.Sprintf("daily limit of %d upload sessions reached", limit),
		Details:           map[string]any{"nextAllowedAt": next.Format(time.RFC3339), "retryAfterSeconds": wait},
		RetryAfterSeconds: wait,
	}
}

// SessionView is a session with its files and their uploaded parts, for
// resuming an upload.
type SessionView struct {
	Session *Session
	Status  SessionStatus // as seen now (expired is computed)
	Files   []FileView
}

// FileView is one file of a SessionView.
type FileView struct {
	File       File
	TotalParts int
	Parts      []Part
}

// GetSession returns the user's session with its files and parts. For an
// active session it first learns from S3 what arrived straight there
// (parts PUT to presigned URLs, files PUT whole) and records it.
func (s *Service) GetSession(ctx context.Context, userID, sessionID string) (*SessionView, error) {
	v, err := s.readSession(ctx, userID, sessionID)
	if err != nil || v.Status != SessionActive {
		return v, err
	}
	if err := s.learn(ctx, v); err != nil {
		return nil, err
	}
	return v, nil
}

// learn asks S3 about v's open files and records what it says, updating v.
// When S3 cannot be read the session is shown as recorded: it is a resume
// hint, and complete and finalize ask S3 again.
func (s *Service) learn(ctx context.Context, v *SessionView) error {
	files := make([]File, len(v.Files))
	for i, fv := range v.Files {
		files[i] = fv.File
	}
	found, err := s.inspectAll(ctx, files, receiving)
	if err != nil {
		slog.WarnContext(ctx, "session shown as recorded: storage could not be read", "sessionId", v.Session.ID, "err", err)
		return nil
	}
	if !learnsSomething(v, found) {
		return nil // the usual poll: nothing to write, no transaction
	}
	var news []PartCompleted
	err = s.Store.InTx(ctx, func(tx Tx) error {
		news = nil
		// Under the session's lock, as every write: a session aborted or
		// finalized since it was read records nothing more. A share lock,
		// as UploadPart's: reads of one session do not wait for each
		// other, and each file's own row lock orders what is recorded.
		sess, err := sessionOrNotFound(tx.ShareSession(ctx, v.Session.ID, v.Session.UserID))
		if err != nil {
			return err
		}
		if sess.StatusAt(s.now()) != SessionActive {
			return errSessionChanged
		}
		for i := range v.Files {
			fv := &v.Files[i]
			if !receiving(&fv.File) {
				continue
			}
			f, err := getFile(ctx, tx, v.Session.ID, fv.File.ID, true)
			if err != nil {
				return err
			}
			if !receiving(f) {
				continue // completed meanwhile; show what was read
			}
			recorded, err := tx.ListParts(ctx, f.ID)
			if err != nil {
				return err
			}
			parts, err := s.record(ctx, tx, f, v.Session.PartSizeBytes, found[i], recorded, &news)
			if err != nil {
				return err
			}
			fv.File, fv.Parts = *f, parts
			if parts == nil {
				fv.Parts = []Part{}
			}
		}
		return nil
	})
	if errors.Is(err, errSessionChanged) {
		// Show the session as it is now, without learning.
		nv, rerr := s.readSession(ctx, v.Session.UserID, v.Session.ID)
		if rerr != nil {
			return rerr
		}
		*v = *nv
		return nil
	}
	if err == nil {
		s.announce(ctx, news)
	}
	return err
}

// learnsSomething says whether S3 holds anything of v's open files that v
// does not show: a file PUT whole, or a part not recorded (or recorded
// with another ETag or size).
func learnsSomething(v *SessionView, found []inStorage) bool {
	for i := range v.Files {
		fv := &v.Files[i]
		if !receiving(&fv.File) {
			continue
		}
		if found[i].whole {
			return true
		}
		known := make(map[int]Part, len(fv.Parts))
		for _, p := range fv.Parts {
			known[p.PartNumber] = p
		}
		for _, sp := range completeParts(&fv.File, v.Session.PartSizeBytes, found[i].parts) {
			if p, ok := known[sp.PartNumber]; !ok || trimQuotes(p.ETag) != sp.ETag || p.Size != sp.Size {
				return true
			}
		}
	}
	return false
}

// partRefused is UploadPart's answer when S3 did not take a part. When the
// session stopped taking writes, or the file parts, while the part streamed
// (an abort, a finalize or a complete racing the upload: S3 then fails or
// refuses the part), that refusal is the answer: it is final, where a
// retryable 503 would only be followed by that refusal. Otherwise it is
// err's own answer.
func (s *Service) partRefused(ctx context.Context, userID, sessionID, fileID string, err error) error {
	if _, _, now := s.fileForParts(ctx, userID, sessionID, fileID); now != nil {
		if e, ok := AsError(now); ok {
			switch e.Code {
			case CodeNotFound, CodeSessionExpired, CodeSessionNotActive, CodeFileAlreadyCompleted:
				return e
			}
		}
	}
	if errors.Is(err, ErrNotFound) {
		// The multipart upload is gone: completed or aborted meanwhile.
		return Errorf(CodeFileAlreadyCompleted, "file is no longer accepting parts")
	}
	return storageError("upload part", err)
}

// errSessionChanged ends learn's transaction when the session stopped
// being active after it was read.
var errSessionChanged = errors.New("session is no longer active")

// readSession reads the session, its files and their recorded parts.
func (s *Service) readSession(ctx context.Context, userID, sessionID string) (*SessionView, error) {
	var v SessionView
	err := s.Store.InTx(ctx, func(tx Tx) error {
		sess, err := getSession(ctx, tx, userID, sessionID, false)
		if err != nil {
			return err
		}
		files, err := tx.ListFiles(ctx, sessionID)
		if err != nil {
			return err
		}
		// One query for every file's parts, not one per file: this is the
		// resume poll.
		parts, err := tx.ListSessionParts(ctx, sessionID)
		if err != nil {
			return err
		}
		v = SessionView{Session: sess, Status: sess.StatusAt(s.now())}
		for _, f := range files {
			fp := parts[f.ID]
			if fp == nil {
				fp = []Part{}
			}
			v.Files = append(v.Files, FileView{File: f, TotalParts: TotalParts(f.Size, sess.PartSizeBytes), Parts: fp})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// AbortSession cancels a session and aborts the multipart uploads of its
// unfinished files. Aborting a cancelled session again aborts any upload
// still open (S3 answers NotFound for the others, which is fine); an
// expired session may be aborted (that is its clean-up); a finalized one
// may not.
func (s *Service) AbortSession(ctx context.Context, userID, sessionID string) error {
	// The session is cancelled first, in a short transaction: from then on
	// nothing more is recorded. The multipart uploads are aborted after,
	// with no transaction open; when S3 cannot be reached the answer is a
	// retryable 503, and aborting the cancelled session again aborts what
	// is left.
	var open []File
	err := s.Store.InTx(ctx, func(tx Tx) error {
		open = nil
		sess, err := getSession(ctx, tx, userID, sessionID, true)
		if err != nil {
			return err
		}
		switch sess.Status {
		case SessionCancelled, SessionActive:
		default:
			return s.checkWritable(sess)
		}
		files, err := tx.ListFiles(ctx, sessionID)
		if err != nil {
			return err
		}
		for _, f := range files {
			if f.Status != FileCompleted && f.UploadID != "" {
				open = append(open, f)
			}
		}
		if sess.Status == SessionCancelled {
			return nil
		}
		sess.Status = SessionCancelled
		sess.UpdatedAt = s.now()
		return tx.UpdateSession(ctx, sess)
	})
	if err != nil {
		return err
	}
	errs := make([]error, len(open))
	s.parallel(len(open), func(i int) {
		if err := s.Blob.AbortMultipartUpload(ctx, open[i].S3Key, open[i].UploadID); err != nil && !errors.Is(err, ErrNotFound) {
			errs[i] = err
		}
	})
	if err := errors.Join(errs...); err != nil {
		return storageError("abort upload", err)
	}
	return nil
}
