package devstack

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// The sample rows of seed.sql.
const (
	SeedUserID      = "dev-user-00000000-0000-0000-0000-000000000001"
	SeedSessionID   = "5eed0000-0000-4000-8000-000000000001"
	SeedImageFileID = "5eed0000-0000-4000-8000-000000000002"
	SeedPDFFileID   = "5eed0000-0000-4000-8000-000000000003"
)

var (
	//go:embed seed.sql
	seedSQL string
	//go:embed seed-instructions.pdf
	seedPDF []byte
)

// Seed loads seed.sql (idempotent: it resets the sample rows), opens the
// sample image's multipart upload in S3 so the sample events can upload its
// part, and uploads and completes the sample PDF so the sample Finalize
// event can succeed.
func (s *Stack) Seed(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.Config.DatabaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, seedSQL); err != nil {
		return fmt.Errorf("seed.sql: %w", err)
	}
	blob := s.App.Service.Blob
	for _, id := range []string{SeedImageFileID, SeedPDFFileID} {
		var key, mime string
		if err := conn.QueryRow(ctx, `SELECT s3_key, mime_type FROM upload_session_files WHERE id = $1`, id).Scan(&key, &mime); err != nil {
			return fmt.Errorf("seed: file %s: %w", id, err)
		}
		uploadID, err := blob.CreateMultipartUpload(ctx, key, mime)
		if err != nil {
			return fmt.Errorf("seed: open the multipart upload of %s: %w", key, err)
		}
		if id == SeedImageFileID {
			_, err = conn.Exec(ctx, `UPDATE upload_session_files SET upload_id = $2 WHERE id = $1`, id, uploadID)
			if err != nil {
				return err
			}
			continue
		}
		etag, err := blob.UploadPart(ctx, key, uploadID, 1, bytes.NewReader(seedPDF), int64(len(seedPDF)), "")
		if err != nil {
			return fmt.Errorf("seed: upload %s: %w", key, err)
		}
		if err := blob.CompleteMultipartUpload(ctx, key, uploadID, []upload.CompletedPart{{PartNumber: 1, ETag: etag}}); err != nil {
			return fmt.Errorf("seed: complete %s: %w", key, err)
		}
		_, err = conn.Exec(ctx, `
			WITH f AS (UPDATE upload_session_files SET upload_id = $2, status = 'completed', file_url = $3 WHERE id = $1 RETURNING id)
			INSERT INTO upload_session_parts (file_id, part_number, etag, size) SELECT id, 1, $4, $5 FROM f`,
			id, uploadID, blob.ObjectURL(key), etag, len(seedPDF))
		if err != nil {
			return err
		}
	}
	return nil
}
