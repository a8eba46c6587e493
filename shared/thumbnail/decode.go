package thumbnail

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/webp"
)

// codec is one image format this package decodes.
type codec struct {
	name         string
	decodeConfig func(io.Reader) (image.Config, error)
	decode       func(io.Reader) (image.Image, error)
}

var (
	codecJPEG = &codec{"jpeg", jpeg.DecodeConfig, jpeg.Decode}
	codecPNG  = &codec{"png", png.DecodeConfig, png.Decode}
	codecWebP = &codec{"webp", webp.DecodeConfig, webp.Decode}
	codecHEIF = &codec{name: "heif"} // decodeHEIF
)

// sniff picks the codec by the magic number (the same ones finalize checks,
// shared/upload's MatchesType), or returns nil.
func sniff(b []byte) *codec {
	switch {
	case len(b) >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF:
		return codecJPEG
	case len(b) >= 8 && string(b[:8]) == "\x89PNG\r\n\x1a\n":
		return codecPNG
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return codecWebP
	case len(b) >= 12 && string(b[4:8]) == "ftyp":
		// libheif checks the brands (heic, heix, mif1, ...) itself.
		return codecHEIF
	}
	return nil
}

// decode decodes data, after checking the picture's size against
// maxPixels, and calls use with the picture, which is valid only during the
// call. It returns the Exif orientation to apply (1 for none).
func decode(data []byte, maxPixels int, use func(image.Image)) (orientation int, err error) {
	c := sniff(data)
	if c == nil {
		return 0, fmt.Errorf("%w: not a JPEG, PNG, WebP or HEIF file", ErrDecode)
	}
	if c == codecHEIF {
		return 1, decodeHEIF(data, maxPixels, use)
	}
	// The header first: a few bytes can declare a picture of gigabytes.
	cfg, err := c.decodeConfig(bytes.NewReader(data))
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrDecode, c.name, err)
	}
	if err := checkPixels(cfg.Width, cfg.Height, maxPixels); err != nil {
		return 0, err
	}
	img, err := c.decode(bytes.NewReader(data))
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrDecode, c.name, err)
	}
	b := img.Bounds()
	if err := checkPixels(b.Dx(), b.Dy(), maxPixels); err != nil {
		return 0, err
	}
	use(img)
	if c == codecJPEG {
		return jpegOrientation(data), nil
	}
	return 1, nil
}

func checkPixels(w, h, maxPixels int) error {
	if w <= 0 || h <= 0 {
		return fmt.Errorf("%w: empty picture (%dx%d)", ErrDecode, w, h)
	}
	if int64(w)*int64(h) > int64(maxPixels) {
		return fmt.Errorf("%w: %dx%d is over %d pixels", ErrTooLarge, w, h, maxPixels)
	}
	return nil
}
