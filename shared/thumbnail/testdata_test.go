package thumbnail

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestMakeTestdata writes the committed WebP, HEIC and Exif JPEG files of
// testdata/ again, with the tools named in testdata/README.md (Debian:
// webp, libheif-examples, libimage-exiftool-perl). Run it with
// THUMBNAIL_MAKE_TESTDATA=1 go test -run TestMakeTestdata ./shared/thumbnail/
func TestMakeTestdata(t *testing.T) {
	if os.Getenv("THUMBNAIL_MAKE_TESTDATA") == "" {
		t.Skip("set THUMBNAIL_MAKE_TESTDATA=1 to write testdata/ again")
	}
	tmp := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(name string, args ...string) {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	td := func(name string) string { return filepath.Join("testdata", name) }

	quad := write("quad.png", encodePNG(t, quadrants(1600, 1200, nil)))
	quadAlpha := write("quad-alpha.png", encodePNG(t, quadrants(1600, 1200, color.NRGBA{})))
	quadJPEG := write("quad.jpg", encodeJPEG(t, quadrants(1600, 1200, nil), 90))

	run("cwebp", "-quiet", "-q", "80", quad, "-o", td("quad.webp"))
	run("cwebp", "-quiet", "-lossless", quadAlpha, "-o", td("quad-alpha-lossless.webp"))
	run("cwebp", "-quiet", "-q", "80", "-alpha_q", "100", quadAlpha, "-o", td("quad-alpha-lossy.webp"))

	run("heif-enc", "-q", "80", "-o", td("quad.heic"), quad)
	// Small seeds for FuzzGenerate.
	run("heif-enc", "-q", "50", "-o", td("tiny.heic"), write("tiny.png", encodePNG(t, quadrants(64, 48, nil))))
	gray := image.NewGray(image.Rect(0, 0, 640, 480))
	for i := range gray.Pix {
		gray.Pix[i] = uint8(i % 640 / 3)
	}
	run("heif-enc", "-q", "80", "-o", td("gray.heic"), write("gray.png", encodePNG(t, gray)))
	// heif-enc 1.15 codes 64x48 as a 1x1 grid of a 64x64 tile; in grey,
	// libheif then prefers a YCbCr colorspace with monochrome chroma, which
	// the module's shim asks for and libheif 1.18 cannot produce.
	run("heif-enc", "-q", "80", "-o", td("gray-grid.heic"), write("gray-grid.png", encodePNG(t, image.NewGray(image.Rect(0, 0, 64, 48)))))
	src, err := os.ReadFile(td("quad.heic"))
	if err != nil {
		t.Fatal(err)
	}
	for name, prop := range map[string][]byte{
		"quad-irot1.heic": []byte("irot\x01"), // 90 degrees counter-clockwise
		"quad-irot3.heic": []byte("irot\x03"), // 270 counter-clockwise: 90 clockwise
		"quad-imir0.heic": []byte("imir\x00"), // mode 0: top and bottom exchanged
	} {
		if err := os.WriteFile(td(name), withProperty(t, src, prop), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	for _, o := range []string{"6", "8"} {
		_ = os.Remove(td("exif" + o + ".jpg")) // exiftool will not overwrite
		run("exiftool", "-q", "-n", "-Orientation="+o, "-o", td("exif"+o+".jpg"), quadJPEG)
	}
	// A HEIF file with an Exif orientation and no irot: viewers must ignore
	// the Exif orientation (heif-enc 1.15 copies the JPEG's Exif as is).
	run("heif-enc", "-q", "80", "-o", td("quad-exif6.heic"), td("exif6.jpg"))
}

// withProperty returns a copy of the HEIF file heif (as heif-enc 1.15
// writes it) whose 'pixi' item property, 16 bytes, is replaced by the given
// one (type and payload, at most 8 bytes, zero-padded to the same box size):
// no offset in the file moves, and the primary item's association with
// pixi now points to the new property.
func withProperty(t *testing.T, heif, prop []byte) []byte {
	t.Helper()
	out := append([]byte{}, heif...)
	i := bytes.Index(out, []byte("pixi"))
	if i < 4 || binary.BigEndian.Uint32(out[i-4:]) != 16 || len(prop) > 12 {
		t.Fatal("no 16-byte pixi box in the HEIF file")
	}
	copy(out[i:i+12], append(prop, make([]byte, 12-len(prop))...))
	return out
}
