package upload

import (
	"bytes"
	"unicode/utf8"
)

// MagicBytesLen is how much of a file's head finalize reads to check its type.
const MagicBytesLen = 512

// MatchesType reports whether head (the first bytes of a file, up to
// [MagicBytesLen]) looks like the declared MIME type. For text parts lists it
// checks that head is UTF-8 without NUL bytes; a multi-byte rune cut at the
// end of head is allowed, since head is only a prefix when complete is false.
func MatchesType(mime string, head []byte, complete bool) bool {
	switch mime {
	case "application/pdf":
		return bytes.HasPrefix(head, []byte("%PDF"))
	case "image/jpeg":
		return bytes.HasPrefix(head, []byte{0xFF, 0xD8, 0xFF})
	case "image/png":
		return bytes.HasPrefix(head, []byte{0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A})
	case "image/webp":
		return len(head) >= 12 && string(head[0:4]) == "RIFF" && string(head[8:12]) == "WEBP"
	case "image/heic", "image/heif":
		if len(head) < 12 || string(head[4:8]) != "ftyp" {
			return false
		}
		switch string(head[8:12]) {
		case "heic", "heix", "mif1", "msf1":
			return true
		}
		return false
	case "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":
		return bytes.HasPrefix(head, []byte{'P', 'K', 0x03, 0x04})
	case "application/vnd.ms-excel":
		return bytes.HasPrefix(head, []byte{0xD0, 0xCF, 0x11, 0xE0})
	case "text/csv", "application/csv", "text/plain", "application/json", "text/json",
		"application/xml", "text/xml":
		return isText(head, complete)
	}
	return false
}

func isText(b []byte, complete bool) bool {
	if bytes.IndexByte(b, 0) >= 0 {
		return false
	}
	if !complete {
		// The prefix may end inside a multi-byte rune: drop just that
		// incomplete start of a rune, nothing else.
		for i := 1; i < utf8.UTFMax && i <= len(b); i++ {
			if tail := b[len(b)-i:]; utf8.RuneStart(tail[0]) {
				if !utf8.FullRune(tail) {
					b = b[:len(b)-i]
				}
				break
			}
		}
	}
	return utf8.Valid(b)
}
