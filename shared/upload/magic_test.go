package upload_test

import (
	"strings"
	"testing"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// textTypes are the parts-list types checked as UTF-8 text.
var textTypes = []string{
	"text/csv", "application/csv", "text/plain", "application/json", "text/json",
	"application/xml", "text/xml",
}

const (
	xlsxType = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
	xlsType  = "application/vnd.ms-excel"
)

// withTail returns a head of exactly n bytes: ASCII padding followed by tail.
func withTail(t *testing.T, n int, tail string) []byte {
	t.Helper()
	if len(tail) > n {
		t.Fatalf("tail of %d bytes does not fit in %d", len(tail), n)
	}
	return []byte(strings.Repeat("a", n-len(tail)) + tail)
}

func TestMatchesTypeBinary(t *testing.T) {
	heic := func(brand string) string { return "\x00\x00\x00\x18ftyp" + brand + "\x00\x00\x00\x00mif1heic" }
	tests := []struct {
		name string
		mime string
		head string
		want bool
	}{
		{"pdf", "application/pdf", "%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", true},
		{"pdf: magic only", "application/pdf", "%PDF", true},
		{"pdf: too short", "application/pdf", "%PD", false},
		{"pdf: lower case", "application/pdf", "%pdf-1.4", false},
		{"pdf: not at 0", "application/pdf", " %PDF-1.4", false},
		{"pdf: empty", "application/pdf", "", false},
		{"pdf: png bytes", "application/pdf", "\x89PNG\r\n\x1a\n", false},

		{"jpeg", "image/jpeg", "\xFF\xD8\xFF\xE0\x00\x10JFIF", true},
		{"jpeg: exif", "image/jpeg", "\xFF\xD8\xFF\xE1", true},
		{"jpeg: too short", "image/jpeg", "\xFF\xD8", false},
		{"jpeg: third byte wrong", "image/jpeg", "\xFF\xD8\xFE\xE0", false},
		{"jpeg: pdf bytes", "image/jpeg", "%PDF-1.7", false},

		{"png", "image/png", "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", true},
		{"png: signature only", "image/png", "\x89PNG\r\n\x1a\n", true},
		{"png: 7 bytes", "image/png", "\x89PNG\r\n\x1a", false},
		{"png: last byte wrong", "image/png", "\x89PNG\r\n\x1a\x0b", false},
		{"png: no high byte", "image/png", "PNG\r\n\x1a\n", false},

		{"webp", "image/webp", "RIFF\x24\x00\x00\x00WEBPVP8 ", true},
		{"webp: 12 bytes", "image/webp", "RIFF\x00\x00\x00\x00WEBP", true},
		{"webp: WEBP at 0 (the old validator's bug)", "image/webp", "WEBPRIFF\x00\x00\x00\x00VP8 ", false},
		{"webp: WEBP at 0 only", "image/webp", "WEBP\x00\x00\x00\x00\x00\x00\x00\x00", false},
		{"webp: RIFF of a WAVE", "image/webp", "RIFF\x24\x00\x00\x00WAVEfmt ", false},
		{"webp: 11 bytes", "image/webp", "RIFF\x00\x00\x00\x00WEB", false},
		{"webp: WEBP at 4", "image/webp", "RIFFWEBP\x00\x00\x00\x00", false},

		{"heic: heic", "image/heic", heic("heic"), true},
		{"heic: heix", "image/heic", heic("heix"), true},
		{"heic: mif1", "image/heic", heic("mif1"), true},
		{"heic: msf1", "image/heic", heic("msf1"), true},
		{"heif: heic", "image/heif", heic("heic"), true},
		{"heif: heix", "image/heif", heic("heix"), true},
		{"heif: mif1", "image/heif", heic("mif1"), true},
		{"heif: msf1", "image/heif", heic("msf1"), true},
		{"heic: 12 bytes", "image/heic", "\x00\x00\x00\x18ftypheic", true},
		{"heic: unknown brand", "image/heic", heic("avif"), false},
		{"heif: unknown brand", "image/heif", heic("isom"), false},
		{"heic: brand case matters", "image/heic", heic("HEIC"), false},
		{"heic: ftyp at 0", "image/heic", "ftypheic\x00\x00\x00\x00", false},
		{"heic: no ftyp", "image/heic", "\x00\x00\x00\x18moovheic", false},
		{"heic: 11 bytes", "image/heic", "\x00\x00\x00\x18ftyphei", false},
		{"heic: empty", "image/heic", "", false},

		{"xlsx", xlsxType, "PK\x03\x04\x14\x00\x06\x00", true},
		{"xlsx: magic only", xlsxType, "PK\x03\x04", true},
		{"xlsx: empty zip", xlsxType, "PK\x05\x06", false},
		{"xlsx: too short", xlsxType, "PK\x03", false},
		{"xlsx: ole bytes", xlsxType, "\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", false},

		{"xls", xlsType, "\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", true},
		{"xls: magic only", xlsType, "\xD0\xCF\x11\xE0", true},
		{"xls: too short", xlsType, "\xD0\xCF\x11", false},
		{"xls: zip bytes", xlsType, "PK\x03\x04", false},

		{"unknown type", "image/gif", "GIF89a", false},
		{"octet-stream", "application/octet-stream", "%PDF-1.7", false},
		{"empty type", "", "%PDF-1.7", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, complete := range []bool{false, true} {
				if got := upload.MatchesType(tt.mime, []byte(tt.head), complete); got != tt.want {
					t.Errorf("MatchesType(%q, %q, %v) = %v, want %v", tt.mime, tt.head, complete, got, tt.want)
				}
			}
		})
	}
}

func TestMatchesTypeText(t *testing.T) {
	euro := "€"   // 3 bytes
	castle := "🏰" // 4 bytes
	tests := []struct {
		name         string
		head         []byte
		wantPrefix   bool // complete == false: head is the first 512 bytes of a longer file
		wantComplete bool // complete == true: head is the whole file
	}{
		{name: "ascii csv", head: []byte("part,color,qty\n3001,red,4\n"), wantPrefix: true, wantComplete: true},
		{name: "utf-8 csv", head: []byte("pièce;couleur\n3001;rouge €\n"), wantPrefix: true, wantComplete: true},
		{name: "json", head: []byte(`{"parts":[{"id":"3001","name":"Brick 2 × 4"}]}`), wantPrefix: true, wantComplete: true},
		{name: "xml with BOM", head: []byte("\xEF\xBB\xBF<?xml version=\"1.0\"?><parts/>"), wantPrefix: true, wantComplete: true},
		{name: "one byte", head: []byte("a"), wantPrefix: true, wantComplete: true},
		{name: "real U+FFFD inside", head: []byte("a\uFFFDb"), wantPrefix: true, wantComplete: true},
		{name: "real U+FFFD at the end", head: withTail(t, 512, "\uFFFD"), wantPrefix: true, wantComplete: true},
		{name: "NUL", head: []byte("part\x00color")},
		{name: "NUL at the end", head: withTail(t, 512, "\x00")},
		{name: "UTF-16 (NUL bytes)", head: []byte("\xFF\xFEp\x00a\x00r\x00t\x00")},
		{name: "invalid byte inside", head: []byte("part\xFFcolor")},
		{name: "latin-1", head: []byte("pi\xe8ce;couleur\n")},
		{name: "overlong encoding", head: []byte("a\xC0\xAFb")},
		{name: "surrogate", head: []byte("a\xED\xA0\x80b")},
		{name: "NUL before a cut rune", head: withTail(t, 512, "\x00"+euro[:2])},
		{name: "whole rune at the end", head: withTail(t, 512, euro), wantPrefix: true, wantComplete: true},
		{name: "3-byte rune cut after 1 byte", head: withTail(t, 512, euro[:1]), wantPrefix: true},
		{name: "3-byte rune cut after 2 bytes", head: withTail(t, 512, euro[:2]), wantPrefix: true},
		{name: "4-byte rune whole", head: withTail(t, 512, castle), wantPrefix: true, wantComplete: true},
		{name: "4-byte rune cut after 1 byte", head: withTail(t, 512, castle[:1]), wantPrefix: true},
		{name: "4-byte rune cut after 2 bytes", head: withTail(t, 512, castle[:2]), wantPrefix: true},
		{name: "4-byte rune cut after 3 bytes", head: withTail(t, 512, castle[:3]), wantPrefix: true},
		{name: "2-byte rune cut after 1 byte", head: withTail(t, 512, "é"[:1]), wantPrefix: true},

		{name: "real U+FFFD before a cut rune", head: withTail(t, 512, "\uFFFD"+euro[:2]), wantPrefix: true},
		{name: "real U+FFFD before a cut 2-byte rune", head: withTail(t, 512, "\uFFFD\xC3"), wantPrefix: true},
		{name: "0xFF at the end", head: withTail(t, 512, "\xFF")},
		{name: "three 0xFF at the end", head: withTail(t, 512, "\xFF\xFF\xFF")},
		{name: "stray continuation byte at the end", head: withTail(t, 512, "a\x80")},
		{name: "invalid byte before a cut rune", head: withTail(t, 512, "\xFF"+euro[:2])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, mime := range textTypes {
				if got := upload.MatchesType(mime, tt.head, true); got != tt.wantComplete {
					t.Errorf("MatchesType(%q, …%q, complete=true) = %v, want %v", mime, tail(tt.head), got, tt.wantComplete)
				}
				if got := upload.MatchesType(mime, tt.head, false); got != tt.wantPrefix {
					t.Errorf("MatchesType(%q, …%q, complete=false) = %v, want %v", mime, tail(tt.head), got, tt.wantPrefix)
				}
			}
		})
	}
}

// tail is the end of a head, short enough for a failure message.
func tail(b []byte) []byte {
	if len(b) > 12 {
		return b[len(b)-12:]
	}
	return b
}

// TestMatchesTypeEveryContractType makes sure no type of the contract falls
// through to "unknown": each accepts some head.
func TestMatchesTypeEveryContractType(t *testing.T) {
	good := map[string]string{
		"application/pdf": "%PDF-1.4",
		"image/jpeg":      "\xFF\xD8\xFF\xDB",
		"image/png":       "\x89PNG\r\n\x1a\n",
		"image/webp":      "RIFF\x00\x00\x00\x00WEBP",
		"image/heic":      "\x00\x00\x00\x18ftypheic",
		"image/heif":      "\x00\x00\x00\x18ftypmif1",
		xlsxType:          "PK\x03\x04",
		xlsType:           "\xD0\xCF\x11\xE0",
	}
	for _, mime := range textTypes {
		good[mime] = "id,qty\n"
	}
	for _, c := range []upload.Category{upload.CategoryInstruction, upload.CategoryPartsList, upload.CategoryImage, upload.CategoryThumbnail} {
		for _, mime := range upload.AllowedTypes(c) {
			head, ok := good[mime]
			if !ok {
				t.Errorf("%s type %q has no test head", c, mime)
				continue
			}
			if !upload.MatchesType(mime, []byte(head), true) {
				t.Errorf("MatchesType(%q, %q) = false, want true", mime, head)
			}
		}
	}
}
