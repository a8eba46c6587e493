package upload

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Service runs the upload use cases against its ports. Build it once per
// process (cold start) and share it: it holds no per-request state.
type Service struct {
	Store  Store
	Blob   Blob
	Limits Limits
	// Stage prefixes every object key ("dev", "prod", …).
	Stage string
	// DownloadURLTTL is how long presigned download URLs live (≥ 15 minutes).
	DownloadURLTTL time.Duration
	// UploadURLTTL is how long presigned upload URLs (whole file, parts)
	// live; never past the session's expiry.
	UploadURLTTL time.Duration
	// FinalizeConcurrency bounds the files finalize completes and checks at once.
	FinalizeConcurrency int
	// Progress is told what was recorded (nil: nobody is told).
	Progress Progress

	// ThumbnailsEnabled makes finalize leave a thumbnail to generate for a
	// MOC with an image (ENABLE_THUMBNAIL_GENERATION); off, the first
	// image is the thumbnail, as in the old service.
	ThumbnailsEnabled bool
	// WebhookEnabled makes finalize leave a moc.finalized webhook to send
	// (MOC_FINALIZE_WEBHOOK_URL is set).
	WebhookEnabled bool
	// FollowUps starts the work a finalize left once it committed (nil:
	// the work waits in the outbox for the sweeper).
	FollowUps FollowUps

	Now   func() time.Time
	NewID func() string
}

// now is the service's clock, at PostgreSQL's precision, so that what the
// domain holds equals what it reads back.
func (s *Service) now() time.Time { return s.Now().UTC().Truncate(time.Microsecond) }

// sessionForWrite loads the user's session inside tx and refuses writes to
// an expired (410) or no longer active (400) one.
func (s *Service) sessionForWrite(ctx context.Context, tx Tx, userID, sessionID string, lock bool) (*Session, error) {
	sess, err := getSession(ctx, tx, userID, sessionID, lock)
	if err != nil {
		return nil, err
	}
	return sess, s.checkWritable(sess)
}

func (s *Service) checkWritable(sess *Session) error {
	switch sess.StatusAt(s.now()) {
	case SessionActive:
		return nil
	case SessionExpired:
		return (&Error{Code: CodeSessionExpired, Message: "upload session has expired"}).
			WithDetails(map[string]any{"expiresAt": sess.ExpiresAt.Format(time.RFC3339)})
	default:
		return (&Error{Code: CodeSessionNotActive, Message: "upload session is " + string(sess.Status)}).
			WithDetails(map[string]any{"status": string(sess.Status)})
	}
}

func getSession(ctx context.Context, tx Tx, userID, sessionID string, lock bool) (*Session, error) {
	return sessionOrNotFound(tx.GetSession(ctx, sessionID, userID, lock))
}

// sessionOrNotFound turns the store's ErrNotFound into the client's 404.
func sessionOrNotFound(sess *Session, err error) (*Session, error) {
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(CodeNotFound, "upload session not found")
	}
	return sess, err
}

func getFile(ctx context.Context, tx Tx, sessionID, fileID string, lock bool) (*File, error) {
	f, err := tx.GetFile(ctx, sessionID, fileID, lock)
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(CodeNotFound, "file not found")
	}
	return f, err
}

// announce tells Progress about parts recorded by a committed transaction.
func (s *Service) announce(ctx context.Context, parts []PartCompleted) {
	s.tell(ctx, Events{Parts: parts})
}

// tell hands Progress everything one request recorded, in one call: the
// one call is what Progress bounds in time and warns about at most once.
func (s *Service) tell(ctx context.Context, ev Events) {
	if s.Progress != nil && !ev.Empty() {
		s.Progress.Announce(ctx, ev)
	}
}

// objectKey is where a file's bytes live:
// {stage}/moc-instructions/{userId}/{sessionId}/{category}/{fileId}.{ext}
func (s *Service) objectKey(userID, sessionID string, c Category, fileID, ext string) string {
	return fmt.Sprintf("%s/moc-instructions/%s/%s/%s/%s.%s", s.Stage, userID, sessionID, c, fileID, ext)
}

// withinDeadline is a context for clean-up after ctx failed or was
// cancelled: not cancelled with it, but ending at its deadline, if it has
// one, so that the request still answers in time (in Lambda, before the
// invocation's deadline).
func withinDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	cleanup := context.WithoutCancel(ctx)
	if d, ok := ctx.Deadline(); ok {
		return context.WithDeadline(cleanup, d)
	}
	return context.WithCancel(cleanup)
}
