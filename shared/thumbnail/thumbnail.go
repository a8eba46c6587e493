// Package thumbnail makes the square JPEG thumbnail of an uploaded MOC image:
// 300x300 pixels, quality 80, the centre of the picture filling the square
// (as imaging.Thumbnail does), turned upright.
//
// It decodes every image type the upload rules accept: image/jpeg, image/png,
// image/webp (golang.org/x/image/webp) and image/heic, image/heif (libheif
// and libde265 compiled to WASM, from github.com/gen2brain/heic, run by
// wazero: no cgo).
//
// # Configuration
//
// None from the environment: [Generate] uses the defaults ([DefaultSize],
// [DefaultQuality], [DefaultMaxPixels], [DefaultMaxBytes]); an [Options]
// value changes them.
//
// # Considerations
//
// Memory and time (a Lambda function): the picture is decoded once, whole,
// and nothing else of its size is allocated. The centre square is reduced
// by an integer box filter read straight from the decoder's planes (the Y,
// Cb and Cr planes of a JPEG, lossy WebP or HEIC: no RGBA copy of the
// picture) to between 2 and 4 times the thumbnail's size, then resampled
// with Lanczos: the two steps of Pillow's Image.thumbnail (reducing_gap 2),
// at the quality of one Lanczos resampling of the whole picture. Peak
// resident memory, measured in a fresh process (docs/benchmarks.md,
// "Thumbnail: 300x300 JPEG from a camera picture"):
//   - a 24-megapixel baseline JPEG: 61 MiB (imaging.Thumbnail: 114 MiB), in
//     65% of imaging.Thumbnail's time, most of it image/jpeg's decode;
//   - a progressive one: 197 MiB, as image/jpeg keeps 4 bytes of DCT
//     coefficients per sample until the last scan;
//   - a 12-megapixel HEIC: 102 MiB (heic.Decode alone: 233 MiB), 48
//     megapixels: 345 MiB. HEIC costs about 110 ns of CPU a pixel, and
//     compiling the WASM module, once per process, 0.3 s.
//
// Peak memory grows with the picture: [Options.MaxPixels] is checked from
// the header before any pixel is decoded, so a hostile file cannot make a
// decoder allocate gigabytes.
//
// HEIC is decoded by this package's own host for gen2brain/heic's WASM
// module (heif.go): the module's memory is mapped outside the Go heap,
// never copied as it grows, and unmapped as soon as the thumbnail is made.
//
// Orientation: a JPEG's Exif orientation (APP1, tag 0x0112, values 1-8) is
// applied, after resizing (the centre square of a turned picture is the
// turned centre square). HEIF's irot and imir properties are applied by
// libheif; an Exif orientation inside a HEIF file is ignored, as MIAF
// (ISO/IEC 23000-22, 7.3.10.1) requires of a renderer. PNG and WebP files are drawn as stored (their eXIf or
// EXIF chunk is not read).
//
// Transparency: JPEG has none, so a transparent PNG or WebP is drawn over
// white.
//
// Errors: [ErrUnsupported] for a media type that is not an image type the
// upload rules accept, [ErrDecode] for bytes that do not decode, and
// [ErrTooLarge], which also matches ErrDecode, for a picture over the
// limits. No input makes Generate panic: a panic in a decoder is returned as
// ErrDecode.
//
// Build: gen2brain/heic imports purego, which makes a CGO_ENABLED=0 Linux
// binary dynamically linked (and tries to load libheif.so at start); the tag
// nodynamic (go build -tags lambda.norpc,nodynamic) keeps it static.
package thumbnail

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"io/fs"
	"mime"
	"strings"
)

// Defaults of [Options].
const (
	// DefaultSize is the edge of the square thumbnail, in pixels.
	DefaultSize = 300
	// DefaultQuality is the JPEG quality of the thumbnail (1-100).
	DefaultQuality = 80
	// DefaultMaxPixels is the largest picture decoded, in pixels (width x
	// height): 50 megapixels, above a 48-megapixel phone camera (8064x6048).
	DefaultMaxPixels = 50_000_000
	// DefaultMaxBytes is the largest input read, in bytes: 32 MiB, above the
	// upload rules' 20 MiB for an image.
	DefaultMaxBytes = 32 << 20
)

var (
	// ErrUnsupported: the media type is not one of the image types the upload
	// rules accept (image/jpeg, image/png, image/webp, image/heic, image/heif).
	ErrUnsupported = errors.New("thumbnail: unsupported media type")
	// ErrDecode: the bytes are not a picture this package can decode (corrupt,
	// truncated, or of another format than JPEG, PNG, WebP or HEIF).
	ErrDecode = errors.New("thumbnail: cannot decode image")
	// ErrTooLarge: the input is over [Options.MaxBytes] or the picture over
	// [Options.MaxPixels]. It wraps [ErrDecode]: errors.Is(err, ErrDecode) holds.
	ErrTooLarge = fmt.Errorf("%w: too large", ErrDecode)
)

// errPanic marks an ErrDecode that was a recovered panic (the fuzz test
// fails on it: a panic is a bug to fix, even though callers never see one).
var errPanic = errors.New("panic")

// Options change what [Options.Generate] makes. The zero value means the
// defaults.
type Options struct {
	// Size is the edge of the square thumbnail in pixels; 0 or less means
	// [DefaultSize].
	Size int
	// Quality is the JPEG quality, 1-100; 0 or less means [DefaultQuality],
	// over 100 means 100.
	Quality int
	// MaxPixels is the largest picture (width x height) decoded; 0 or less
	// means [DefaultMaxPixels]. Peak memory grows with it: see the package
	// documentation.
	MaxPixels int
	// MaxBytes is the largest input read; 0 or less means [DefaultMaxBytes].
	MaxBytes int64
}

func (o Options) withDefaults() Options {
	if o.Size <= 0 {
		o.Size = DefaultSize
	}
	if o.Quality <= 0 {
		o.Quality = DefaultQuality
	}
	if o.Quality > 100 {
		o.Quality = 100
	}
	if o.MaxPixels <= 0 {
		o.MaxPixels = DefaultMaxPixels
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	return o
}

// Generate reads an image of the given media type from r and returns its
// thumbnail with the default [Options]: a 300x300 JPEG of quality 80.
// mimeType may carry parameters ("image/jpeg; q=1"); its case is ignored.
func Generate(r io.Reader, mimeType string) ([]byte, error) {
	return Options{}.Generate(r, mimeType)
}

// Generate reads an image of the given media type from r (all of it, up to
// MaxBytes) and returns its thumbnail, a Size x Size JPEG.
//
// The media type must be an image type the upload rules accept, else the
// error is [ErrUnsupported]; the decoder is then chosen by the bytes' magic
// number (a PNG declared image/jpeg still decodes). Errors match
// [ErrDecode] when the bytes do not decode, [ErrTooLarge] when over the limits.
func (o Options) Generate(r io.Reader, mimeType string) ([]byte, error) {
	if err := checkType(mimeType); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	data, err := readAll(r, o.MaxBytes)
	if err != nil {
		return nil, err
	}
	return o.generate(data)
}

// GenerateBytes is [Options.Generate] for an image already in memory: it
// saves the copy Generate makes of its input (an S3 object read with
// io.ReadFull into a slice of its ContentLength, say). It does not modify
// data.
func (o Options) GenerateBytes(data []byte, mimeType string) ([]byte, error) {
	if err := checkType(mimeType); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	if int64(len(data)) > o.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes, over %d", ErrTooLarge, len(data), o.MaxBytes)
	}
	return o.generate(data)
}

func (o Options) generate(data []byte) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("%w: %w: %v", ErrDecode, errPanic, p)
		}
	}()
	var thumb *image.NRGBA
	orientation, err := decode(data, o.MaxPixels, func(img image.Image) {
		thumb = squareThumbnail(img, o.Size)
	})
	if err != nil {
		return nil, err
	}
	flattenOnWhite(thumb)
	thumb = orient(thumb, orientation)
	var buf bytes.Buffer
	buf.Grow(o.Size * o.Size / 2)
	// thumb is opaque now, so its NRGBA pixels are also RGBA pixels, which
	// image/jpeg encodes without a per-pixel interface call.
	rgba := &image.RGBA{Pix: thumb.Pix, Stride: thumb.Stride, Rect: thumb.Rect}
	if err := jpeg.Encode(&buf, rgba, &jpeg.Options{Quality: o.Quality}); err != nil {
		return nil, fmt.Errorf("thumbnail: encode: %w", err)
	}
	return buf.Bytes(), nil
}

// acceptedTypes are the image types of the upload rules (shared/upload).
var acceptedTypes = map[string]bool{
	"image/jpeg": true,
	"image/png":  true,
	"image/webp": true,
	"image/heic": true,
	"image/heif": true,
}

func checkType(mimeType string) error {
	mt, _, err := mime.ParseMediaType(mimeType)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(mimeType))
	}
	if !acceptedTypes[mt] {
		return fmt.Errorf("%w: %q", ErrUnsupported, mimeType)
	}
	return nil
}

// readAll reads r, up to maxBytes, in one allocation when r tells its size.
func readAll(r io.Reader, maxBytes int64) ([]byte, error) {
	hint := int64(-1)
	switch v := r.(type) {
	case interface{ Len() int }: // bytes.Reader, bytes.Buffer, strings.Reader: what is left
		if hint = int64(v.Len()); hint > maxBytes {
			return nil, fmt.Errorf("%w: %d bytes, over %d", ErrTooLarge, hint, maxBytes)
		}
	case interface{ Stat() (fs.FileInfo, error) }: // os.File: its whole size, a hint
		if fi, err := v.Stat(); err == nil && fi.Mode().IsRegular() {
			hint = min(fi.Size(), maxBytes)
		}
	}
	var buf bytes.Buffer
	if hint >= 0 {
		buf.Grow(int(hint) + bytes.MinRead) // ReadFrom wants MinRead free bytes to see EOF
	}
	n, err := buf.ReadFrom(io.LimitReader(r, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("thumbnail: read: %w", err)
	}
	if n > maxBytes {
		return nil, fmt.Errorf("%w: over %d bytes", ErrTooLarge, maxBytes)
	}
	return buf.Bytes(), nil
}
