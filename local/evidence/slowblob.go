package evidence

import (
	"context"
	"io"
	"time"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// slowBlob adds a fixed delay to every S3 request finalize can make, as a
// deployed S3's round trip would (the local server answers in about a
// millisecond, which would hide what the concurrency buys).
type slowBlob struct {
	upload.Blob
	delay time.Duration
}

func (s slowBlob) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(s.delay):
		return nil
	}
}

func (s slowBlob) ListParts(ctx context.Context, key, id string) ([]upload.StoredPart, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.Blob.ListParts(ctx, key, id)
}

func (s slowBlob) CompleteMultipartUpload(ctx context.Context, key, id string, parts []upload.CompletedPart) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.Blob.CompleteMultipartUpload(ctx, key, id, parts)
}

func (s slowBlob) AbortMultipartUpload(ctx context.Context, key, id string) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.Blob.AbortMultipartUpload(ctx, key, id)
}

func (s slowBlob) Head(ctx context.Context, key string) (int64, error) {
	if err := s.wait(ctx); err != nil {
		return 0, err
	}
	return s.Blob.Head(ctx, key)
}

func (s slowBlob) ReadHead(ctx context.Context, key string, n int64) ([]byte, int64, error) {
	if err := s.wait(ctx); err != nil {
		return nil, 0, err
	}
	return s.Blob.ReadHead(ctx, key, n)
}

func (s slowBlob) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.Blob.Open(ctx, key)
}

func (s slowBlob) DeleteObject(ctx context.Context, key string) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.Blob.DeleteObject(ctx, key)
}
