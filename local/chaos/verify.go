package chaos

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Orphan queries: rows that no acknowledged or unfinished upload can
// explain. Each returns the offending ids; the schema's foreign keys make
// the first four impossible today, and the queries keep it so should a
// key ever be dropped or a write bypass it.
var orphanQueries = []struct{ Name, SQL string }{
	{"parts without their file",
		`SELECT p.file_id::text || '#' || p.part_number FROM upload_session_parts p
		 LEFT JOIN upload_session_files f ON f.id = p.file_id WHERE f.id IS NULL`},
	{"files without their session",
		`SELECT f.id::text FROM upload_session_files f
		 LEFT JOIN upload_sessions s ON s.id = f.session_id WHERE s.id IS NULL`},
	{"MOC files without their MOC",
		`SELECT mf.id::text FROM moc_files mf
		 LEFT JOIN moc_instructions m ON m.id = mf.moc_id WHERE m.id IS NULL`},
	{"outbox jobs without their MOC",
		`SELECT o.id::text FROM outbox o
		 LEFT JOIN moc_instructions m ON m.id = o.moc_id WHERE m.id IS NULL`},
	{"sessions completed without a MOC",
		`SELECT s.id::text FROM upload_sessions s
		 WHERE s.status = 'completed'
		   AND NOT EXISTS (SELECT 1 FROM moc_instructions m WHERE m.id = s.moc_instruction_id)`},
	{"MOCs whose session does not point back to them",
		`SELECT m.id::text FROM moc_instructions m JOIN upload_sessions s ON s.id = m.upload_session_id
		 WHERE s.moc_instruction_id IS DISTINCT FROM m.id OR s.status <> 'completed'`},
	{"MOCs without files",
		`SELECT m.id::text FROM moc_instructions m
		 WHERE NOT EXISTS (SELECT 1 FROM moc_files mf WHERE mf.moc_id = m.id)`},
	{"MOC files of another user's or session's objects",
		`SELECT mf.id::text FROM moc_files mf JOIN moc_instructions m ON m.id = mf.moc_id
		 WHERE mf.s3_key NOT LIKE '%/' || m.user_id || '/' || m.upload_session_id::text || '/%'`},
}

// Orphans runs the orphan queries; the map holds the ids each found.
func Orphans(ctx context.Context, db *pgxpool.Pool) (map[string][]string, error) {
	out := map[string][]string{}
	for _, q := range orphanQueries {
		rows, err := db.Query(ctx, q.SQL)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", q.Name, err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", q.Name, err)
		}
		if len(ids) > 0 {
			out[q.Name] = ids
		}
	}
	return out, nil
}

// MOC files whose object is missing are orphans too, of another kind: the
// row points at nothing. missingObjects heads every MOC file's object.
func missingObjects(ctx context.Context, db *pgxpool.Pool, s3c *s3.Client, bucket string) ([]string, int, error) {
	rows, err := db.Query(ctx, `SELECT s3_key, size FROM moc_files`)
	if err != nil {
		return nil, 0, err
	}
	type obj struct {
		Key  string
		Size int64
	}
	objs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[obj])
	if err != nil {
		return nil, 0, err
	}
	var missing []string
	for _, o := range objs {
		h, err := s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(o.Key)})
		if err != nil {
			missing = append(missing, o.Key+": "+err.Error())
		} else if aws.ToInt64(h.ContentLength) != o.Size {
			missing = append(missing, fmt.Sprintf("%s: %d bytes, the row says %d", o.Key, aws.ToInt64(h.ContentLength), o.Size))
		}
	}
	return missing, len(objs), nil
}

// checkMoc reads an acknowledged MOC's rows and each file's object straight
// from S3 (not through the proxy) and compares the bytes.
func checkMoc(ctx context.Context, db *pgxpool.Pool, s3c *s3.Client, bucket string, m MocAck) error {
	var user, session string
	err := db.QueryRow(ctx, `SELECT user_id, coalesce(upload_session_id::text, '') FROM moc_instructions WHERE id = $1`, m.ID).Scan(&user, &session)
	if err != nil {
		return fmt.Errorf("MOC %s (%q): %w", m.ID, m.Title, err)
	}
	if user != m.User || session != m.Session {
		return fmt.Errorf("MOC %s belongs to %s/%s, acknowledged to %s/%s", m.ID, user, session, m.User, m.Session)
	}
	rows, err := db.Query(ctx, `SELECT original_filename, s3_key FROM moc_files WHERE moc_id = $1`, m.ID)
	if err != nil {
		return err
	}
	keys := map[string]string{}
	var name, key string
	if _, err := pgx.ForEachRow(rows, []any{&name, &key}, func() error { keys[name] = key; return nil }); err != nil {
		return err
	}
	if len(keys) != len(m.Files) {
		return fmt.Errorf("MOC %s has files %v, acknowledged with %d", m.ID, keys, len(m.Files))
	}
	for name, want := range m.Files {
		key, ok := keys[name]
		if !ok {
			return fmt.Errorf("MOC %s has no file %q", m.ID, name)
		}
		got, err := getObject(ctx, s3c, bucket, key)
		if err != nil {
			return fmt.Errorf("MOC %s file %q: %w", m.ID, name, err)
		}
		if d := digest(got); d.Size != want.Size || d.SHA256 != want.SHA256 {
			return fmt.Errorf("MOC %s file %q: S3 holds %d bytes that differ from the %d sent", m.ID, name, len(got), want.Size)
		}
	}
	return nil
}

// checkFileAcks finds the acknowledged parts (or whole bytes) of one file
// in S3: in the file's object once the file is completed, else among the
// multipart upload's parts with the ETag of the bytes sent. The object is
// read once for all of them.
func checkFileAcks(ctx context.Context, db *pgxpool.Pool, s3c *s3.Client, bucket string, acks []Ack) []error {
	file, owner := acks[0].File, acks[0].User
	var key, status string
	var uploadID *string
	err := db.QueryRow(ctx, `SELECT s3_key, status, upload_id FROM upload_session_files WHERE id = $1`, file).Scan(&key, &status, &uploadID)
	if err != nil {
		return []error{fmt.Errorf("file %s of %s: %w", file, owner, err)}
	}
	obj, objErr := getObject(ctx, s3c, bucket, key)
	var stored map[int]string // part number → ETag, when there is no object
	var errs []error
	for _, a := range acks {
		what := fmt.Sprintf("%s's file %s part %d", a.User, a.File, a.Part)
		switch {
		case objErr == nil:
			start, end := max(a.Part-1, 0)*partSize, len(obj)
			if a.Part > 0 {
				end = min(start+a.Sent.Size, len(obj))
			}
			if d := digest(obj[min(start, end):end]); d.Size != a.Sent.Size || d.SHA256 != a.Sent.SHA256 {
				errs = append(errs, fmt.Errorf("%s: the object holds other bytes there (%d of the %d sent)", what, d.Size, a.Sent.Size))
			}
		case a.Part == 0:
			errs = append(errs, fmt.Errorf("%s (sent whole): %w", what, objErr))
		case uploadID == nil:
			errs = append(errs, fmt.Errorf("%s: no object (%v) and no multipart upload (file %s)", what, objErr, status))
		default:
			if stored == nil {
				if stored, err = listParts(ctx, s3c, bucket, key, *uploadID); err != nil {
					return append(errs, fmt.Errorf("%s: no object (%v), list parts: %w", what, objErr, err))
				}
			}
			etag, ok := stored[a.Part]
			if want := hex.EncodeToString(a.Sent.MD5[:]); !ok {
				errs = append(errs, fmt.Errorf("%s: neither in the object (%v) nor among the upload's parts (file %s)", what, objErr, status))
			} else if etag != want {
				errs = append(errs, fmt.Errorf("%s: S3 holds other bytes (ETag %s, sent %s)", what, etag, want))
			}
		}
	}
	return errs
}

// listParts is every part S3 holds of an upload: number → ETag (unquoted).
func listParts(ctx context.Context, s3c *s3.Client, bucket, key, uploadID string) (map[int]string, error) {
	parts := map[int]string{}
	p := s3.NewListPartsPaginator(s3c, &s3.ListPartsInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: aws.String(uploadID)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, part := range page.Parts {
			parts[int(aws.ToInt32(part.PartNumber))] = strings.Trim(aws.ToString(part.ETag), `"`)
		}
	}
	return parts, nil
}

func getObject(ctx context.Context, s3c *s3.Client, bucket, key string) ([]byte, error) {
	out, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, errors.Join(errors.New("read "+key), err)
	}
	return b, nil
}
