package thumbnail

import (
	"bytes"
	"image"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/disintegration/imaging"
	"github.com/gen2brain/heic"
)

// Benchmark inputs, made once per process: photo-like pictures (see
// photoLike) of a camera's sizes. The HEIC one needs heif-enc (Debian:
// libheif-examples) and is cached in the temporary directory, since x265
// takes a while.
var (
	jpeg24MPOnce sync.Once
	jpeg24MP     []byte
)

// benchJPEG24MP is a 6000x4000 (24-megapixel) baseline 4:2:0 JPEG of
// quality 90, about 10 MB: a DSLR's picture.
func benchJPEG24MP(tb testing.TB) []byte {
	jpeg24MPOnce.Do(func() { jpeg24MP = encodeJPEG(tb, photoLike(6000, 4000, 1), 90) })
	return jpeg24MP
}

// benchHEIC12MP is a 4032x3024 (12-megapixel, a phone's) HEIC made by
// heif-enc (x265, quality 50) from a photo-like JPEG.
func benchHEIC12MP(tb testing.TB) []byte {
	tb.Helper()
	return cachedHEIC(tb, "photo-4032x3024-q50-v2.heic", 4032, 3024)
}

func cachedHEIC(tb testing.TB, name string, w, h int) []byte {
	tb.Helper()
	dir := filepath.Join(os.TempDir(), "thumbnail-bench")
	path := filepath.Join(dir, name)
	if b, err := os.ReadFile(path); err == nil {
		return b
	}
	if _, err := exec.LookPath("heif-enc"); err != nil {
		tb.Skip("heif-enc not found (Debian: apt-get install libheif-examples)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	src := filepath.Join(dir, name+".jpg")
	if err := os.WriteFile(src, encodeJPEG(tb, photoLike(w, h, 2), 95), 0o644); err != nil {
		tb.Fatal(err)
	}
	tmp := path + ".tmp"
	if out, err := exec.Command("heif-enc", "-q", "50", "-o", tmp, src).CombinedOutput(); err != nil {
		tb.Fatalf("heif-enc: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// imagingThumbnail is the plain way with imaging: decode (Exif orientation
// applied), imaging.Thumbnail with Lanczos, encode.
func imagingThumbnail(data []byte) ([]byte, error) {
	img, err := imaging.Decode(bytes.NewReader(data), imaging.AutoOrientation(true))
	if err != nil {
		return nil, err
	}
	return encodeImaging(imaging.Thumbnail(img, DefaultSize, DefaultSize, imaging.Lanczos))
}

// heicImagingThumbnail is the same for HEIC (imaging has no HEIC decoder).
func heicImagingThumbnail(data []byte) ([]byte, error) {
	img, err := heic.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	return encodeImaging(imaging.Thumbnail(img, DefaultSize, DefaultSize, imaging.Lanczos))
}

func encodeImaging(img image.Image) ([]byte, error) {
	var buf bytes.Buffer
	err := imaging.Encode(&buf, img, imaging.JPEG, imaging.JPEGQuality(DefaultQuality))
	return buf.Bytes(), err
}

// BenchmarkGenerate compares, on the same input bytes, each including the
// decode: impl=imaging (decode, imaging.Thumbnail with Lanczos, encode: the
// baseline), impl=ours (Generate), and the decoders alone (impl=decode:
// image/jpeg, heic.Decode; impl=decodeHEIF: this package's host of the same
// HEIC decoder). Compare with
//
//	benchstat -col /impl -row /in bench.txt
func BenchmarkGenerate(b *testing.B) {
	type variant struct {
		name string
		run  func([]byte) error
	}
	ours := func(mimeType string) func([]byte) error {
		return func(data []byte) error {
			_, err := Generate(bytes.NewReader(data), mimeType)
			return err
		}
	}
	for _, in := range []struct {
		name     string
		data     func(testing.TB) []byte
		variants []variant
	}{
		{"jpeg-24MP", benchJPEG24MP, []variant{
			{"imaging", func(d []byte) error { _, err := imagingThumbnail(d); return err }},
			{"ours", ours("image/jpeg")},
			{"decode", func(d []byte) error { _, err := jpeg.Decode(bytes.NewReader(d)); return err }},
		}},
		{"heic-12MP", benchHEIC12MP, []variant{
			{"imaging", func(d []byte) error { _, err := heicImagingThumbnail(d); return err }},
			{"ours", ours("image/heic")},
			{"decode", func(d []byte) error { _, err := heic.Decode(bytes.NewReader(d)); return err }},
			{"decodeHEIF", func(d []byte) error {
				return decodeHEIF(d, DefaultMaxPixels, func(image.Image) {})
			}},
		}},
	} {
		b.Run("in="+in.name, func(b *testing.B) {
			data := in.data(b)
			for _, v := range in.variants {
				b.Run("impl="+v.name, func(b *testing.B) {
					if err := v.run(data); err != nil { // warm: HEIC's WASM compiled
						b.Fatal(err)
					}
					b.ReportAllocs()
					cpu0, ok := processCPUTime()
					for b.Loop() {
						if err := v.run(data); err != nil {
							b.Fatal(err)
						}
					}
					// CPU time (all threads, GC included) is what a Lambda
					// of at most one vCPU waits for, and is steadier than
					// wall time on a shared machine.
					if cpu1, _ := processCPUTime(); ok && b.N > 0 {
						b.ReportMetric(float64(cpu1-cpu0)/1e6/float64(b.N), "cpu-ms/op")
					}
				})
			}
		})
	}
}
