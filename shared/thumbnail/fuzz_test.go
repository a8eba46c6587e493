package thumbnail

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"slices"
	"testing"
)

var fuzzTypes = []string{"image/jpeg", "image/png", "image/webp", "image/heic", "image/heif"}

// FuzzGenerate feeds Generate arbitrary bytes: it must return a thumbnail or
// ErrDecode, and never panic (a recovered panic fails too). Seeds: one
// small file of each format (and of each decoder path). Run it with
//
//	go test -run '^$' -fuzz '^FuzzGenerate$' -fuzztime 60s ./shared/thumbnail/
func FuzzGenerate(f *testing.F) {
	small := quadrants(40, 30, color.NRGBA{0, 0, 0xFF, 0x80})
	f.Add(withSegments(encodeJPEG(f, small, 80), exifAPP1(binary.LittleEndian, 3, 6)), uint8(0))
	gray := image.NewGray(image.Rect(0, 0, 24, 16))
	f.Add(encodeJPEG(f, gray, 80), uint8(0))
	f.Add(encodePNG(f, small), uint8(1))
	pal := image.NewPaletted(image.Rect(0, 0, 16, 16), color.Palette{red, blue})
	f.Add(encodePNG(f, pal), uint8(1))
	for _, name := range []string{"quad-alpha-lossless.webp", "quad.webp", "quad-alpha-lossy.webp"} {
		f.Add(readTestdata(f, name), uint8(2))
	}
	f.Add(readTestdata(f, "tiny.heic"), uint8(3))
	f.Add(readTestdata(f, "gray.heic"), uint8(4))

	o := Options{Size: 64, MaxPixels: 1 << 20} // a megapixel at most: fast, bounded runs
	f.Fuzz(func(t *testing.T, data []byte, kind uint8) {
		mimeType := fuzzTypes[int(kind)%len(fuzzTypes)]
		in := slices.Clone(data)
		out, err := o.GenerateBytes(in, mimeType)
		if !bytes.Equal(in, data) {
			t.Fatal("Generate changed its input")
		}
		if err != nil {
			if !errors.Is(err, ErrDecode) || errors.Is(err, errPanic) {
				t.Fatalf("error %v, want ErrDecode and no panic", err)
			}
			return
		}
		decodeThumb(t, out, o.Size)
	})
}

// FuzzJPEGOrientation: the Exif parser reads only within its input and
// returns 1-8.
func FuzzJPEGOrientation(f *testing.F) {
	jpg := encodeJPEG(f, quadrants(8, 8, nil), 80)
	for o := uint32(1); o <= 8; o++ {
		f.Add(withSegments(jpg, exifAPP1(binary.BigEndian, 3, o)))
	}
	f.Add(withSegments(jpg, exifAPP1(binary.LittleEndian, 4, 6)))
	f.Add(readTestdata(f, "exif6.jpg")[:512])
	f.Fuzz(func(t *testing.T, data []byte) {
		if o := jpegOrientation(data); o < 1 || o > 8 {
			t.Fatalf("orientation %d", o)
		}
	})
}
