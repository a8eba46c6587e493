// Package slowblob delays S3 requests by a fixed time, as a deployed S3's
// round trip would: the local server answers in about a millisecond, which
// would hide what a finalize's concurrency buys. The finalize benchmarks of
// local/e2e and the evidence document's sequential vs parallel finalize
// (local/evidence) measure against it.
package slowblob

import (
	"context"
	"io"
	"time"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// Blob is an upload.Blob whose requests a finalize can make (and
// DeleteObject) first wait Delay, or until their context ends. The others
// (uploads, presigning) go straight through.
type Blob struct {
	upload.Blob
	Delay time.Duration
}

func (s Blob) wait(ctx context.Context) error {
	t := time.NewTimer(s.Delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (s Blob) ListParts(ctx context.Context, key, id string) ([]upload.StoredPart, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.Blob.ListParts(ctx, key, id)
}

func (s Blob) CompleteMultipartUpload(ctx context.Context, key, id string, parts []upload.CompletedPart) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.Blob.CompleteMultipartUpload(ctx, key, id, parts)
}

func (s Blob) AbortMultipartUpload(ctx context.Context, key, id string) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.Blob.AbortMultipartUpload(ctx, key, id)
}

func (s Blob) Head(ctx context.Context, key string) (int64, error) {
	if err := s.wait(ctx); err != nil {
		return 0, err
	}
	return s.Blob.Head(ctx, key)
}

func (s Blob) ReadHead(ctx context.Context, key string, n int64) ([]byte, int64, error) {
	if err := s.wait(ctx); err != nil {
		return nil, 0, err
	}
	return s.Blob.ReadHead(ctx, key, n)
}

func (s Blob) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.Blob.Open(ctx, key)
}

func (s Blob) DeleteObject(ctx context.Context, key string) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.Blob.DeleteObject(ctx, key)
}
