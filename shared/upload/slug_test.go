package upload_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// slugPattern is what every slug must look like (API.md, Finalize: slug).
var slugPattern = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

func TestSlugify(t *testing.T) {
	tests := []struct {
		name, title, want string
	}{
		{"accents", "Café Crème", "cafe-creme"},
		{"accents everywhere", "Ünïcödé Çastle", "unicode-castle"},
		{"combining mark", "Cafe\u0301", "cafe"},
		{"dotted capital I", "İstanbul", "istanbul"},
		{"kelvin sign decomposes to K", "\u212Aelvin", "kelvin"},
		{"letter without decomposition is dropped", "Straße", "strae"},
		{"lower-cased", "UCS Millennium FALCON", "ucs-millennium-falcon"},
		{"spaces", "Hello World", "hello-world"},
		{"underscores", "hello_big_world", "hello-big-world"},
		{"other white space", "tab\tnew\nline\u00a0nbsp", "tab-new-line-nbsp"},
		{"digits kept", "MOC 42 v2", "moc-42-v2"},
		{"symbols dropped", "Star Wars: X-Wing (UCS)!", "star-wars-x-wing-ucs"},
		{"symbols between words dropped", "C++ & Go", "c-go"},
		{"symbol inside a word dropped", "it's a.b", "its-ab"},
		{"dashes collapsed", "a -- b", "a-b"},
		{"mixed separators collapsed", "a _-_ b", "a-b"},
		{"separators around a dropped symbol collapse", "a - . - b", "a-b"},
		{"trimmed", "  --Leading and trailing__  ", "leading-and-trailing"},
		{"unicode dash is not a separator", "Star Wars – Episode", "star-wars-episode"},
		{"empty", "", "moc"},
		{"blank", "   \t ", "moc"},
		{"symbols only", "!!! ??? ***", "moc"},
		{"dashes only", "---", "moc"},
		{"no latin letters", "日本語", "moc"},
		{"exactly 80", strings.Repeat("ab", 40), strings.Repeat("ab", 40)},
		{"cut at 80", strings.Repeat("a", 100), strings.Repeat("a", 80)},
		{"cut at 80 then accents", strings.Repeat("é", 100), strings.Repeat("e", 80)},
		{"no trailing dash after the cut", strings.Repeat("a", 79) + " b", strings.Repeat("a", 79)},
		{"no trailing dash after the cut, words", strings.Repeat("abc ", 25), strings.Repeat("abc-", 19) + "abc"},
		{"cut counts the slug, not the title", strings.Repeat("!", 100) + "x", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := upload.Slugify(tt.title)
			if got != tt.want {
				t.Errorf("Slugify(%q) = %q, want %q", tt.title, got, tt.want)
			}
			assertSlug(t, got)
		})
	}
}

func TestNumberedSlug(t *testing.T) {
	tests := []struct {
		name string
		base string
		n    int
		want string
	}{
		{"short", "castle", 2, "castle-2"},
		{"two digits", "castle", 10, "castle-10"},
		{"fits exactly", strings.Repeat("a", 78), 2, strings.Repeat("a", 78) + "-2"},
		{"base cut to fit", strings.Repeat("a", 80), 2, strings.Repeat("a", 78) + "-2"},
		{"base cut more for a long suffix", strings.Repeat("a", 80), 123, strings.Repeat("a", 76) + "-123"},
		{"no double dash after the cut", strings.Repeat("a", 77) + "-bc", 2, strings.Repeat("a", 77) + "-2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := upload.NumberedSlug(tt.base, tt.n)
			if got != tt.want {
				t.Errorf("NumberedSlug(%q, %d) = %q, want %q", tt.base, tt.n, got, tt.want)
			}
			assertSlug(t, got)
		})
	}
}

// TestNumberedSlugStaysWithinLimit tries every base length a slug can have
// with suffixes of every width.
func TestNumberedSlugStaysWithinLimit(t *testing.T) {
	for l := 1; l <= upload.MaxSlugLen; l++ {
		// Dashes at every third byte so that cuts land next to them too.
		base := upload.Slugify(strings.Repeat("ab ", l)[:l])
		for _, n := range []int{2, 9, 10, 99, 100, 12345, 1 << 30} {
			got := upload.NumberedSlug(base, n)
			assertSlug(t, got)
			if got == base {
				t.Errorf("NumberedSlug(%q, %d) = the base itself", base, n)
			}
		}
	}
}

// assertSlug fails t unless s is a well-formed slug of at most MaxSlugLen.
func assertSlug(t *testing.T, s string) {
	t.Helper()
	if len(s) > upload.MaxSlugLen {
		t.Errorf("slug %q has %d bytes, want at most %d", s, len(s), upload.MaxSlugLen)
	}
	if !slugPattern.MatchString(s) {
		t.Errorf("slug %q does not match %s", s, slugPattern)
	}
}
