package e2e

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mocbuilders/moc-upload/local/slowblob"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// BenchmarkFinalize finalizes a session of 20 files (a 1 MiB PDF and 19
// PNG-headed images of 256 KiB) with 50 ms added to every S3 request
// (slowblob.Blob), against the local stack's database. Variants, under
// …/round=N (see -bench.rounds):
//
//   - mode=baseline: not a finalize, the cost it is measured against: a
//     HEAD and a GET of the first bytes of each file, one file after the
//     other (20 × 2 × 50 ms);
//   - mode=sequential: finalize with FINALIZE_CONCURRENCY=1;
//   - mode=parallel: finalize as configured by default (32 at once).
//
// files=completed: each file was completed (POST …/complete) before the
// finalize, so finalize only checks it; files=uploaded: its part is in S3
// but the upload is not completed, so finalize asks S3 for the parts and
// completes it first.
func BenchmarkFinalize(b *testing.B) {
	const rtt = 50 * time.Millisecond
	sizes := []int{1 * mib}
	for range 19 {
		sizes = append(sizes, 256<<10)
	}
	svc := *st.App.Service
	svc.Limits.ImageMaxCount = len(sizes)
	svc.Limits.SessionsPerDay = 1 << 20
	slow := slowblob.Blob{Blob: svc.Blob, Delay: rtt}
	type variant struct {
		mode      string
		completed bool
	}
	variants := []variant{{"baseline", true}}
	for _, completed := range []bool{true, false} {
		for _, mode := range []string{"sequential", "parallel"} {
			variants = append(variants, variant{mode, completed})
		}
	}
	benchRoundsRun(b, func(b *testing.B) {
		for _, v := range variants {
			files := "uploaded"
			if v.completed {
				files = "completed"
			}
			b.Run(fmt.Sprintf("s3rtt=%s/files=%s/mode=%s", rtt, files, v.mode), func(b *testing.B) {
				run := svc
				run.FinalizeConcurrency = map[string]int{"sequential": 1}[v.mode]
				for b.Loop() {
					b.StopTimer()
					user := "bench-" + uuid.NewString()
					sessionID, _ := benchSession(b, &svc, user, sizes, v.completed)
					keys := sessionKeys(b, &svc, user, sessionID)
					b.StartTimer()
					if v.mode == "baseline" {
						headAndGetEach(b, slow, keys)
						continue
					}
					run.Blob = slow
					if _, _, err := run.Finalize(context.Background(), user, upload.FinalizeRequest{SessionID: sessionID, Title: "Bench"}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})
}

// headAndGetEach is the check finalize made before it read a file's size
// from its ranged GET, file after file: a HEAD, then a GET of the first
// bytes.
func headAndGetEach(b *testing.B, blob upload.Blob, keys []string) {
	ctx := context.Background()
	for _, key := range keys {
		if _, err := blob.Head(ctx, key); err != nil {
			b.Fatal(err)
		}
		if _, _, err := blob.ReadHead(ctx, key, upload.MagicBytesLen); err != nil {
			b.Fatal(err)
		}
	}
}

// sessionKeys are the object keys of a session's files.
func sessionKeys(b *testing.B, svc *upload.Service, user, sessionID string) []string {
	v, err := svc.GetSession(context.Background(), user, sessionID)
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, len(v.Files))
	for i, f := range v.Files {
		keys[i] = f.File.S3Key
	}
	return keys
}

// benchSession makes, through svc, a session whose files (a PDF, then
// PNG-headed images) are uploaded, and completed when complete is set. It
// returns the session's and the files' ids.
func benchSession(b *testing.B, svc *upload.Service, user string, sizes []int, complete bool) (string, []string) {
	b.Helper()
	ctx := context.Background()
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
		if complete {
			if _, err := svc.CompleteFile(ctx, user, sess.ID, f.ID, nil); err != nil {
				b.Fatal(err)
			}
		}
		ids = append(ids, f.ID)
	}
	return sess.ID, ids
}
