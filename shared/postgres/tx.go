package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// tx implements upload.Tx on one pgx transaction.
type tx struct {
	tx pgx.Tx
}

var _ upload.Tx = (*tx)(nil)

// forUpdateClause locks the rows a read returns until the transaction ends.
func forUpdateClause(forUpdate bool) string {
	if forUpdate {
		return " FOR UPDATE"
	}
	return ""
}

// IncrementDailyUploads counts one more upload session of userID on day's
// UTC date, unless the count already reached limit. One statement both
// checks and counts, and its row lock makes concurrent calls take turns.
func (t *tx) IncrementDailyUploads(ctx context.Context, userID string, day time.Time, limit int) (bool, error) {
	if limit < 1 {
		return false, nil
	}
	date := day.UTC().Format(time.DateOnly)
	var count int
	err := t.tx.QueryRow(ctx, `
		INSERT INTO user_daily_uploads (user_id, day, count) VALUES ($1, $2::date, 1)
		ON CONFLICT (user_id, day) DO UPDATE SET count = user_daily_uploads.count + 1
		WHERE user_daily_uploads.count < $3
		RETURNING count`, userID, date, limit).Scan(&count)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil // the WHERE refused: limit reached
	}
	if err != nil {
		return false, fail("increment daily uploads of", userID, err)
	}
	return true, nil
}

// Sessions.

const sessionColumns = `id, user_id, status, part_size_bytes, expires_at, finalized_at,
	finalizing_at, moc_instruction_id, created_at, updated_at`

func (t *tx) InsertSession(ctx context.Context, s *upload.Session) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO upload_sessions (`+sessionColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		s.ID, s.UserID, s.Status, s.PartSizeBytes, utc(s.ExpiresAt), utcPtr(s.FinalizedAt),
		utcPtr(s.FinalizingAt), s.MocID, utc(s.CreatedAt), utc(s.UpdatedAt))
	if err != nil {
		return fail("insert session", s.ID, err)
	}
	return nil
}

func (t *tx) GetSession(ctx context.Context, id, userID string, forUpdate bool) (*upload.Session, error) {
	return t.getSession(ctx, id, userID, forUpdateClause(forUpdate))
}

func (t *tx) ShareSession(ctx context.Context, id, userID string) (*upload.Session, error) {
	return t.getSession(ctx, id, userID, " FOR SHARE")
}

// getSession reads a session with lockClause ("", " FOR UPDATE", " FOR SHARE").
func (t *tx) getSession(ctx context.Context, id, userID, lockClause string) (*upload.Session, error) {
	if !isUUID(id) {
		return nil, notFound("get session", id)
	}
	var s upload.Session
	err := t.tx.QueryRow(ctx, `SELECT `+sessionColumns+` FROM upload_sessions
		WHERE id = $1 AND user_id = $2`+lockClause, id, userID).Scan(
		&s.ID, &s.UserID, &s.Status, &s.PartSizeBytes, &s.ExpiresAt, &s.FinalizedAt,
		&s.FinalizingAt, &s.MocID, &s.CreatedAt, &s.UpdatedAt)
	if err != nil {
		return nil, fail("get session", id, err)
	}
	s.ExpiresAt, s.CreatedAt, s.UpdatedAt = utc(s.ExpiresAt), utc(s.CreatedAt), utc(s.UpdatedAt)
	s.FinalizedAt, s.FinalizingAt = utcPtr(s.FinalizedAt), utcPtr(s.FinalizingAt)
	return &s, nil
}

// UpdateSession writes every column of the session but its id, owner and
// creation time.
func (t *tx) UpdateSession(ctx context.Context, s *upload.Session) error {
	tag, err := t.tx.Exec(ctx, `UPDATE upload_sessions SET status = $3, part_size_bytes = $4,
		expires_at = $5, finalized_at = $6, finalizing_at = $7, moc_instruction_id = $8,
		updated_at = $9
		WHERE id = $1 AND user_id = $2`,
		s.ID, s.UserID, s.Status, s.PartSizeBytes, utc(s.ExpiresAt), utcPtr(s.FinalizedAt),
		utcPtr(s.FinalizingAt), s.MocID, utc(s.UpdatedAt))
	if err != nil {
		return fail("update session", s.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("update session", s.ID)
	}
	return nil
}

// Files.

const fileColumns = `id, session_id, category, name, mime_type, extension, size, s3_key,
	upload_id, status, file_url, metadata, created_at, updated_at`

func (t *tx) InsertFile(ctx context.Context, f *upload.File) error {
	meta, err := json.Marshal(f.Metadata)
	if err != nil {
		return fmt.Errorf("postgres: insert file %s: metadata: %w", f.ID, err)
	}
	_, err = t.tx.Exec(ctx, `INSERT INTO upload_session_files (`+fileColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		f.ID, f.SessionID, f.Category, f.Name, f.MimeType, f.Ext, f.Size, f.S3Key,
		nullIfEmpty(f.UploadID), f.Status, nullIfEmpty(f.FileURL), meta,
		utc(f.CreatedAt), utc(f.UpdatedAt))
	if err != nil {
		return fail("insert file", f.ID, err)
	}
	return nil
}

func (t *tx) GetFile(ctx context.Context, sessionID, fileID string, forUpdate bool) (*upload.File, error) {
	if !isUUID(sessionID) || !isUUID(fileID) {
		return nil, notFound("get file", fileID)
	}
	rows, err := t.tx.Query(ctx, `SELECT `+fileColumns+` FROM upload_session_files
		WHERE id = $1 AND session_id = $2`+forUpdateClause(forUpdate), fileID, sessionID)
	if err != nil {
		return nil, fail("get file", fileID, err)
	}
	f, err := pgx.CollectExactlyOneRow(rows, scanFile)
	if err != nil {
		return nil, fail("get file", fileID, err)
	}
	return &f, nil
}

// ListFiles returns the session's files in registration order.
func (t *tx) ListFiles(ctx context.Context, sessionID string) ([]upload.File, error) {
	if !isUUID(sessionID) {
		return []upload.File{}, nil
	}
	rows, err := t.tx.Query(ctx, `SELECT `+fileColumns+` FROM upload_session_files
		WHERE session_id = $1 ORDER BY created_at, seq`, sessionID)
	if err != nil {
		return nil, fail("list files of session", sessionID, err)
	}
	files, err := pgx.CollectRows(rows, scanFile)
	if err != nil {
		return nil, fail("list files of session", sessionID, err)
	}
	return files, nil
}

func scanFile(row pgx.CollectableRow) (upload.File, error) {
	var (
		f                 upload.File
		uploadID, fileURL *string
		meta              []byte
	)
	err := row.Scan(&f.ID, &f.SessionID, &f.Category, &f.Name, &f.MimeType, &f.Ext, &f.Size,
		&f.S3Key, &uploadID, &f.Status, &fileURL, &meta, &f.CreatedAt, &f.UpdatedAt)
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(meta, &f.Metadata); err != nil {
		return f, fmt.Errorf("metadata: %w", err)
	}
	f.UploadID, f.FileURL = deref(uploadID), deref(fileURL)
	f.CreatedAt, f.UpdatedAt = utc(f.CreatedAt), utc(f.UpdatedAt)
	return f, nil
}

// UpdateFile writes every column of the file but its id, session and
// creation time.
func (t *tx) UpdateFile(ctx context.Context, f *upload.File) error {
	meta, err := json.Marshal(f.Metadata)
	if err != nil {
		return fmt.Errorf("postgres: update file %s: metadata: %w", f.ID, err)
	}
	tag, err := t.tx.Exec(ctx, `UPDATE upload_session_files SET category = $3, name = $4,
		mime_type = $5, extension = $6, size = $7, s3_key = $8, upload_id = $9, status = $10,
		file_url = $11, metadata = $12, updated_at = $13
		WHERE id = $1 AND session_id = $2`,
		f.ID, f.SessionID, f.Category, f.Name, f.MimeType, f.Ext, f.Size, f.S3Key,
		nullIfEmpty(f.UploadID), f.Status, nullIfEmpty(f.FileURL), meta, utc(f.UpdatedAt))
	if err != nil {
		return fail("update file", f.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("update file", f.ID)
	}
	return nil
}

// UpdateFileStatuses writes the status, file URL and update time of each
// of files, all of sessionID, in one statement.
func (t *tx) UpdateFileStatuses(ctx context.Context, sessionID string, files []upload.File) error {
	if len(files) == 0 {
		return nil
	}
	n := len(files)
	ids, statuses, urls, updated := make([]string, n), make([]string, n), make([]*string, n), make([]time.Time, n)
	for i, f := range files {
		ids[i], statuses[i], urls[i], updated[i] = f.ID, string(f.Status), nullIfEmpty(f.FileURL), utc(f.UpdatedAt)
	}
	tag, err := t.tx.Exec(ctx, `UPDATE upload_session_files AS f
		SET status = u.status, file_url = u.file_url, updated_at = u.updated_at
		FROM unnest($2::uuid[], $3::text[], $4::text[], $5::timestamptz[]) AS u(id, status, file_url, updated_at)
		WHERE f.id = u.id AND f.session_id = $1`,
		sessionID, ids, statuses, urls, updated)
	if err != nil {
		return fail("update file statuses of session", sessionID, err)
	}
	if tag.RowsAffected() != int64(n) {
		return notFound("update file statuses of session", sessionID)
	}
	return nil
}

// DeleteFile removes a file; its parts go with it (ON DELETE CASCADE).
func (t *tx) DeleteFile(ctx context.Context, sessionID, fileID string) error {
	if !isUUID(sessionID) || !isUUID(fileID) {
		return notFound("delete file", fileID)
	}
	tag, err := t.tx.Exec(ctx, `DELETE FROM upload_session_files WHERE id = $1 AND session_id = $2`, fileID, sessionID)
	if err != nil {
		return fail("delete file", fileID, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("delete file", fileID)
	}
	return nil
}

// Parts.

// UpsertPart records a part; a part uploaded again replaces the first
// one's etag, size and MD5, and keeps its creation time.
func (t *tx) UpsertPart(ctx context.Context, p *upload.Part) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO upload_session_parts
			(file_id, part_number, etag, size, md5, status, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, 'uploaded', $6, $7)
		ON CONFLICT (file_id, part_number) DO UPDATE SET etag = excluded.etag,
			size = excluded.size, md5 = excluded.md5, status = excluded.status,
			updated_at = excluded.updated_at`,
		p.FileID, p.PartNumber, p.ETag, p.Size, nullIfEmpty(p.MD5),
		utc(p.CreatedAt), utc(p.UpdatedAt))
	if err != nil {
		return fail("upsert part", fmt.Sprintf("%s/%d", p.FileID, p.PartNumber), err)
	}
	return nil
}

// UpsertParts records parts in one statement, as UpsertPart does each.
func (t *tx) UpsertParts(ctx context.Context, parts []upload.Part) error {
	if len(parts) == 0 {
		return nil
	}
	n := len(parts)
	fileIDs, numbers, etags := make([]string, n), make([]int32, n), make([]string, n)
	sizes, md5s := make([]int64, n), make([]*string, n)
	created, updated := make([]time.Time, n), make([]time.Time, n)
	for i, p := range parts {
		fileIDs[i], numbers[i], etags[i] = p.FileID, int32(p.PartNumber), p.ETag
		sizes[i], md5s[i] = p.Size, nullIfEmpty(p.MD5)
		created[i], updated[i] = utc(p.CreatedAt), utc(p.UpdatedAt)
	}
	_, err := t.tx.Exec(ctx, `INSERT INTO upload_session_parts
			(file_id, part_number, etag, size, md5, status, created_at, updated_at)
		SELECT f, n, e, s, m, 'uploaded', c, u
		FROM unnest($1::uuid[], $2::int[], $3::text[], $4::bigint[], $5::text[],
			$6::timestamptz[], $7::timestamptz[]) AS p(f, n, e, s, m, c, u)
		ON CONFLICT (file_id, part_number) DO UPDATE SET etag = excluded.etag,
			size = excluded.size, md5 = excluded.md5, status = excluded.status,
			updated_at = excluded.updated_at`,
		fileIDs, numbers, etags, sizes, md5s, created, updated)
	if err != nil {
		return fail("upsert parts", fmt.Sprintf("%s (%d parts)", parts[0].FileID, n), err)
	}
	return nil
}

const partColumns = `file_id, part_number, etag, size, md5, created_at, updated_at`

func scanPart(row pgx.CollectableRow) (upload.Part, error) {
	var (
		p   upload.Part
		md5 *string
	)
	err := row.Scan(&p.FileID, &p.PartNumber, &p.ETag, &p.Size, &md5, &p.CreatedAt, &p.UpdatedAt)
	p.MD5, p.CreatedAt, p.UpdatedAt = deref(md5), utc(p.CreatedAt), utc(p.UpdatedAt)
	return p, err
}

func (t *tx) ListParts(ctx context.Context, fileID string) ([]upload.Part, error) {
	if !isUUID(fileID) {
		return []upload.Part{}, nil
	}
	rows, err := t.tx.Query(ctx, `SELECT `+partColumns+` FROM upload_session_parts
		WHERE file_id = $1 ORDER BY part_number`, fileID)
	if err != nil {
		return nil, fail("list parts of file", fileID, err)
	}
	parts, err := pgx.CollectRows(rows, scanPart)
	if err != nil {
		return nil, fail("list parts of file", fileID, err)
	}
	return parts, nil
}

func (t *tx) ListSessionParts(ctx context.Context, sessionID string) (map[string][]upload.Part, error) {
	byFile := map[string][]upload.Part{}
	if !isUUID(sessionID) {
		return byFile, nil
	}
	rows, err := t.tx.Query(ctx, `SELECT `+partColumns+` FROM upload_session_parts
		WHERE file_id IN (SELECT id FROM upload_session_files WHERE session_id = $1)
		ORDER BY file_id, part_number`, sessionID)
	if err != nil {
		return nil, fail("list parts of session", sessionID, err)
	}
	parts, err := pgx.CollectRows(rows, scanPart)
	if err != nil {
		return nil, fail("list parts of session", sessionID, err)
	}
	for _, p := range parts {
		byFile[p.FileID] = append(byFile[p.FileID], p)
	}
	return byFile, nil
}

// MOCs.

const mocColumns = `id, user_id, upload_session_id, title, slug, description, type, status,
	tags, theme, thumbnail_url, thumbnail_status, finalized_at, created_at, updated_at`

// InsertMoc inserts the MOC's row.
func (t *tx) InsertMoc(ctx context.Context, m *upload.Moc) error {
	tags := m.Tags
	if tags == nil {
		tags = []string{}
	}
	tagsJSON, err := json.Marshal(tags)
	if err != nil {
		return fmt.Errorf("postgres: insert moc %s: tags: %w", m.ID, err)
	}
	_, err = t.tx.Exec(ctx, `INSERT INTO moc_instructions (`+mocColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		m.ID, m.UserID, nullIfEmpty(m.UploadSessionID), m.Title, m.Slug, m.Description, m.Type,
		m.Status, tagsJSON, m.Theme, m.ThumbnailURL, m.ThumbnailStatus, utcPtr(m.FinalizedAt),
		utc(m.CreatedAt), utc(m.UpdatedAt))
	if err != nil {
		return fail("insert moc", m.ID, err)
	}
	return nil
}

// InsertMocFiles inserts the rows of m.Files in one statement; a file's
// position is its index in m.Files.
func (t *tx) InsertMocFiles(ctx context.Context, m *upload.Moc) error {
	if len(m.Files) == 0 {
		return nil
	}
	n := len(m.Files)
	ids, types, urls, keys := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	names, mimes, sizes, created := make([]string, n), make([]string, n), make([]int64, n), make([]time.Time, n)
	for i, f := range m.Files {
		ids[i], types[i], urls[i], keys[i] = f.ID, f.FileType, f.FileURL, f.S3Key
		names[i], mimes[i], sizes[i], created[i] = f.OriginalFilename, f.MimeType, f.Size, utc(f.CreatedAt)
	}
	_, err := t.tx.Exec(ctx, `INSERT INTO moc_files (id, moc_id, file_type, file_url,
			s3_key, original_filename, mime_type, size, position, created_at, updated_at)
		SELECT id, $1, file_type, file_url, s3_key, original_filename, mime_type, size,
			position - 1, created_at, created_at
		FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
			$8::bigint[], $9::timestamptz[]) WITH ORDINALITY
			AS f(id, file_type, file_url, s3_key, original_filename, mime_type, size, created_at, position)`,
		m.ID, ids, types, urls, keys, names, mimes, sizes, created)
	if err != nil {
		return fail("insert moc files", m.ID, err)
	}
	return nil
}

func (t *tx) GetMoc(ctx context.Context, id, userID string) (*upload.Moc, error) {
	if !isUUID(id) {
		return nil, notFound("get moc", id)
	}
	return t.getMoc(ctx, "get moc", id, `id = $1 AND user_id = $2`, id, userID)
}

func (t *tx) GetMocBySession(ctx context.Context, sessionID string) (*upload.Moc, error) {
	if !isUUID(sessionID) {
		return nil, notFound("get moc of session", sessionID)
	}
	return t.getMoc(ctx, "get moc of session", sessionID, `upload_session_id = $1`, sessionID)
}

// getMoc loads the MOC matching where, then its files in their order.
func (t *tx) getMoc(ctx context.Context, op, id, where string, args ...any) (*upload.Moc, error) {
	var (
		m         upload.Moc
		sessionID *string
		tags      []byte
	)
	err := t.tx.QueryRow(ctx, `SELECT `+mocColumns+` FROM moc_instructions WHERE `+where,
		args...).Scan(&m.ID, &m.UserID, &sessionID, &m.Title, &m.Slug, &m.Description, &m.Type,
		&m.Status, &tags, &m.Theme, &m.ThumbnailURL, &m.ThumbnailStatus, &m.FinalizedAt,
		&m.CreatedAt, &m.UpdatedAt)
	if err != nil {
		return nil, fail(op, id, err)
	}
	if err := json.Unmarshal(tags, &m.Tags); err != nil {
		return nil, fmt.Errorf("postgres: %s %s: tags: %w", op, id, err)
	}
	if m.Tags == nil {
		m.Tags = []string{} // a null in jsonb
	}
	m.UploadSessionID = deref(sessionID)
	m.FinalizedAt, m.CreatedAt, m.UpdatedAt = utcPtr(m.FinalizedAt), utc(m.CreatedAt), utc(m.UpdatedAt)

	rows, err := t.tx.Query(ctx, `SELECT id, moc_id, file_type, file_url, s3_key,
		original_filename, mime_type, size, created_at
		FROM moc_files WHERE moc_id = $1 ORDER BY position, created_at, id`, m.ID)
	if err != nil {
		return nil, fail(op+" files", id, err)
	}
	m.Files, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (upload.MocFile, error) {
		var f upload.MocFile
		err := row.Scan(&f.ID, &f.MocID, &f.FileType, &f.FileURL, &f.S3Key,
			&f.OriginalFilename, &f.MimeType, &f.Size, &f.CreatedAt)
		f.Category, f.CreatedAt = upload.CategoryOfFileType(f.FileType), utc(f.CreatedAt)
		return f, err
	})
	if err != nil {
		return nil, fail(op+" files", id, err)
	}
	return &m, nil
}

func (t *tx) MocTitleExists(ctx context.Context, userID, title string) (bool, error) {
	var exists bool
	err := t.tx.QueryRow(ctx, `SELECT EXISTS (
		SELECT 1 FROM moc_instructions WHERE user_id = $1 AND title = $2)`,
		userID, title).Scan(&exists)
	if err != nil {
		return false, fail("find moc title of", userID, err)
	}
	return exists, nil
}

// SlugsWithPrefix returns the user's slugs that start with prefix.
func (t *tx) SlugsWithPrefix(ctx context.Context, userID, prefix string) ([]string, error) {
	rows, err := t.tx.Query(ctx, `SELECT slug FROM moc_instructions
		WHERE user_id = $1 AND slug LIKE $2 ESCAPE '\'
		ORDER BY slug`, userID, likeEscape(prefix)+"%")
	if err != nil {
		return nil, fail("list slugs of", userID, err)
	}
	slugs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fail("list slugs of", userID, err)
	}
	return slugs, nil
}

// likeEscape escapes LIKE's metacharacters (and its escape character) so s
// matches only itself.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

func likeEscape(s string) string { return likeEscaper.Replace(s) }
