package e2e

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// BenchmarkFinalize finalizes a session of one PDF and ten images (each
// completed and checked by finalize), one file at a time (the baseline)
// and eight at a time (the service's setting). Local S3 answers in well
// under a millisecond; the s3rtt=20ms runs add 20 ms to every S3 call, about
// what a Lambda sees from S3, to show what the parallelism is for.
func BenchmarkFinalize(b *testing.B) {
	sizes := []int{1 * mib}
	for range 10 {
		sizes = append(sizes, 256<<10)
	}
	for _, bc := range []struct {
		rtt     time.Duration
		workers int
	}{{0, 1}, {0, 8}, {20 * time.Millisecond, 1}, {20 * time.Millisecond, 8}} {
		b.Run(fmt.Sprintf("s3rtt=%s/workers=%d", bc.rtt, bc.workers), func(b *testing.B) {
			svc := *st.App.Service
			svc.FinalizeConcurrency = bc.workers
			if bc.rtt > 0 {
				svc.Blob = slowBlob{svc.Blob, bc.rtt}
			}
			for b.Loop() {
				b.StopTimer()
				user := "bench-" + uuid.NewString()
				sessionID, _ := benchSession(b, user, sizes)
				b.StartTimer()
				if _, _, err := svc.Finalize(context.Background(), user, upload.FinalizeRequest{SessionID: sessionID, Title: "Bench"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// slowBlob adds a fixed delay to the S3 calls finalize makes.
type slowBlob struct {
	upload.Blob
	rtt time.Duration
}

func (s slowBlob) CompleteMultipartUpload(ctx context.Context, key, id string, parts []upload.CompletedPart) error {
	time.Sleep(s.rtt)
	return s.Blob.CompleteMultipartUpload(ctx, key, id, parts)
}

func (s slowBlob) Head(ctx context.Context, key string) (int64, error) {
	time.Sleep(s.rtt)
	return s.Blob.Head(ctx, key)
}

func (s slowBlob) ReadRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	time.Sleep(s.rtt)
	return s.Blob.ReadRange(ctx, key, off, n)
}

// benchSession makes a session whose files (a PDF, then PNG-headed images)
// are fully uploaded but not completed, through the service.
func benchSession(b *testing.B, user string, sizes []int) (string, []string) {
	b.Helper()
	ctx := context.Background()
	svc := st.App.Service
	specs := []upload.FileSpec{}
	for i, n := range sizes {
		spec := upload.FileSpec{Category: upload.CategoryInstruction, Name: fmt.Sprintf("f%d.pdf", i), Size: int64(n), Type: "application/pdf", Ext: "pdf"}
		if i > 0 {
			spec = upload.FileSpec{Category: upload.CategoryImage, Name: fmt.Sprintf("f%d.png", i), Size: int64(n), Type: "image/png", Ext: "png"}
		}
		specs = append(specs, spec)
	}
	sess, err := svc.CreateSession(ctx, user, specs)
	if err != nil {
		b.Fatal(err)
	}
	var ids []string
	for _, spec := range specs {
		reg, err := svc.RegisterFile(ctx, user, sess.ID, spec, nil)
		if err != nil {
			b.Fatal(err)
		}
		f := reg.File
		data := pdfBytes(int(spec.Size))
		if spec.Category == upload.CategoryImage {
			copy(data, "\x89PNG\r\n\x1a\n")
		}
		for n, off := 1, 0; off < len(data); n, off = n+1, off+5*mib {
			end := min(off+5*mib, len(data))
			if _, err := svc.UploadPart(ctx, user, sess.ID, f.ID, n, bytes.NewReader(data[off:end]), int64(end-off), ""); err != nil {
				b.Fatal(err)
			}
		}
		ids = append(ids, f.ID)
	}
	return sess.ID, ids
}
