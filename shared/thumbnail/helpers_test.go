package thumbnail

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// The four quadrant colours of the test pictures: stored top-left, top-right,
// bottom-left, bottom-right.
var (
	red    = color.NRGBA{0xFF, 0, 0, 0xFF}
	green  = color.NRGBA{0, 0xFF, 0, 0xFF}
	blue   = color.NRGBA{0, 0, 0xFF, 0xFF}
	yellow = color.NRGBA{0xFF, 0xFF, 0, 0xFF}
	white  = color.NRGBA{0xFF, 0xFF, 0xFF, 0xFF}
)

// quadrants is a w x h picture in four colours split at its centre, so
// that its centre square has the four colours in its four quadrants. A
// non-nil br replaces the bottom-right colour (e.g. a transparent one).
func quadrants(w, h int, br color.Color) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	if br == nil {
		br = yellow
	}
	for y := range h {
		for x := range w {
			var c color.Color
			switch {
			case y < h/2 && x < w/2:
				c = red
			case y < h/2:
				c = green
			case x < w/2:
				c = blue
			default:
				c = br
			}
			img.Set(x, y, c)
		}
	}
	return img
}

// photoLike is a w x h 4:2:0 picture with a photo's mix of smooth
// gradients, hard edges, fine texture and sensor-like noise, so JPEG sizes
// and decode times are those of a camera picture rather than of a flat one.
func photoLike(w, h int, seed uint64) *image.YCbCr {
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	rng := rand.New(rand.NewPCG(seed, 1))
	colY, rowY := make([]float64, w), make([]float64, h)
	texX, texY := make([]float64, w), make([]float64, h)
	for x := range w {
		f := float64(x) / float64(w)
		colY[x] = 40 * math.Sin(2*math.Pi*(1.3*f+0.1))
		texX[x] = math.Sin(float64(x) * 0.9)
	}
	for y := range h {
		f := float64(y) / float64(h)
		rowY[y] = 30 * math.Cos(2*math.Pi*(0.8*f))
		texY[y] = math.Sin(float64(y)*0.7) * (6 + 6*f)
	}
	// A few discs: hard edges.
	type disc struct{ cx, cy, r2, dy float64 }
	discs := make([]disc, 12)
	for i := range discs {
		r := (0.03 + 0.1*rng.Float64()) * float64(min(w, h))
		discs[i] = disc{rng.Float64() * float64(w), rng.Float64() * float64(h), r * r, 50*rng.Float64() - 25}
	}
	for y := range h {
		row := img.Y[y*img.YStride:]
		for x := range w {
			v := 128 + colY[x] + rowY[y] + texX[x]*texY[y] + 8*rng.NormFloat64()
			for _, d := range discs {
				if dx, dy := float64(x)-d.cx, float64(y)-d.cy; dx*dx+dy*dy < d.r2 {
					v += d.dy
				}
			}
			row[x] = uint8(max(0, min(255, v)))
		}
	}
	cw, ch := (w+1)/2, (h+1)/2
	for y := range ch {
		for x := range cw {
			fx, fy := float64(x)/float64(cw), float64(y)/float64(ch)
			img.Cb[y*img.CStride+x] = uint8(128 + 30*math.Sin(2*math.Pi*fx) + rng.NormFloat64())
			img.Cr[y*img.CStride+x] = uint8(128 + 30*math.Cos(2*math.Pi*(fx+fy)) + rng.NormFloat64())
		}
	}
	return img
}

// zonePlate is a w x h grey picture of concentric rings whose frequency
// rises from the centre to the source's Nyquist frequency at the edges.
func zonePlate(w, h int) *image.YCbCr {
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	for y := range h {
		for x := range w {
			dx, dy := float64(x-w/2), float64(y-h/2)
			img.Y[y*img.YStride+x] = uint8(128 + 127*math.Cos(math.Pi*(dx*dx+dy*dy)/float64(w)))
		}
	}
	for i := range img.Cb {
		img.Cb[i], img.Cr[i] = 128, 128
	}
	return img
}

func encodeJPEG(t testing.TB, img image.Image, quality int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: quality}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// exifAPP1 is an APP1 segment (marker included) holding a minimal Exif
// block: a TIFF header in byte order bo and IFD0 with two entries, an
// ImageDescription (0x010E) before Orientation (0x0112) of the given type
// (3 SHORT, 4 LONG) and value.
func exifAPP1(bo binary.ByteOrder, typ uint16, orientation uint32) []byte {
	tiff := make([]byte, 8+2+2*12+4)
	if bo == binary.LittleEndian {
		copy(tiff, "II")
	} else {
		copy(tiff, "MM")
	}
	bo.PutUint16(tiff[2:], 42)
	bo.PutUint32(tiff[4:], 8)
	bo.PutUint16(tiff[8:], 2)
	e := tiff[10:]
	bo.PutUint16(e[0:], 0x010E) // ImageDescription, ASCII, 4 bytes inline
	bo.PutUint16(e[2:], 2)
	bo.PutUint32(e[4:], 4)
	copy(e[8:], "abc\x00")
	e = tiff[22:]
	bo.PutUint16(e[0:], 0x0112)
	bo.PutUint16(e[2:], typ)
	bo.PutUint32(e[4:], 1)
	if typ == 3 {
		bo.PutUint16(e[8:], uint16(orientation))
	} else {
		bo.PutUint32(e[8:], orientation)
	}
	return segment(0xE1, append([]byte("Exif\x00\x00"), tiff...))
}

// segment is a JPEG marker segment with its length.
func segment(marker byte, payload []byte) []byte {
	s := []byte{0xFF, marker, 0, 0}
	binary.BigEndian.PutUint16(s[2:], uint16(len(payload)+2))
	return append(s, payload...)
}

// withSegments inserts segments right after a JPEG's SOI marker.
func withSegments(jpg []byte, segs ...[]byte) []byte {
	out := append([]byte{}, jpg[:2]...)
	for _, s := range segs {
		out = append(out, s...)
	}
	return append(out, jpg[2:]...)
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeThumb decodes a thumbnail and checks it is a size x size JPEG.
func decodeThumb(t testing.TB, out []byte, size int) image.Image {
	t.Helper()
	cfg, format, err := image.DecodeConfig(bytes.NewReader(out))
	if err != nil || format != "jpeg" {
		t.Fatalf("output is not a JPEG: %q, %v", format, err)
	}
	if cfg.Width != size || cfg.Height != size {
		t.Fatalf("output is %dx%d, want %dx%d", cfg.Width, cfg.Height, size, size)
	}
	img, err := jpeg.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("output does not decode: %v", err)
	}
	return img
}

// near reports whether c is within tol of want in each of R, G and B.
func near(c color.Color, want color.NRGBA, tol int) bool {
	r, g, b, _ := c.RGBA()
	d := func(v uint32, w uint8) bool { return abs(int(v>>8)-int(w)) <= tol }
	return d(r, want.R) && d(g, want.G) && d(b, want.B)
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// checkQuadrants checks the colours at the centres of img's four quadrants
// (top-left, top-right, bottom-left, bottom-right).
func checkQuadrants(t testing.TB, img image.Image, want [4]color.NRGBA) {
	t.Helper()
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	pts := [4]image.Point{{w / 4, h / 4}, {3 * w / 4, h / 4}, {w / 4, 3 * h / 4}, {3 * w / 4, 3 * h / 4}}
	names := [4]string{"top-left", "top-right", "bottom-left", "bottom-right"}
	for i, p := range pts {
		c := img.At(b.Min.X+p.X, b.Min.Y+p.Y)
		if !near(c, want[i], 40) {
			t.Errorf("%s quadrant is %v, want %v", names[i], color.NRGBAModel.Convert(c), want[i])
		}
	}
}

// psnr is the peak signal-to-noise ratio of a against b (same size), in dB,
// over R, G and B.
func psnr(a, b image.Image) float64 {
	var sum float64
	var n int
	ab, bb := a.Bounds(), b.Bounds()
	for y := range ab.Dy() {
		for x := range ab.Dx() {
			r1, g1, b1, _ := a.At(ab.Min.X+x, ab.Min.Y+y).RGBA()
			r2, g2, b2, _ := b.At(bb.Min.X+x, bb.Min.Y+y).RGBA()
			for _, d := range []float64{float64(r1>>8) - float64(r2>>8), float64(g1>>8) - float64(g2>>8), float64(b1>>8) - float64(b2>>8)} {
				sum += d * d
				n++
			}
		}
	}
	mse := sum / float64(n)
	if mse == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(255*255/mse)
}
