package thumbnail

import (
	"encoding/binary"
	"testing"
)

func TestJPEGOrientation(t *testing.T) {
	soi := []byte{0xFF, 0xD8}
	sos := []byte{0xFF, 0xDA, 0x00, 0x02}
	le, be := binary.LittleEndian, binary.BigEndian
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	// exif builds an Exif APP1 segment with its TIFF block edited by edit.
	exif := func(edit func(tiff []byte) []byte) []byte {
		seg := exifAPP1(le, 3, 6)
		tiff := append([]byte{}, seg[4+6:]...)
		return segment(0xE1, append([]byte("Exif\x00\x00"), edit(tiff)...))
	}
	jfif := segment(0xE0, []byte("JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"))
	xmp := segment(0xE1, []byte("http://ns.adobe.com/xap/1.0/\x00<x/>"))

	for _, tc := range []struct {
		name string
		data []byte
		want int
	}{
		{"no Exif", cat(soi, jfif, sos), 1},
		{"Exif 6 little-endian", cat(soi, exifAPP1(le, 3, 6), sos), 6},
		{"Exif 8 big-endian", cat(soi, exifAPP1(be, 3, 8), sos), 8},
		{"Exif 3 as LONG", cat(soi, exifAPP1(be, 4, 3), sos), 3},
		{"after JFIF and XMP", cat(soi, jfif, xmp, exifAPP1(le, 3, 5), sos), 5},
		{"fill bytes before a marker", cat(soi, []byte{0xFF, 0xFF}, exifAPP1(le, 3, 7), sos), 7},
		{"first Exif wins", cat(soi, exifAPP1(le, 3, 2), exifAPP1(le, 3, 6), sos), 2},
		{"Exif after the scan is not read", cat(soi, sos, exifAPP1(le, 3, 6)), 1},
		{"value 0", cat(soi, exifAPP1(le, 3, 0), sos), 1},
		{"value 9", cat(soi, exifAPP1(le, 3, 9), sos), 1},
		{"LONG over 16 bits", cat(soi, exifAPP1(le, 4, 0x10006), sos), 1},
		{"wrong type (ASCII)", cat(soi, exif(func(t []byte) []byte { le.PutUint16(t[22+2:], 2); return t }), sos), 1},
		{"count 2", cat(soi, exif(func(t []byte) []byte { le.PutUint32(t[22+4:], 2); return t }), sos), 1},
		{"bad byte order", cat(soi, exif(func(t []byte) []byte { copy(t, "XX"); return t }), sos), 1},
		{"bad magic", cat(soi, exif(func(t []byte) []byte { le.PutUint16(t[2:], 43); return t }), sos), 1},
		{"IFD offset past the end", cat(soi, exif(func(t []byte) []byte { le.PutUint32(t[4:], 1000); return t }), sos), 1},
		{"IFD offset inside the header", cat(soi, exif(func(t []byte) []byte { le.PutUint32(t[4:], 4); return t }), sos), 1},
		{"more entries than bytes", cat(soi, exif(func(t []byte) []byte { le.PutUint16(t[8:], 500); return t[:30] }), sos), 1},
		{"TIFF block cut", cat(soi, exif(func(t []byte) []byte { return t[:6] }), sos), 1},
		{"segment longer than the file", cat(soi, exifAPP1(le, 3, 6))[:20], 1},
		{"segment length 1", cat(soi, []byte{0xFF, 0xE1, 0x00, 0x01}, sos), 1},
		{"garbage between segments", cat(soi, []byte{0x00}, exifAPP1(le, 3, 6)), 1},
		{"not a JPEG", cat([]byte("\x89PNG"), exifAPP1(le, 3, 6)), 1},
		{"empty", nil, 1},
		{"SOI only", soi, 1},
		{"RST and TEM markers skipped", cat(soi, []byte{0xFF, 0xD0, 0xFF, 0x01}, exifAPP1(le, 3, 4), sos), 4},
	} {
		if got := jpegOrientation(tc.data); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
