package thumbnail

import (
	"encoding/binary"
	"image"

	"github.com/disintegration/imaging"
)

// jpegOrientation returns the Exif orientation (1-8) of a JPEG file, or 1
// when it has none or an invalid one. It walks the marker segments before
// the first scan and reads tag 0x0112 of IFD0 in the first APP1 segment that
// holds Exif data ("Exif\0\0" and a TIFF header); other APP1 segments (XMP)
// are skipped. It never reads outside b.
func jpegOrientation(b []byte) int {
	if len(b) < 2 || b[0] != 0xFF || b[1] != 0xD8 {
		return 1
	}
	i := 2
	for i+2 <= len(b) {
		if b[i] != 0xFF {
			return 1 // not a marker: corrupt, or entropy-coded data
		}
		marker := b[i+1]
		switch {
		case marker == 0xFF: // fill byte before a marker
			i++
			continue
		case marker == 0x01 || marker >= 0xD0 && marker <= 0xD8: // TEM, RSTn, SOI: no length
			i += 2
			continue
		case marker == 0xDA || marker == 0xD9: // SOS, EOI: Exif comes before
			return 1
		}
		if i+4 > len(b) {
			return 1
		}
		n := int(binary.BigEndian.Uint16(b[i+2:])) // counts its own 2 bytes
		if n < 2 || i+2+n > len(b) {
			return 1
		}
		seg := b[i+4 : i+2+n]
		if marker == 0xE1 && len(seg) >= 6 && string(seg[:5]) == "Exif\x00" {
			return exifOrientation(seg[6:])
		}
		i += 2 + n
	}
	return 1
}

// exifOrientation reads the orientation tag of IFD0 in a TIFF structure (the
// Exif payload), or returns 1.
func exifOrientation(t []byte) int {
	if len(t) < 8 {
		return 1
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	if bo.Uint16(t[2:]) != 42 {
		return 1
	}
	ifd := uint64(bo.Uint32(t[4:]))
	if ifd < 8 || ifd+2 > uint64(len(t)) {
		return 1
	}
	count := uint64(bo.Uint16(t[ifd:]))
	for e := range count {
		p := ifd + 2 + 12*e
		if p+12 > uint64(len(t)) {
			return 1
		}
		entry := t[p : p+12]
		if bo.Uint16(entry) != 0x0112 { // Orientation
			continue
		}
		var v uint32
		switch typ := bo.Uint16(entry[2:]); {
		case bo.Uint32(entry[4:]) != 1: // a count other than one value
			return 1
		case typ == 3: // SHORT, as the standard says
			v = uint32(bo.Uint16(entry[8:]))
		case typ == 4: // LONG, as a few writers do
			v = bo.Uint32(entry[8:])
		default:
			return 1
		}
		if v < 1 || v > 8 {
			return 1
		}
		return int(v)
	}
	return 1
}

// orient turns img as Exif orientation o says, so it displays upright.
// Per the Exif standard, o tells where the stored 0th row and 0th column
// are to be displayed: 6 is "0th row on the right, 0th column at the top",
// so the picture is turned 90 degrees clockwise.
func orient(img *image.NRGBA, o int) *image.NRGBA {
	switch o {
	case 2: // 0th row top, 0th column right
		return imaging.FlipH(img)
	case 3: // bottom, right
		return imaging.Rotate180(img)
	case 4: // bottom, left
		return imaging.FlipV(img)
	case 5: // left, top
		return imaging.Transpose(img)
	case 6: // right, top
		return imaging.Rotate270(img) // imaging turns counter-clockwise
	case 7: // right, bottom
		return imaging.Transverse(img)
	case 8: // left, bottom
		return imaging.Rotate90(img)
	}
	return img
}
