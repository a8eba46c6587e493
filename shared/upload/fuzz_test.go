package upload_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// Seed corpora beyond the ones below live in testdata/fuzz/<FuzzName>/.

func FuzzSlugify(f *testing.F) {
	for _, s := range []string{
		"", "Café Crème", "hello_world", "  --a--  ", "日本語", "İstanbul", "\u212A",
		strings.Repeat("abc ", 30), strings.Repeat("é", 100), "a\u0301\u0302b", "\xff\xfe",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, title string) {
		got := upload.Slugify(title)
		assertSlug(t, got)
		if again := upload.Slugify(got); again != got {
			t.Errorf("Slugify(%q) = %q, but Slugify(%q) = %q", title, got, got, again)
		}
		for _, n := range []int{2, 10, 12345} {
			assertSlug(t, upload.NumberedSlug(got, n))
		}
	})
}

func FuzzMatchesType(f *testing.F) {
	types := []string{"application/pdf", "image/jpeg", "image/png", "image/webp", "image/heic", "image/heif",
		xlsxType, xlsType, "image/gif", ""}
	types = append(types, textTypes...)
	heads := []string{"%PDF-1.7", "\xFF\xD8\xFF\xE0", "\x89PNG\r\n\x1a\n", "RIFF\x00\x00\x00\x00WEBPVP8 ",
		"\x00\x00\x00\x18ftypheic", "PK\x03\x04", "\xD0\xCF\x11\xE0", "id,qty\n3001,4\n", "", "\x00",
		strings.Repeat("a", 510) + "\xe2\x82"}
	for i, mime := range types {
		f.Add(mime, []byte(heads[i%len(heads)]), i%2 == 0)
	}
	known := map[string]bool{}
	for _, c := range []upload.Category{upload.CategoryInstruction, upload.CategoryPartsList, upload.CategoryImage} {
		for _, mime := range upload.AllowedTypes(c) {
			known[mime] = true
		}
	}
	text := map[string]bool{}
	for _, mime := range textTypes {
		text[mime] = true
	}
	f.Fuzz(func(t *testing.T, mime string, head []byte, complete bool) {
		got := upload.MatchesType(mime, head, complete)
		if got && !known[mime] {
			t.Errorf("MatchesType(%q, %q, %v) = true for a type outside the contract", mime, head, complete)
		}
		other := upload.MatchesType(mime, head, !complete)
		switch {
		case !text[mime] && got != other:
			t.Errorf("MatchesType(%q, %q): complete changes a binary type's answer", mime, head)
		case text[mime] && complete && got && !other:
			t.Errorf("MatchesType(%q, %q): a whole valid text is refused as a prefix", mime, head)
		case text[mime] && got && (strings.ContainsRune(string(head), 0)):
			t.Errorf("MatchesType(%q, %q, %v) = true for text with NUL", mime, head, complete)
		case text[mime] && complete && got != utf8.Valid(head) && !strings.ContainsRune(string(head), 0):
			t.Errorf("MatchesType(%q, %q, true) = %v, want utf8.Valid", mime, head, got)
		}
	})
}

func FuzzCheckFileName(f *testing.F) {
	for _, s := range []string{
		"castle.pdf", "../x", "a/b", `a\b`, "..", "a\x00b", "a\u0085b", "a\x7f", "\xff",
		strings.Repeat("a", 255), strings.Repeat("é", 128), "🏰.png",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if upload.CheckFileName(name) != "" {
			return
		}
		switch {
		case name == "" || len(name) > 255:
			t.Errorf("accepted a name of %d bytes: %q", len(name), name)
		case !utf8.ValidString(name):
			t.Errorf("accepted invalid UTF-8: %q", name)
		case strings.ContainsAny(name, `/\`):
			t.Errorf("accepted a path separator: %q", name)
		case strings.Contains(name, ".."):
			t.Errorf(`accepted "..": %q`, name)
		}
		for _, r := range name {
			if r < 0x20 || r >= 0x7f && r < 0xa0 {
				t.Errorf("accepted control character %U: %q", r, name)
			}
		}
	})
}
