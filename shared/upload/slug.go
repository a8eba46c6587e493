package upload

import (
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// MaxSlugLen is the longest slug Slugify returns.
const MaxSlugLen = 80

// Slugify makes a URL slug of a title as the old service did: strip accents,
// lower-case, spaces and underscores to "-", drop all but [a-z0-9-], collapse
// dashes, trim them from the ends, at most 80 characters. A title with no
// usable character gives "moc".
func Slugify(title string) string {
	stripped, _, err := transform.String(
		transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC), title)
	if err != nil {
		stripped = title
	}
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(stripped) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case r == ' ' || r == '_' || r == '-' || unicode.IsSpace(r):
			if !dash && b.Len() > 0 {
				b.WriteByte('-')
				dash = true
			}
		}
	}
	s := strings.TrimRight(b.String(), "-")
	if len(s) > MaxSlugLen {
		s = strings.TrimRight(s[:MaxSlugLen], "-")
	}
	if s == "" {
		return "moc"
	}
	return s
}

// NumberedSlug is the n-th alternative of a base slug ("base-2", "base-3", …),
// kept within MaxSlugLen.
func NumberedSlug(base string, n int) string {
	suffix := "-" + strconv.Itoa(n)
	if len(base)+len(suffix) > MaxSlugLen {
		base = strings.TrimRight(base[:MaxSlugLen-len(suffix)], "-")
	}
	return base + suffix
}
