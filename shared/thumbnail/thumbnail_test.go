package thumbnail

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/disintegration/imaging"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// stored are the quadrant colours of quadrants(): top-left, top-right,
// bottom-left, bottom-right as stored in the file.
var stored = [4]color.NRGBA{red, green, blue, yellow}

// displayed returns the quadrant colours of quadrants() as a viewer shows
// them under Exif orientation o, derived from the standard's table (where
// the stored 0th row and 0th column are displayed), not from the code.
func displayed(o int) [4]color.NRGBA {
	sides := map[int][2]string{
		1: {"top", "left"}, 2: {"top", "right"}, 3: {"bottom", "right"}, 4: {"bottom", "left"},
		5: {"left", "top"}, 6: {"right", "top"}, 7: {"right", "bottom"}, 8: {"left", "bottom"},
	}[o]
	flip := func(v int, yes bool) int {
		if yes {
			return 1 - v
		}
		return v
	}
	var out [2][2]color.NRGBA // [y][x]
	for r := range 2 {
		for c := range 2 {
			var x, y int
			if sides[0] == "top" || sides[0] == "bottom" {
				y, x = flip(r, sides[0] == "bottom"), flip(c, sides[1] == "right")
			} else {
				x, y = flip(r, sides[0] == "right"), flip(c, sides[1] == "bottom")
			}
			out[y][x] = stored[2*r+c]
		}
	}
	return [4]color.NRGBA{out[0][0], out[0][1], out[1][0], out[1][1]}
}

func TestDisplayedTable(t *testing.T) {
	// Spot checks of the derivation against the usual descriptions.
	if got, want := displayed(6), [4]color.NRGBA{blue, red, yellow, green}; got != want {
		t.Errorf("6 (turn 90 clockwise): %v, want %v", got, want)
	}
	if got, want := displayed(8), [4]color.NRGBA{green, yellow, red, blue}; got != want {
		t.Errorf("8 (turn 90 counter-clockwise): %v, want %v", got, want)
	}
	if got, want := displayed(3), [4]color.NRGBA{yellow, blue, green, red}; got != want {
		t.Errorf("3 (turn 180): %v, want %v", got, want)
	}
}

func generate(t *testing.T, data []byte, mimeType string) image.Image {
	t.Helper()
	out, err := Generate(bytes.NewReader(data), mimeType)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return decodeThumb(t, out, DefaultSize)
}

func TestGenerateJPEGSizes(t *testing.T) {
	for _, sz := range []image.Point{
		{1, 1}, {7, 3}, {299, 301}, {300, 300}, {640, 480}, {1199, 900},
		{1200, 1200}, {1203, 1201}, {2500, 1700}, {4000, 300}, {300, 4000},
	} {
		t.Run(strings.ReplaceAll(sz.String(), ",", "x"), func(t *testing.T) {
			img := generate(t, encodeJPEG(t, quadrants(sz.X, sz.Y, nil), 95), "image/jpeg")
			if sz.X >= 8 && sz.Y >= 8 {
				checkQuadrants(t, img, stored)
			}
		})
	}
}

func TestGenerateOptions(t *testing.T) {
	data := encodeJPEG(t, quadrants(2000, 1500, nil), 90)
	for _, o := range []Options{{Size: 64}, {Size: 1000, Quality: 100}, {Size: 301, Quality: 1}, {Quality: 500}} {
		out, err := o.Generate(bytes.NewReader(data), "image/jpeg")
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		size := o.Size
		if size == 0 {
			size = DefaultSize
		}
		checkQuadrants(t, decodeThumb(t, out, size), stored)
	}
	out, err := Options{}.GenerateBytes(data, "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	checkQuadrants(t, decodeThumb(t, out, DefaultSize), stored)
}

func TestGenerateMediaTypeParameters(t *testing.T) {
	data := encodeJPEG(t, quadrants(40, 40, nil), 90)
	for _, mt := range []string{"image/jpeg", "IMAGE/JPEG", " image/jpeg ", "image/jpeg; charset=binary"} {
		if _, err := Generate(bytes.NewReader(data), mt); err != nil {
			t.Errorf("%q: %v", mt, err)
		}
	}
}

func TestGeneratePNG(t *testing.T) {
	t.Run("opaque", func(t *testing.T) {
		checkQuadrants(t, generate(t, encodePNG(t, quadrants(1600, 1200, nil)), "image/png"), stored)
	})
	t.Run("transparent drawn over white", func(t *testing.T) {
		for _, sz := range []image.Point{{1600, 1200}, {500, 400}} { // box reduction, and none
			img := quadrants(sz.X, sz.Y, color.NRGBA{0, 0, 0xFF, 0}) // transparent blue
			checkQuadrants(t, generate(t, encodePNG(t, img), "image/png"), [4]color.NRGBA{red, green, blue, white})
		}
	})
	t.Run("half transparent", func(t *testing.T) {
		img := quadrants(1600, 1200, color.NRGBA{0, 0, 0, 0x80}) // half-transparent black: grey
		checkQuadrants(t, generate(t, encodePNG(t, img), "image/png"), [4]color.NRGBA{red, green, blue, {0x7F, 0x7F, 0x7F, 0xFF}})
	})
	t.Run("gray", func(t *testing.T) {
		g := image.NewGray(image.Rect(0, 0, 1600, 1200))
		for y := range 1200 {
			for x := range 1600 {
				if x >= 800 {
					g.Pix[y*g.Stride+x] = 0xFF
				}
			}
		}
		img := generate(t, encodePNG(t, g), "image/png")
		checkQuadrants(t, img, [4]color.NRGBA{{A: 0xFF}, white, {A: 0xFF}, white})
	})
	t.Run("paletted and 16-bit", func(t *testing.T) {
		q := quadrants(1300, 1250, nil)
		pal := image.NewPaletted(q.Rect, color.Palette{red, green, blue, yellow})
		wide := image.NewNRGBA64(q.Rect)
		for y := range 1250 {
			for x := range 1300 {
				pal.Set(x, y, q.At(x, y))
				wide.Set(x, y, q.At(x, y))
			}
		}
		checkQuadrants(t, generate(t, encodePNG(t, pal), "image/png"), stored)
		checkQuadrants(t, generate(t, encodePNG(t, wide), "image/png"), stored)
	})
}

func TestGenerateWebP(t *testing.T) {
	for _, tc := range []struct {
		file string
		want [4]color.NRGBA
	}{
		{"quad.webp", stored}, // lossy: VP8, YCbCr
		{"quad-alpha-lossless.webp", [4]color.NRGBA{red, green, blue, white}}, // VP8L: NRGBA
		{"quad-alpha-lossy.webp", [4]color.NRGBA{red, green, blue, white}},    // VP8X+ALPH: NYCbCrA
	} {
		t.Run(tc.file, func(t *testing.T) {
			checkQuadrants(t, generate(t, readTestdata(t, tc.file), "image/webp"), tc.want)
		})
	}
}

func TestGenerateHEIC(t *testing.T) {
	for _, tc := range []struct {
		file string
		want [4]color.NRGBA
	}{
		{"quad.heic", stored},
		{"quad-irot1.heic", displayed(8)}, // irot 1: 90 counter-clockwise, as Exif 8
		{"quad-irot3.heic", displayed(6)}, // irot 3: 270 counter-clockwise, as Exif 6
		// imir 0: top and bottom exchanged, as Exif 4: HEIF amendment 2 (2021)
		// renamed axis to mode, with the meaning iPhones and libheif used.
		{"quad-imir0.heic", displayed(4)},
		{"quad-exif6.heic", stored}, // an Exif orientation in HEIF is ignored
	} {
		t.Run(tc.file, func(t *testing.T) {
			for _, mt := range []string{"image/heic", "image/heif"} {
				checkQuadrants(t, generate(t, readTestdata(t, tc.file), mt), tc.want)
			}
		})
	}
}

// TestGenerateHEICGray: a monochrome HEIF decodes; a monochrome grid as
// heif-enc 1.15 writes it does not (a limit of the WASM module's shim,
// which heic.Decode shares: "unsupported chroma 0"): ErrDecode.
func TestGenerateHEICGray(t *testing.T) {
	if _, err := Generate(bytes.NewReader(readTestdata(t, "gray-grid.heic")), "image/heic"); !errors.Is(err, ErrDecode) {
		t.Errorf("gray-grid.heic: %v, want ErrDecode", err)
	}
	img := generate(t, readTestdata(t, "gray.heic"), "image/heic")
	l, r := img.At(75, 150), img.At(225, 150) // the file is a left-to-right ramp
	lr, lg, lb, _ := l.RGBA()
	rr, _, _, _ := r.RGBA()
	if lr != lg || lg != lb || lr >= rr {
		t.Errorf("left %v, right %v: want a grey ramp, darker on the left", l, r)
	}
}

// TestHEICTopLeftPixels: gen2brain/heic's own host (v0.4.5) frees the
// buffer its image is a view of, and malloc's bookkeeping lands on the
// first 24 bytes; decodeHEIF keeps the buffer until the picture is used.
func TestHEICTopLeftPixels(t *testing.T) {
	err := decodeHEIF(readTestdata(t, "quad.heic"), DefaultMaxPixels, func(img image.Image) {
		if _, ok := img.(*image.YCbCr); !ok {
			t.Errorf("decoded a %T, want *image.YCbCr", img)
		}
		for x := range 32 {
			if c := img.At(x, 0); !near(c, red, 24) {
				t.Errorf("pixel (%d, 0) is %v, want red", x, color.NRGBAModel.Convert(c))
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestGenerateOrientation(t *testing.T) {
	base := encodeJPEG(t, quadrants(1600, 1200, nil), 90)
	small := encodeJPEG(t, quadrants(160, 120, nil), 90)
	for o := 1; o <= 8; o++ {
		for _, bo := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
			for _, src := range [][]byte{base, small} {
				img := generate(t, withSegments(src, exifAPP1(bo, 3, uint32(o))), "image/jpeg")
				t.Run("", func(t *testing.T) { checkQuadrants(t, img, displayed(o)) })
			}
		}
	}
	t.Run("exiftool files", func(t *testing.T) {
		checkQuadrants(t, generate(t, readTestdata(t, "exif6.jpg"), "image/jpeg"), displayed(6))
		checkQuadrants(t, generate(t, readTestdata(t, "exif8.jpg"), "image/jpeg"), displayed(8))
	})
	t.Run("after JFIF and XMP segments", func(t *testing.T) {
		jfif := segment(0xE0, []byte("JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"))
		xmp := segment(0xE1, []byte("http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"))
		data := withSegments(base, jfif, xmp, exifAPP1(binary.BigEndian, 4, 6))
		checkQuadrants(t, generate(t, data, "image/jpeg"), displayed(6))
	})
}

func TestQualityMatchesImaging(t *testing.T) {
	src := photoLike(2400, 1600, 1)
	pngLike := imaging.Clone(src) // NRGBA: the boxAny path
	gray := image.NewGray(src.Rect)
	copy(gray.Pix, src.Y)
	for _, tc := range []struct {
		name    string
		img     image.Image
		minPSNR float64
	}{
		{"photo ycbcr", src, 45},
		{"photo nrgba", pngLike, 45},
		{"photo gray", gray, 45},
		// Detail up to the source's Nyquist frequency, where a cheaper
		// filter aliases: after the same box reduction, CatmullRom gives
		// 36.7 dB, Linear 30.4, Box 25.3; Lanczos 48.7.
		{"zone plate", zonePlate(2400, 1600), 44},
	} {
		want := imaging.Thumbnail(tc.img, DefaultSize, DefaultSize, imaging.Lanczos)
		got := squareThumbnail(tc.img, DefaultSize)
		p := psnr(got, want)
		t.Logf("%s: PSNR against imaging.Thumbnail Lanczos: %.1f dB", tc.name, p)
		if p < tc.minPSNR {
			t.Errorf("%s: PSNR %.1f dB against imaging.Thumbnail Lanczos, want >= %.0f", tc.name, p, tc.minPSNR)
		}
	}
}

// The types Generate accepts are exactly the image types the upload rules
// accept for images and thumbnails: a type added there must be decoded
// here, or its MOCs would get a failed thumbnail.
func TestAcceptedTypesAreTheUploadRules(t *testing.T) {
	want := map[string]bool{}
	for _, c := range []upload.Category{upload.CategoryImage, upload.CategoryThumbnail} {
		for _, mt := range upload.AllowedTypes(c) {
			want[mt] = true
		}
	}
	if !maps.Equal(acceptedTypes, want) {
		t.Errorf("accepted types %v, the upload rules' image types %v", slices.Sorted(maps.Keys(acceptedTypes)), slices.Sorted(maps.Keys(want)))
	}
}

func TestGenerateErrors(t *testing.T) {
	jpg := encodeJPEG(t, quadrants(400, 300, nil), 90)
	pngData := encodePNG(t, quadrants(400, 300, nil))
	webpData := readTestdata(t, "quad.webp")
	heicData := readTestdata(t, "quad.heic")

	unsupported := []string{"", "application/pdf", "text/plain", "image/gif", "image/svg+xml", "image/jpg", "image/*", "jpeg"}
	for _, mt := range unsupported {
		if _, err := Generate(bytes.NewReader(jpg), mt); !errors.Is(err, ErrUnsupported) {
			t.Errorf("type %q: %v, want ErrUnsupported", mt, err)
		}
	}

	corrupt := map[string][]byte{
		"empty":                  nil,
		"text":                   []byte("hello, world"),
		"jpeg truncated":         jpg[:len(jpg)/2],
		"jpeg header only":       jpg[:20],
		"jpeg bad scan":          append(append([]byte{}, jpg[:len(jpg)/3]...), bytes.Repeat([]byte{0xFF, 0xD0, 0x12}, 100)...),
		"png truncated":          pngData[:len(pngData)/2],
		"png bad crc":            append(append([]byte{}, pngData[:30]...), 0, 0, 0, 0),
		"webp truncated":         webpData[:len(webpData)/2],
		"webp header only":       webpData[:16],
		"heic header only":       heicData[:40],
		"heic brand only":        []byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"),
		"ftyp of another format": []byte("\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  \x00\x00\x00\x08free"),
		"riff not webp":          []byte("RIFF\x04\x00\x00\x00WAVE"),
	}
	for name, data := range corrupt {
		_, err := Generate(bytes.NewReader(data), "image/jpeg")
		if !errors.Is(err, ErrDecode) || errors.Is(err, ErrTooLarge) || errors.Is(err, errPanic) {
			t.Errorf("%s: %v, want ErrDecode", name, err)
		}
	}

	t.Run("too many pixels", func(t *testing.T) {
		huge := pngWithSize(t, 100_000, 100_000)
		_, err := Generate(bytes.NewReader(huge), "image/png")
		if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrDecode) {
			t.Errorf("%v, want ErrTooLarge, also ErrDecode", err)
		}
		for _, in := range []struct {
			data     []byte
			mimeType string
		}{{jpg, "image/jpeg"}, {pngData, "image/png"}, {webpData, "image/webp"}, {heicData, "image/heic"}} {
			_, err = Options{MaxPixels: 1000}.Generate(bytes.NewReader(in.data), in.mimeType)
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("%s, MaxPixels 1000: %v, want ErrTooLarge", in.mimeType, err)
			}
		}
	})
	t.Run("heic with its coded data zeroed", func(t *testing.T) {
		// libheif decodes what it can (non-strict): a picture or ErrDecode.
		bad := append([]byte{}, heicData...)
		i := bytes.Index(bad, []byte("mdat"))
		clear(bad[i+4+16:])
		if _, err := Generate(bytes.NewReader(bad), "image/heic"); err != nil && (!errors.Is(err, ErrDecode) || errors.Is(err, errPanic)) {
			t.Errorf("%v, want a thumbnail or ErrDecode", err)
		}
	})
	t.Run("too many bytes", func(t *testing.T) {
		o := Options{MaxBytes: 1000}
		if _, err := o.Generate(bytes.NewReader(jpg), "image/jpeg"); !errors.Is(err, ErrTooLarge) {
			t.Errorf("sized reader: %v, want ErrTooLarge", err)
		}
		if _, err := o.Generate(io.MultiReader(bytes.NewReader(jpg)), "image/jpeg"); !errors.Is(err, ErrTooLarge) {
			t.Errorf("unsized reader: %v, want ErrTooLarge", err)
		}
		if _, err := o.GenerateBytes(jpg, "image/jpeg"); !errors.Is(err, ErrTooLarge) {
			t.Errorf("GenerateBytes: %v, want ErrTooLarge", err)
		}
		if _, err := o.GenerateBytes(jpg, "text/plain"); !errors.Is(err, ErrUnsupported) {
			t.Errorf("GenerateBytes: %v, want ErrUnsupported", err)
		}
	})
	t.Run("read error", func(t *testing.T) {
		_, err := Generate(io.MultiReader(bytes.NewReader(jpg[:100]), errReader{}), "image/jpeg")
		if err == nil || errors.Is(err, ErrDecode) || !errors.Is(err, errBroken) {
			t.Errorf("%v, want the reader's error", err)
		}
	})
}

var errBroken = errors.New("broken pipe")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errBroken }

// pngWithSize is a valid PNG header (and a tiny image) declaring w x h.
func pngWithSize(t *testing.T, w, h uint32) []byte {
	t.Helper()
	b := encodePNG(t, image.NewGray(image.Rect(0, 0, 1, 1)))
	ihdr := b[8+4 : 8+4+4+13] // "IHDR" + 13 bytes of data
	binary.BigEndian.PutUint32(ihdr[4:], w)
	binary.BigEndian.PutUint32(ihdr[8:], h)
	binary.BigEndian.PutUint32(b[8+4+4+13:], crc32.ChecksumIEEE(ihdr))
	return b
}

// TestGenerateDeclaredTypeIgnoredForDecoding: any accepted image type
// decodes any supported format (the magic number decides).
func TestGenerateDeclaredTypeIgnoredForDecoding(t *testing.T) {
	data := encodePNG(t, quadrants(100, 100, nil))
	checkQuadrants(t, generate(t, data, "image/heic"), stored)
}

func TestOutputIsBaselineJPEG(t *testing.T) {
	out, err := Generate(bytes.NewReader(encodeJPEG(t, quadrants(900, 900, nil), 90)), "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jpeg.Decode(bytes.NewReader(out)); err != nil {
		t.Fatal(err)
	}
	if len(out) > 40<<10 {
		t.Errorf("a flat 300x300 thumbnail is %d bytes", len(out))
	}
}

// TestGenerateConcurrent: HEIC modules instantiated side by side, and the
// other decoders, from several goroutines (go test -race covers it too).
func TestGenerateConcurrent(t *testing.T) {
	inputs := []struct {
		data     []byte
		mimeType string
	}{
		{readTestdata(t, "quad.heic"), "image/heic"},
		{readTestdata(t, "quad-irot3.heic"), "image/heic"},
		{readTestdata(t, "quad.webp"), "image/webp"},
		{encodeJPEG(t, quadrants(1300, 1300, nil), 90), "image/jpeg"},
	}
	want := [][4]color.NRGBA{stored, displayed(6), stored, stored}
	errs := make(chan error, 2*len(inputs))
	for range 2 {
		for i, in := range inputs {
			go func() {
				out, err := Generate(bytes.NewReader(in.data), in.mimeType)
				if err == nil {
					var img image.Image
					if img, err = jpeg.Decode(bytes.NewReader(out)); err == nil {
						b := img.Bounds()
						if c := img.At(b.Dx()/4, b.Dy()/4); !near(c, want[i][0], 40) {
							err = fmt.Errorf("%s %d: top-left is %v", in.mimeType, i, c)
						}
					}
				}
				errs <- err
			}()
		}
	}
	for range 2 * len(inputs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestGenerateFromFile(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "exif6.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out, err := Generate(f, "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	checkQuadrants(t, decodeThumb(t, out, DefaultSize), displayed(6))
}

// The thumbnail is encoded at quality 80: its quantization tables (the DQT
// segments: image/jpeg turns the quality into them, and into nothing else)
// are those image/jpeg writes at quality 80, and not those of 79 or 81.
func TestGenerateQuality80(t *testing.T) {
	out, err := Generate(bytes.NewReader(encodeJPEG(t, quadrants(640, 480, nil), 95)), "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	got := quantTables(t, out)
	tablesAt := func(q int) []byte {
		var b bytes.Buffer
		if err := jpeg.Encode(&b, image.NewRGBA(image.Rect(0, 0, 8, 8)), &jpeg.Options{Quality: q}); err != nil {
			t.Fatal(err)
		}
		return quantTables(t, b.Bytes())
	}
	if want := tablesAt(80); !bytes.Equal(got, want) {
		t.Errorf("quantization tables\n got %x\nwant %x (image/jpeg at quality 80)", got, want)
	}
	for _, q := range []int{79, 81} {
		if bytes.Equal(got, tablesAt(q)) {
			t.Errorf("the tables are also those of quality %d: the test cannot tell qualities apart", q)
		}
	}
}

// quantTables returns the payloads of a JPEG's DQT segments, in order,
// read from the marker segments before the first SOS.
func quantTables(t *testing.T, jpg []byte) []byte {
	t.Helper()
	if len(jpg) < 2 || jpg[0] != 0xFF || jpg[1] != 0xD8 {
		t.Fatal("not a JPEG: no SOI")
	}
	var tables []byte
	for p := 2; ; {
		if p+4 > len(jpg) || jpg[p] != 0xFF {
			t.Fatalf("no marker segment at offset %d", p)
		}
		marker, n := jpg[p+1], int(binary.BigEndian.Uint16(jpg[p+2:]))
		if n < 2 || p+2+n > len(jpg) {
			t.Fatalf("segment %X at offset %d: length %d", marker, p, n)
		}
		switch marker {
		case 0xDB: // DQT
			tables = append(tables, jpg[p+4:p+2+n]...)
		case 0xDA: // SOS: the entropy-coded data follows
			if len(tables) == 0 {
				t.Fatal("no DQT segment before SOS")
			}
			return tables
		}
		p += 2 + n
	}
}
