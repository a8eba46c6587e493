package upload

import (
	"context"
	"io"
	"time"
)

// Store is the database port. Every state change runs in one transaction
// through InTx; the adapter rolls back when fn returns an error.
type Store interface {
	InTx(ctx context.Context, fn func(Tx) error) error
}

// Tx is what the domain can do inside a transaction. Methods that find
// nothing return an error wrapping ErrNotFound; writes refused by a unique
// constraint wrap ErrConflict.
type Tx interface {
	// IncrementDailyUploads adds one to the user's count for day (UTC date)
	// unless it already reached limit; ok is false when it had.
	IncrementDailyUploads(ctx context.Context, userID string, day time.Time, limit int) (ok bool, err error)

	InsertSession(ctx context.Context, s *Session) error
	// GetSession finds a session of userID; forUpdate locks its row until
	// the transaction ends (SELECT … FOR UPDATE).
	GetSession(ctx context.Context, id, userID string, forUpdate bool) (*Session, error)
	// ShareSession finds a session of userID and holds a share lock on its
	// row until the transaction ends (SELECT … FOR SHARE): other sharers go
	// on at once, and a forUpdate reader (an abort, a finalize's commit)
	// waits for them, as they wait for it.
	ShareSession(ctx context.Context, id, userID string) (*Session, error)
	UpdateSession(ctx context.Context, s *Session) error

	// InsertFile wraps ErrConflict when the session has a file of that name.
	InsertFile(ctx context.Context, f *File) error
	GetFile(ctx context.Context, sessionID, fileID string, forUpdate bool) (*File, error)
	ListFiles(ctx context.Context, sessionID string) ([]File, error)
	UpdateFile(ctx context.Context, f *File) error
	// UpdateFileStatuses writes the Status, FileURL and UpdatedAt of each
	// of files, all of the session, in one call.
	UpdateFileStatuses(ctx context.Context, sessionID string, files []File) error
	// DeleteFile removes a file and its parts.
	DeleteFile(ctx context.Context, sessionID, fileID string) error

	// UpsertPart inserts a part or replaces the one with the same number.
	UpsertPart(ctx context.Context, p *Part) error
	// UpsertParts does what UpsertPart does for each of parts, in one
	// statement.
	UpsertParts(ctx context.Context, parts []Part) error
	// ListParts returns a file's parts ordered by part number.
	ListParts(ctx context.Context, fileID string) ([]Part, error)
	// ListSessionParts returns the parts of every file of a session, by
	// file id, each file's ordered by part number.
	ListSessionParts(ctx context.Context, sessionID string) (map[string][]Part, error)

	// InsertMoc inserts the MOC's row. It wraps ErrConflict when the user
	// has that title or slug, or the session already has a MOC.
	InsertMoc(ctx context.Context, m *Moc) error
	// InsertMocFiles inserts the rows of m.Files, in that order.
	InsertMocFiles(ctx context.Context, m *Moc) error
	GetMoc(ctx context.Context, id, userID string) (*Moc, error)
	GetMocBySession(ctx context.Context, sessionID string) (*Moc, error)
	// MocTitleExists reports whether the user has a MOC with exactly title.
	MocTitleExists(ctx context.Context, userID, title string) (bool, error)
	// SlugsWithPrefix returns the user's slugs that start with prefix.
	SlugsWithPrefix(ctx context.Context, userID, prefix string) ([]string, error)

	// InsertOutbox records follow-up work as pending rows of the outbox,
	// due for dispatch now (by the database's clock).
	InsertOutbox(ctx context.Context, work []FollowUp) error
}

// Blob is the object-store port (S3). Errors wrap ErrNotFound for a missing
// object or upload, ErrUnavailable when retries were exhausted, and
// ErrBadDigest when a Content-MD5 did not match.
type Blob interface {
	CreateMultipartUpload(ctx context.Context, key, contentType string) (uploadID string, err error)
	// UploadPart streams exactly size bytes of body as one part. contentMD5
	// (base64, may be empty) is checked by the store.
	UploadPart(ctx context.Context, key, uploadID string, partNumber int, body io.Reader, size int64, contentMD5 string) (etag string, err error)
	CompleteMultipartUpload(ctx context.Context, key, uploadID string, parts []CompletedPart) error
	AbortMultipartUpload(ctx context.Context, key, uploadID string) error
	// DeleteObject removes an object; a missing one is not an error.
	DeleteObject(ctx context.Context, key string) error
	// Head returns the object's size; ErrNotFound when it does not exist.
	Head(ctx context.Context, key string) (size int64, err error)
	// ReadHead returns the object's first n bytes (fewer when it is
	// shorter) and its size, in one ranged GET; ErrNotFound when it does
	// not exist. It answers what Head does and what the magic-bytes check
	// needs in one round trip.
	ReadHead(ctx context.Context, key string, n int64) (head []byte, size int64, err error)
	// Open streams the whole object.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// ObjectURL is the object's plain S3 URL (needs credentials to read).
	ObjectURL(key string) string
	// PresignGet returns a URL anyone can GET until ttl has passed.
	PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error)

	// ListParts returns the parts the store holds for a multipart upload,
	// by part number, however they arrived (through the service or PUT
	// straight to a presigned URL); ErrNotFound when the upload is gone.
	ListParts(ctx context.Context, key, uploadID string) ([]StoredPart, error)
	// PresignPutObject returns a PUT of the whole object, of exactly size
	// bytes with contentType (and contentMD5, base64, when not empty),
	// that anyone can send until ttl has passed.
	PresignPutObject(ctx context.Context, key, contentType, contentMD5 string, size int64, ttl time.Duration) (PresignedRequest, error)
	// PresignUploadPart returns a PUT of one part of exactly size bytes
	// (and contentMD5 when not empty), valid for ttl.
	PresignUploadPart(ctx context.Context, key, uploadID string, partNumber int, size int64, contentMD5 string, ttl time.Duration) (PresignedRequest, error)
}

// Progress tells the clients watching a session what the server recorded
// (the WebSocket API). It is told after the change committed, and is best
// effort: it must return promptly and never fail the upload, so it has no
// error to return; an adapter bounds its own time and logs what it could
// not deliver.
//
// A request tells it once, with everything it recorded (a batch its parts
// once its workers are done, a finalize the parts it learnt from S3 and
// the finalized event): one call is what an adapter bounds in time, and
// logs at most one warning for.
type Progress interface {
	Announce(ctx context.Context, ev Events)
}

// Events is what one request recorded, in the order the clients are told:
// Parts in order, then Finalized when the request finalized the session.
type Events struct {
	// Parts are in the order recorded; each file's CompletedParts never
	// goes down from one to the next (see SortParts).
	Parts     []PartCompleted
	Finalized *SessionFinalized
}

// Empty reports whether there is nothing to tell.
func (e Events) Empty() bool { return len(e.Parts) == 0 && e.Finalized == nil }

// PartCompleted is a part the server recorded: proxied, in a batch, or
// learnt from S3 after it was PUT to a presigned URL.
type PartCompleted struct {
	SessionID  string
	FileID     string
	PartNumber int
	ETag       string
	TotalParts int
	// CompletedParts counts the distinct parts of the file the server has
	// recorded, this one included: re-uploading a part does not count it
	// twice, and parts arriving out of order count once each.
	CompletedParts int
}

// SessionFinalized is a session that became a MOC.
type SessionFinalized struct {
	SessionID string
	MocID     string
}

// StoredPart is a part the blob store holds for a multipart upload.
type StoredPart struct {
	PartNumber int
	ETag       string // without quotes
	Size       int64
}

// PresignedRequest is a request anyone can send, without credentials,
// until it expires.
type PresignedRequest struct {
	Method string
	URL    string
	// Header must be sent as is: the signature covers it. Content-Length,
	// which every HTTP client sets from the body (and browsers refuse to
	// set by hand), is signed too but not listed.
	Header map[string]string
	// ExpiresAt is set by the service, which chooses the lifetime.
	ExpiresAt time.Time
}

// CompletedPart names one part for CompleteMultipartUpload.
type CompletedPart struct {
	PartNumber int
	ETag       string
}
