package upload

import "time"

// SessionStatus is where an upload session is in its life.
type SessionStatus string

// Session statuses. Expired is never stored: it is an active session read
// after its expiresAt.
const (
	SessionActive     SessionStatus = "active"
	SessionFinalizing SessionStatus = "finalizing"
	SessionCompleted  SessionStatus = "completed"
	SessionExpired    SessionStatus = "expired"
	SessionCancelled  SessionStatus = "cancelled"
)

// FileStatus is where one file's upload is.
type FileStatus string

// File statuses.
const (
	FilePending   FileStatus = "pending"   // registered, no part yet
	FileUploading FileStatus = "uploading" // at least one part
	FileCompleted FileStatus = "completed" // multipart upload completed
	FileFailed    FileStatus = "failed"
)

// Session is a row of upload_sessions.
type Session struct {
	ID            string
	UserID        string
	Status        SessionStatus
	PartSizeBytes int64
	ExpiresAt     time.Time
	FinalizedAt   *time.Time
	FinalizingAt  *time.Time
	MocID         *string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// StatusAt is the status a client sees at now: an active session past its
// expiry is expired.
func (s *Session) StatusAt(now time.Time) SessionStatus {
	if s.Status == SessionActive && !now.Before(s.ExpiresAt) {
		return SessionExpired
	}
	return s.Status
}

// Checksums a client may declare for a file, lower-case hex.
type Checksums struct {
	MD5    string `json:"md5,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

// FileMetadata is stored as jsonb in upload_session_files.metadata.
type FileMetadata struct {
	Checksums *Checksums `json:"checksums,omitempty"`
}

// File is a row of upload_session_files.
type File struct {
	ID        string
	SessionID string
	Category  Category
	Name      string
	MimeType  string
	Ext       string
	Size      int64
	S3Key     string
	UploadID  string
	Status    FileStatus
	FileURL   string
	Metadata  FileMetadata
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Part is a row of upload_session_parts: one uploaded part of a file.
type Part struct {
	FileID     string
	PartNumber int
	ETag       string
	Size       int64
	MD5        string // hex MD5 of the part's bytes, when it came with a Content-MD5; else ""
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// MocPrivate is the status finalize gives a new MOC.
const MocPrivate = "private"

// Thumbnail statuses of a MOC.
const (
	ThumbnailNone    = "none"
	ThumbnailPending = "pending"
	ThumbnailReady   = "ready"
	ThumbnailFailed  = "failed"
)

// Moc is a row of moc_instructions plus its files.
type Moc struct {
	ID              string
	UserID          string
	UploadSessionID string
	Title           string
	Slug            string
	Description     *string
	Type            string // "moc", as the old service stored
	Status          string
	Tags            []string
	Theme           *string
	ThumbnailURL    *string
	ThumbnailStatus string
	FinalizedAt     *time.Time
	CreatedAt       time.Time
	UpdatedAt       time.Time
	Files           []MocFile
}

// MocFile is a row of moc_files. Its ID is the upload file's ID.
type MocFile struct {
	ID               string
	MocID            string
	FileType         string // instruction | parts-list | gallery-image | thumbnail
	Category         Category
	FileURL          string
	S3Key            string
	OriginalFilename string
	MimeType         string
	Size             int64
	CreatedAt        time.Time
}

// FileTypeOf maps an upload category to moc_files.file_type.
func FileTypeOf(c Category) string {
	if c == CategoryImage {
		return "gallery-image"
	}
	return string(c)
}

// CategoryOfFileType maps moc_files.file_type back to an upload category.
func CategoryOfFileType(t string) Category {
	if t == "gallery-image" {
		return CategoryImage
	}
	return Category(t)
}
