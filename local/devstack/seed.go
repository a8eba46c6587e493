package devstack

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"image"
	"image/color"
	"image/png"

	"github.com/jackc/pgx/v5"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// The sample rows of seed.sql.
const (
	SeedUserID      = "dev-user-00000000-0000-0000-0000-000000000001"
	SeedSessionID   = "5eed0000-0000-4000-8000-000000000001"
	SeedImageFileID = "5eed0000-0000-4000-8000-000000000002"
	SeedPDFFileID   = "5eed0000-0000-4000-8000-000000000003"
	// The seed story's rows: a session finalized into SeedMocID, with a
	// completed image (a real 640x480 PNG) and PDF, for thumbnail testing.
	SeedThumbSessionID = "5eed0000-0000-4000-8000-000000000004"
	SeedThumbImageID   = "5eed0000-0000-4000-8000-000000000005"
	SeedThumbPDFID     = "5eed0000-0000-4000-8000-000000000006"
	SeedMocID          = "5eed0000-0000-4000-8000-0000000000a1"
	// Sessions of one sample event each: RegisterFile adds a file to the
	// first, AbortSession abandons the second.
	SeedRegisterSessionID = "5eed0000-0000-4000-8000-000000000007"
	SeedAbortSessionID    = "5eed0000-0000-4000-8000-0000000000b1"
)

var (
	//go:embed seed.sql
	seedSQL string
	//go:embed seed-instructions.pdf
	seedPDF []byte
)

// Seed loads seed.sql (idempotent: it resets the sample rows), opens the
// sample image's multipart upload in S3 so the sample events can upload its
// part, uploads and completes the sample PDF so the sample Finalize event
// can succeed, and uploads the thumbnail session's image and PDF and makes
// its MOC's files, as finalize would have.
func (s *Stack) Seed(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.Config.DatabaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, seedSQL); err != nil {
		return fmt.Errorf("seed.sql: %w", err)
	}
	photo, err := seedPhoto()
	if err != nil {
		return err
	}
	// nil: open the multipart upload only, for the sample events to fill.
	uploads := []struct {
		id    string
		bytes []byte
	}{{SeedImageFileID, nil}, {SeedPDFFileID, seedPDF}, {SeedThumbImageID, photo}, {SeedThumbPDFID, seedPDF}}
	blob := s.App.Service.Blob
	for _, u := range uploads {
		var key, mime string
		if err := conn.QueryRow(ctx, `SELECT s3_key, mime_type FROM upload_session_files WHERE id = $1`, u.id).Scan(&key, &mime); err != nil {
			return fmt.Errorf("seed: file %s: %w", u.id, err)
		}
		uploadID, err := blob.CreateMultipartUpload(ctx, key, mime)
		if err != nil {
			return fmt.Errorf("seed: open the multipart upload of %s: %w", key, err)
		}
		if u.bytes == nil {
			_, err = conn.Exec(ctx, `UPDATE upload_session_files SET upload_id = $2 WHERE id = $1`, u.id, uploadID)
			if err != nil {
				return err
			}
			continue
		}
		etag, err := blob.UploadPart(ctx, key, uploadID, 1, bytes.NewReader(u.bytes), int64(len(u.bytes)), "")
		if err != nil {
			return fmt.Errorf("seed: upload %s: %w", key, err)
		}
		if err := blob.CompleteMultipartUpload(ctx, key, uploadID, []upload.CompletedPart{{PartNumber: 1, ETag: etag}}); err != nil {
			return fmt.Errorf("seed: complete %s: %w", key, err)
		}
		_, err = conn.Exec(ctx, `
			WITH f AS (UPDATE upload_session_files SET upload_id = $2, status = 'completed', file_url = $3, size = $5
				WHERE id = $1 RETURNING id)
			INSERT INTO upload_session_parts (file_id, part_number, etag, size) SELECT id, 1, $4, $5 FROM f`,
			u.id, uploadID, blob.ObjectURL(key), etag, len(u.bytes))
		if err != nil {
			return err
		}
	}
	// The MOC's files, from its session's, as finalize makes them.
	_, err = conn.Exec(ctx, `
		INSERT INTO moc_files (id, moc_id, file_type, file_url, s3_key, original_filename, mime_type, size, position)
		SELECT id, $2, CASE category WHEN 'image' THEN 'gallery-image' ELSE category END,
		       file_url, s3_key, name, mime_type, size, row_number() OVER (ORDER BY seq) - 1
		  FROM upload_session_files WHERE session_id = $1`, SeedThumbSessionID, SeedMocID)
	if err != nil {
		return fmt.Errorf("seed: the files of MOC %s: %w", SeedMocID, err)
	}
	return nil
}

// seedPhoto draws the thumbnail session's image: a 640x480 RGB PNG (a
// gradient with a dark band), large enough that the thumbnail (300x300) is
// a real reduction of it.
func seedPhoto() ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, 640, 480))
	for y := 0; y < 480; y++ {
		for x := 0; x < 640; x++ {
			c := color.RGBA{R: uint8(x * 255 / 639), G: uint8(y * 255 / 479), B: 160, A: 255}
			if y >= 200 && y < 280 {
				c = color.RGBA{R: 40, G: 40, B: 40, A: 255}
			}
			img.Set(x, y, c)
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return nil, fmt.Errorf("seed: draw the image: %w", err)
	}
	return b.Bytes(), nil
}
