package upload_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

func TestCheckFileName(t *testing.T) {
	tests := []struct {
		name   string
		file   string
		wantOK bool
	}{
		{"plain", "castle.pdf", true},
		{"spaces", "My Castle v2 (final).pdf", true},
		{"accents", "Château de Versailles.pdf", true},
		{"cjk", "城の説明書.pdf", true},
		{"emoji", "🏰 castle.png", true},
		{"no-break space is not a control character", "a\u00a0b.pdf", true},
		{"leading dot", ".hidden", true},
		{"single dot", "a.b.c", true},
		{"255 bytes", strings.Repeat("a", 251) + ".pdf", true},
		{"255 bytes of two-byte runes and one ascii", strings.Repeat("é", 127) + "a", true},

		{"empty", "", false},
		{"256 bytes", strings.Repeat("a", 252) + ".pdf", false},
		{"256 bytes of two-byte runes", strings.Repeat("é", 128), false},
		{"parent directory", "../x", false},
		{"parent directory, backslash", `..\x`, false},
		{"two dots only", "..", false},
		{"two dots inside", "a..b.pdf", false},
		{"two dots at the end", "castle..", false},
		{"slash", "a/b", false},
		{"absolute path", "/etc/passwd", false},
		{"backslash", `a\b`, false},
		{"NUL", "a\x00b.pdf", false},
		{"newline", "a\nb.pdf", false},
		{"carriage return", "a\rb.pdf", false},
		{"tab", "a\tb.pdf", false},
		{"escape", "a\x1bb.pdf", false},
		{"DEL", "a\x7fb.pdf", false},
		{"C1 NEL U+0085", "a\u0085b.pdf", false},
		{"C1 U+0080", "a\u0080b.pdf", false},
		{"C1 U+009F", "a\u009fb.pdf", false},
		{"invalid UTF-8", "a\xffb.pdf", false},
		{"truncated UTF-8", "caf\xc3", false},
		{"UTF-8 encoded surrogate", "a\xed\xa0\x80.pdf", false},
		{"replacement character (bytes a decoder replaced)", "a\ufffdb.pdf", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := upload.CheckFileName(tt.file)
			if (got == "") != tt.wantOK {
				t.Errorf("CheckFileName(%q) = %q, want ok=%v", tt.file, got, tt.wantOK)
			}
		})
	}
}

func TestCheckExt(t *testing.T) {
	tests := []struct {
		ext    string
		wantOK bool
	}{
		{"pdf", true},
		{"PDF", true},
		{"mp4", true},
		{"x", true},
		{"1234567890", true},
		{"abcdefghij", true},
		{"", false},
		{"12345678901", false},
		{"abcdefghijk", false},
		{".pdf", false},
		{"tar.gz", false},
		{"pdf.", false},
		{"p-f", false},
		{"p_f", false},
		{" pdf", false},
		{"pdf\x00", false},
		{"pdf/", false},
		{"é", false},
		{"ｐｄｆ", false}, // full-width letters
	}
	for _, tt := range tests {
		t.Run(tt.ext, func(t *testing.T) {
			got := upload.CheckExt(tt.ext)
			if (got == "") != tt.wantOK {
				t.Errorf("CheckExt(%q) = %q, want ok=%v", tt.ext, got, tt.wantOK)
			}
		})
	}
}

func TestNormalizeType(t *testing.T) {
	tests := []struct{ in, want string }{
		{"application/pdf", "application/pdf"},
		{"Application/PDF", "application/pdf"},
		{"text/csv; charset=utf-8", "text/csv"},
		{"  image/png  ", "image/png"},
		{" TEXT/Plain ;charset=UTF-8", "text/plain"},
		{"", ""},
		{";", ""},
	}
	for _, tt := range tests {
		if got := upload.NormalizeType(tt.in); got != tt.want {
			t.Errorf("NormalizeType(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAllowedTypes(t *testing.T) {
	images := []string{"image/jpeg", "image/png", "image/webp", "image/heic", "image/heif"}
	tests := []struct {
		category string
		wantOK   bool
		want     []string
	}{
		{"instruction", true, []string{"application/pdf"}},
		{"parts-list", true, []string{
			"text/csv", "application/csv", "text/plain", "application/json", "text/json",
			"application/xml", "text/xml",
			"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
			"application/vnd.ms-excel",
		}},
		{"image", true, images},
		{"thumbnail", true, images},
		{"video", false, nil},
		{"Image", false, nil},
		{"", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.category, func(t *testing.T) {
			c, ok := upload.ParseCategory(tt.category)
			if ok != tt.wantOK {
				t.Fatalf("ParseCategory(%q) ok = %v, want %v", tt.category, ok, tt.wantOK)
			}
			got := upload.AllowedTypes(c)
			if !slices.Equal(sorted(got), sorted(tt.want)) {
				t.Errorf("AllowedTypes(%q) = %q, want %q", c, got, tt.want)
			}
		})
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestCategoryForType(t *testing.T) {
	tests := []struct {
		mime   string
		want   upload.Category
		wantOK bool
	}{
		{"application/pdf", upload.CategoryInstruction, true},
		{"image/png", upload.CategoryImage, true},
		{"image/heif", upload.CategoryImage, true},
		{"text/csv", upload.CategoryPartsList, true},
		{"application/vnd.ms-excel", upload.CategoryPartsList, true},
		{"image/gif", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := upload.CategoryForType(tt.mime)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("CategoryForType(%q) = %q, %v; want %q, %v", tt.mime, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestDefaultLimits(t *testing.T) {
	l := upload.DefaultLimits()
	tests := []struct {
		category upload.Category
		want     int64
	}{
		{upload.CategoryInstruction, 50 << 20},
		{upload.CategoryPartsList, 10 << 20},
		{upload.CategoryImage, 20 << 20},
		{upload.CategoryThumbnail, 20 << 20},
	}
	for _, tt := range tests {
		if got := l.MaxBytes(tt.category); got != tt.want {
			t.Errorf("MaxBytes(%s) = %d, want %d", tt.category, got, tt.want)
		}
	}
	if l.ImageMaxCount != 10 || l.PartsListMaxCount != 5 || l.SessionsPerDay != 100 || l.SessionTTLMinutes != 30 {
		t.Errorf("DefaultLimits() = %+v, want counts 10/5, 100 per day, 30 minutes", l)
	}
	if upload.PartSizeBytes != 5242880 {
		t.Errorf("PartSizeBytes = %d, want 5242880", upload.PartSizeBytes)
	}
}

func TestTotalParts(t *testing.T) {
	const ps = upload.PartSizeBytes
	tests := []struct {
		size, partSize int64
		want           int
	}{
		{1, ps, 1},
		{ps - 1, ps, 1},
		{ps, ps, 1},
		{ps + 1, ps, 2},
		{2*ps - 1, ps, 2},
		{2 * ps, ps, 2},
		{12 * upload.MiB, ps, 3},
		{50 * upload.MiB, ps, 10},
		{50*upload.MiB + 1, ps, 11},
		{upload.MaxParts * ps, ps, upload.MaxParts},
		{7, 1, 7},
		{7, 3, 3},
	}
	for _, tt := range tests {
		if got := upload.TotalParts(tt.size, tt.partSize); got != tt.want {
			t.Errorf("TotalParts(%d, %d) = %d, want %d", tt.size, tt.partSize, got, tt.want)
		}
	}
}

func TestCheckUserID(t *testing.T) {
	for _, id := range []string{"u1", "user@example.com", "a.b_c-d:e+f=g|h", ".a", "a..b", "..a", strings.Repeat("u", 128)} {
		if msg := upload.CheckUserID(id); msg != "" {
			t.Errorf("CheckUserID(%q) = %q, want ok", id, msg)
		}
	}
	for _, id := range []string{"", ".", "..", "....", "a/b", "a\\b", "u 1", "ü", "u\x00", "u%2f", strings.Repeat("u", 129)} {
		if msg := upload.CheckUserID(id); msg == "" {
			t.Errorf("CheckUserID(%q) = ok, want a refusal", id)
		}
	}
}

func TestCheckText(t *testing.T) {
	for _, s := range []string{"", "My Castle", "城 🏰", "tab\tand\nnewline"} {
		if msg := upload.CheckText(s); msg != "" {
			t.Errorf("CheckText(%q) = %q, want ok", s, msg)
		}
	}
	for _, s := range []string{"\x00", "a\x00b", "caf\xe9", "\xff"} {
		if msg := upload.CheckText(s); msg == "" {
			t.Errorf("CheckText(%q) = ok, want a refusal", s)
		}
	}
}
