package upload

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Category is what a file is for in a MOC.
type Category string

// The file categories of the contract.
const (
	CategoryInstruction Category = "instruction"
	CategoryPartsList   Category = "parts-list"
	CategoryImage       Category = "image"
	CategoryThumbnail   Category = "thumbnail"
)

// MiB is 2^20 bytes.
const MiB = 1 << 20

// Fixed protocol numbers.
const (
	// PartSizeBytes is the size of every part but the last (5 MiB, S3's minimum).
	PartSizeBytes = 5 * MiB
	// MaxParts is S3's limit on parts per multipart upload.
	MaxParts = 10000
)

// Limits are the per-category rules and quotas; see [DefaultLimits].
type Limits struct {
	PDFMaxBytes       int64 // UPLOAD_PDF_MAX_MB
	PartsListMaxBytes int64 // UPLOAD_PARTSLIST_MAX_MB
	ImageMaxBytes     int64 // UPLOAD_IMAGE_MAX_MB
	ImageMaxCount     int   // UPLOAD_IMAGE_MAX_COUNT: images and thumbnails together
	PartsListMaxCount int   // UPLOAD_PARTSLIST_MAX_COUNT
	SessionsPerDay    int   // UPLOAD_RATE_LIMIT_PER_DAY, per user per UTC day
	SessionTTLMinutes int   // UPLOAD_SESSION_TTL_MINUTES
}

// DefaultLimits are the contract's defaults.
func DefaultLimits() Limits {
	return Limits{
		PDFMaxBytes:       50 * MiB,
		PartsListMaxBytes: 10 * MiB,
		ImageMaxBytes:     20 * MiB,
		ImageMaxCount:     10,
		PartsListMaxCount: 5,
		SessionsPerDay:    100,
		SessionTTLMinutes: 30,
	}
}

var mimeTypes = map[Category][]string{
	CategoryInstruction: {"application/pdf"},
	CategoryPartsList: {
		"text/csv", "application/csv", "text/plain", "application/json", "text/json",
		"application/xml", "text/xml",
		"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
		"application/vnd.ms-excel",
	},
	CategoryImage:     {"image/jpeg", "image/png", "image/webp", "image/heic", "image/heif"},
	CategoryThumbnail: {"image/jpeg", "image/png", "image/webp", "image/heic", "image/heif"},
}

// ParseCategory accepts the contract's category names.
func ParseCategory(s string) (Category, bool) {
	c := Category(s)
	_, ok := mimeTypes[c]
	return c, ok
}

// AllowedTypes lists the MIME types a category accepts.
func AllowedTypes(c Category) []string { return mimeTypes[c] }

// CategoryForType guesses the category of a MIME type, for the seed story's
// register-file spelling that has no category field.
func CategoryForType(mime string) (Category, bool) {
	for _, c := range []Category{CategoryInstruction, CategoryImage, CategoryPartsList} {
		if typeAllowed(c, mime) {
			return c, true
		}
	}
	return "", false
}

func typeAllowed(c Category, mime string) bool {
	for _, t := range mimeTypes[c] {
		if t == mime {
			return true
		}
	}
	return false
}

// MaxBytes is the size limit of a category.
func (l Limits) MaxBytes(c Category) int64 {
	switch c {
	case CategoryInstruction:
		return l.PDFMaxBytes
	case CategoryPartsList:
		return l.PartsListMaxBytes
	default:
		return l.ImageMaxBytes
	}
}

// FileSpec is a file as a client declares it.
type FileSpec struct {
	Category Category
	Name     string
	Size     int64
	Type     string // MIME type
	Ext      string
}

// NormalizeType lower-cases a MIME type and drops parameters ("; charset=…").
func NormalizeType(t string) string {
	if i := strings.IndexByte(t, ';'); i >= 0 {
		t = t[:i]
	}
	return strings.ToLower(strings.TrimSpace(t))
}

// CheckFileName reports why a file name is unacceptable, or "" when it is fine:
// 1-255 bytes of UTF-8 (without U+FFFD, which stands for bytes that were
// not), no path separators, no "..", no control characters.
func CheckFileName(name string) string {
	switch {
	case name == "":
		return "is required"
	case len(name) > 255:
		return "must be at most 255 bytes"
	case !utf8.ValidString(name):
		return "must be valid UTF-8"
	case strings.ContainsRune(name, utf8.RuneError):
		// What a decoder puts in place of bytes that were not UTF-8.
		return "must be valid UTF-8 (it holds U+FFFD, the replacement for bytes that were not)"
	case strings.ContainsAny(name, `/\`):
		return "must not contain path separators"
	case strings.Contains(name, ".."):
		return `must not contain ".."`
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || isBidiControl(r) {
			return "must not contain control characters"
		}
	}
	return ""
}

// CheckText reports why a free text (a title, a tag, a description) cannot
// be stored, or "" when it can: it must be valid UTF-8 (a JSON decoder
// would have replaced bad bytes, so they are refused before decoding; this
// catches other callers) and hold no NUL, which PostgreSQL's text refuses.
func CheckText(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	case strings.IndexByte(s, 0) >= 0:
		return "must not contain the NUL character (U+0000)"
	}
	return ""
}

// MaxUserIDLen bounds a user id (the JWT sub claim).
const MaxUserIDLen = 128

// CheckUserID reports why a user id cannot be used, or "" when it can. The
// id is one segment of every object key of the user
// ({stage}/moc-instructions/{userId}/…), so it may only use
// A-Z a-z 0-9 . _ @ : + = | - (no "/", nothing a URL must escape), and it
// must not be "." or ".." (or only dots), segments that path-normalising
// stores and proxies fold away, moving the key out of the user's prefix.
func CheckUserID(id string) string {
	switch {
	case id == "":
		return "is empty"
	case len(id) > MaxUserIDLen:
		return fmt.Sprintf("is longer than %d characters", MaxUserIDLen)
	case strings.Trim(id, ".") == "":
		return `must not be made of dots only ("." and ".." are path segments)`
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._@:+=|-", c) >= 0) {
			return "may only use the characters A-Z a-z 0-9 . _ @ : + = | -"
		}
	}
	return ""
}

// isBidiControl matches the embedding, override and isolate controls that
// can make a name display as something else ("gpj.exe" shown as "exe.jpg").
func isBidiControl(r rune) bool {
	return r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069
}

// CheckExt reports why an extension is unacceptable, or "" when it is fine:
// 1-10 letters or digits, no dot.
func CheckExt(ext string) string {
	if ext == "" || len(ext) > 10 {
		return "must be 1-10 characters"
	}
	for _, r := range ext {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return "must be letters and digits only, without a dot"
		}
	}
	return ""
}

// fieldErrors checks the shape of one file; prefix names it in details
// ("files[2].size").
func (f FileSpec) fieldErrors(prefix string, errs map[string]string) {
	if _, ok := mimeTypes[f.Category]; !ok {
		errs[prefix+"category"] = "must be one of instruction, parts-list, image, thumbnail"
	}
	if msg := CheckFileName(f.Name); msg != "" {
		errs[prefix+"name"] = msg
	}
	if f.Size < 1 {
		errs[prefix+"size"] = "must be at least 1 byte"
	}
	if f.Type == "" {
		errs[prefix+"type"] = "is required"
	}
	if msg := CheckExt(f.Ext); msg != "" {
		errs[prefix+"ext"] = msg
	}
}

// checkTypeAndSize applies the category's MIME types (415) and size (413).
// Call it after fieldErrors found nothing.
func (l Limits) checkTypeAndSize(f FileSpec) error {
	if !typeAllowed(f.Category, f.Type) {
		return (&Error{
			Code:    CodeUnsupportedMediaType,
			Message: fmt.Sprintf("%q is not allowed for %s files", f.Type, f.Category),
		}).WithDetails(map[string]any{"name": f.Name, "allowedTypes": AllowedTypes(f.Category)})
	}
	if max := l.MaxBytes(f.Category); f.Size > max {
		return (&Error{
			Code:    CodeFileTooLarge,
			Message: fmt.Sprintf("%s files may be at most %d bytes", f.Category, max),
		}).WithDetails(map[string]any{"name": f.Name, "size": f.Size, "maxBytes": max})
	}
	return nil
}

// checkCounts applies the per-session counts to a set of files; the
// instruction rule only applies when requireInstruction is set (at create).
func (l Limits) checkCounts(files []FileSpec, requireInstruction bool) error {
	var instructions, images, partsLists int
	for _, f := range files {
		switch f.Category {
		case CategoryInstruction:
			instructions++
		case CategoryImage, CategoryThumbnail:
			images++
		case CategoryPartsList:
			partsLists++
		}
	}
	switch {
	case requireInstruction && instructions == 0:
		return Errorf(CodeBadRequest, "at least one instruction file is required")
	case images > l.ImageMaxCount:
		return Errorf(CodeBadRequest, "too many images: at most %d images and thumbnails per session", l.ImageMaxCount)
	case partsLists > l.PartsListMaxCount:
		return Errorf(CodeBadRequest, "too many parts lists: at most %d per session", l.PartsListMaxCount)
	}
	return nil
}

// TotalParts is how many parts a file of size bytes has.
func TotalParts(size, partSize int64) int {
	return int((size + partSize - 1) / partSize)
}

// expectedPartSize is the exact size part n of a file must have.
func expectedPartSize(size, partSize int64, n int) int64 {
	if int64(n)*partSize <= size {
		return partSize
	}
	return size - int64(n-1)*partSize
}
