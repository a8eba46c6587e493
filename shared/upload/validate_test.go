package upload_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// errReachedStore is what reachedStore returns: the request got past
// every check that needs no database.
var errReachedStore = errors.New("reached the store")

// reachedStore is a Store that refuses every transaction without running it.
type reachedStore struct{}

func (reachedStore) InTx(context.Context, func(upload.Tx) error) error { return errReachedStore }

// checkService is a Service for the checks that run before the store: with
// a nil Store, anything that got that far panics; with reached set, it ends
// at errReachedStore instead.
func checkService(t *testing.T, reached bool) *upload.Service {
	t.Helper()
	s := &upload.Service{
		Limits: upload.DefaultLimits(),
		Now:    func() time.Time { return time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC) },
		NewID:  func() string { return "00000000-0000-4000-8000-000000000001" },
	}
	if reached {
		s.Store = reachedStore{}
	}
	return s
}

func pdf(size int64) upload.FileSpec {
	return upload.FileSpec{Category: upload.CategoryInstruction, Name: fmt.Sprintf("manual-%d.pdf", size), Size: size, Type: "application/pdf", Ext: "pdf"}
}

func image(c upload.Category, i int) upload.FileSpec {
	return upload.FileSpec{Category: c, Name: fmt.Sprintf("%s-%d.png", c, i), Size: 1000, Type: "image/png", Ext: "png"}
}

func partsList(i int) upload.FileSpec {
	return upload.FileSpec{Category: upload.CategoryPartsList, Name: fmt.Sprintf("parts-%d.csv", i), Size: 1000, Type: "text/csv", Ext: "csv"}
}

func withImages(files []upload.FileSpec, c upload.Category, n int) []upload.FileSpec {
	for i := range n {
		files = append(files, image(c, i))
	}
	return files
}

func withPartsLists(files []upload.FileSpec, n int) []upload.FileSpec {
	for i := range n {
		files = append(files, partsList(i))
	}
	return files
}

func modify(f upload.FileSpec, change func(*upload.FileSpec)) upload.FileSpec {
	change(&f)
	return f
}

// wantError checks that err is a client error with code, and that its
// details.errors (for VALIDATION_ERROR) names exactly fields.
func wantError(t *testing.T, err error, code string, fields ...string) *upload.Error {
	t.Helper()
	if code == "" {
		if !errors.Is(err, errReachedStore) {
			t.Fatalf("err = %v, want the checks to pass", err)
		}
		return nil
	}
	e, ok := upload.AsError(err)
	if !ok {
		t.Fatalf("err = %v (%T), want a client error %s", err, err, code)
	}
	if e.Code != code {
		t.Fatalf("code = %s (%s), want %s", e.Code, e.Message, code)
	}
	if e.Message == "" {
		t.Errorf("%s has no message", code)
	}
	if code == upload.CodeValidation {
		errs, ok := e.Details["errors"].(map[string]string)
		if !ok {
			t.Fatalf("details.errors = %#v, want a map of fields", e.Details["errors"])
		}
		var got []string
		for f, msg := range errs {
			got = append(got, f)
			if msg == "" {
				t.Errorf("details.errors[%q] is empty", f)
			}
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(fields))
		if !slices.Equal(got, want) {
			t.Errorf("details.errors names %q, want %q (%v)", got, want, errs)
		}
	}
	return e
}

func TestCreateSessionChecks(t *testing.T) {
	images := upload.AllowedTypes(upload.CategoryImage)
	tests := []struct {
		name   string
		files  []upload.FileSpec
		code   string   // "" when every check passes
		fields []string // details.errors of a VALIDATION_ERROR
		// details of a 413/415
		allowedTypes []string
		maxBytes     int64
	}{
		{name: "one pdf", files: []upload.FileSpec{pdf(1)}},
		{name: "pdf at its limit", files: []upload.FileSpec{pdf(50 * upload.MiB)}},
		{name: "several instructions", files: []upload.FileSpec{pdf(1), pdf(2), pdf(3)}},
		{name: "every category at its limit", files: withPartsLists(withImages(withImages(
			[]upload.FileSpec{pdf(1)}, upload.CategoryImage, 5), upload.CategoryThumbnail, 5), 5)},
		{name: "parts list at its limit", files: []upload.FileSpec{pdf(1), modify(partsList(0), func(f *upload.FileSpec) { f.Size = 10 * upload.MiB })}},
		{name: "image at its limit", files: []upload.FileSpec{pdf(1), modify(image(upload.CategoryImage, 0), func(f *upload.FileSpec) { f.Size = 20 * upload.MiB })}},

		{name: "no files", files: nil, code: upload.CodeValidation, fields: []string{"files"}},
		{name: "empty list", files: []upload.FileSpec{}, code: upload.CodeValidation, fields: []string{"files"}},
		{name: "size 0", files: []upload.FileSpec{pdf(0)}, code: upload.CodeValidation, fields: []string{"files[0].size"}},
		{name: "negative size", files: []upload.FileSpec{pdf(-1)}, code: upload.CodeValidation, fields: []string{"files[0].size"}},
		{name: "every field of the second file", files: []upload.FileSpec{pdf(1), {}},
			code: upload.CodeValidation, fields: []string{"files[1].category", "files[1].name", "files[1].size", "files[1].type", "files[1].ext"}},
		{name: "bad name and ext", files: []upload.FileSpec{modify(pdf(1), func(f *upload.FileSpec) { f.Name = "../manual.pdf"; f.Ext = ".pdf" })},
			code: upload.CodeValidation, fields: []string{"files[0].name", "files[0].ext"}},
		{name: "unknown category", files: []upload.FileSpec{pdf(1), modify(image(upload.CategoryImage, 0), func(f *upload.FileSpec) { f.Category = "video" })},
			code: upload.CodeValidation, fields: []string{"files[1].category"}},
		{name: "fields of two files", files: []upload.FileSpec{pdf(0), modify(pdf(1), func(f *upload.FileSpec) { f.Ext = "toolongext1" })},
			code: upload.CodeValidation, fields: []string{"files[0].size", "files[1].ext"}},
		{name: "validation comes before type and size", files: []upload.FileSpec{modify(pdf(1), func(f *upload.FileSpec) { f.Type = "image/png"; f.Size = 1 << 40 }), pdf(0)},
			code: upload.CodeValidation, fields: []string{"files[1].size"}},

		{name: "png as instruction", files: []upload.FileSpec{modify(pdf(1), func(f *upload.FileSpec) { f.Type = "image/png" })},
			code: upload.CodeUnsupportedMediaType, allowedTypes: []string{"application/pdf"}},
		{name: "pdf as image", files: []upload.FileSpec{pdf(1), modify(image(upload.CategoryImage, 0), func(f *upload.FileSpec) { f.Type = "application/pdf" })},
			code: upload.CodeUnsupportedMediaType, allowedTypes: images},
		{name: "gif as thumbnail", files: []upload.FileSpec{pdf(1), modify(image(upload.CategoryThumbnail, 0), func(f *upload.FileSpec) { f.Type = "image/gif" })},
			code: upload.CodeUnsupportedMediaType, allowedTypes: images},
		{name: "html as parts list", files: []upload.FileSpec{pdf(1), modify(partsList(0), func(f *upload.FileSpec) { f.Type = "text/html" })},
			code: upload.CodeUnsupportedMediaType, allowedTypes: upload.AllowedTypes(upload.CategoryPartsList)},
		{name: "type is not normalized by the domain", files: []upload.FileSpec{modify(pdf(1), func(f *upload.FileSpec) { f.Type = "Application/PDF" })},
			code: upload.CodeUnsupportedMediaType, allowedTypes: []string{"application/pdf"}},

		{name: "pdf over its limit", files: []upload.FileSpec{pdf(50*upload.MiB + 1)},
			code: upload.CodeFileTooLarge, maxBytes: 50 * upload.MiB},
		{name: "parts list over its limit", files: []upload.FileSpec{pdf(1), modify(partsList(0), func(f *upload.FileSpec) { f.Size = 10*upload.MiB + 1 })},
			code: upload.CodeFileTooLarge, maxBytes: 10 * upload.MiB},
		{name: "image over its limit", files: []upload.FileSpec{pdf(1), modify(image(upload.CategoryImage, 0), func(f *upload.FileSpec) { f.Size = 20*upload.MiB + 1 })},
			code: upload.CodeFileTooLarge, maxBytes: 20 * upload.MiB},
		{name: "thumbnail over its limit", files: []upload.FileSpec{pdf(1), modify(image(upload.CategoryThumbnail, 0), func(f *upload.FileSpec) { f.Size = 20*upload.MiB + 1 })},
			code: upload.CodeFileTooLarge, maxBytes: 20 * upload.MiB},
		{name: "type comes before size", files: []upload.FileSpec{modify(pdf(1<<40), func(f *upload.FileSpec) { f.Type = "image/png" })},
			code: upload.CodeUnsupportedMediaType, allowedTypes: []string{"application/pdf"}},

		{name: "no instruction", files: []upload.FileSpec{image(upload.CategoryImage, 0)}, code: upload.CodeBadRequest},
		{name: "only parts lists", files: withPartsLists(nil, 2), code: upload.CodeBadRequest},
		{name: "11 images", files: withImages([]upload.FileSpec{pdf(1)}, upload.CategoryImage, 11), code: upload.CodeBadRequest},
		{name: "11 thumbnails", files: withImages([]upload.FileSpec{pdf(1)}, upload.CategoryThumbnail, 11), code: upload.CodeBadRequest},
		{name: "6 images and 5 thumbnails", files: withImages(withImages([]upload.FileSpec{pdf(1)}, upload.CategoryImage, 6), upload.CategoryThumbnail, 5), code: upload.CodeBadRequest},
		{name: "6 parts lists", files: withPartsLists([]upload.FileSpec{pdf(1)}, 6), code: upload.CodeBadRequest},
		{name: "size comes before counts", files: withImages([]upload.FileSpec{pdf(50*upload.MiB + 1)}, upload.CategoryImage, 11),
			code: upload.CodeFileTooLarge, maxBytes: 50 * upload.MiB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := checkService(t, tt.code == "")
			sess, err := s.CreateSession(context.Background(), "u1", tt.files)
			e := wantError(t, err, tt.code, tt.fields...)
			if sess != nil {
				t.Errorf("session = %+v, want nil", sess)
			}
			if e == nil {
				return
			}
			if tt.allowedTypes != nil {
				got, _ := e.Details["allowedTypes"].([]string)
				if !slices.Equal(got, tt.allowedTypes) {
					t.Errorf("details.allowedTypes = %q, want %q", got, tt.allowedTypes)
				}
				if e.Details["name"] == nil {
					t.Errorf("details = %v, want the file's name", e.Details)
				}
			}
			if tt.maxBytes != 0 {
				if got := e.Details["maxBytes"]; got != tt.maxBytes {
					t.Errorf("details.maxBytes = %v, want %d", got, tt.maxBytes)
				}
			}
		})
	}
}

// TestCreateSessionEveryType: every MIME type of the contract passes for
// its category.
func TestCreateSessionEveryType(t *testing.T) {
	for _, c := range []upload.Category{upload.CategoryInstruction, upload.CategoryPartsList, upload.CategoryImage, upload.CategoryThumbnail} {
		for _, mime := range upload.AllowedTypes(c) {
			files := []upload.FileSpec{pdf(1), {Category: c, Name: "file", Size: 1, Type: mime, Ext: "bin"}}
			_, err := checkService(t, true).CreateSession(context.Background(), "u1", files)
			if !errors.Is(err, errReachedStore) {
				t.Errorf("%s %s: err = %v, want the checks to pass", c, mime, err)
			}
		}
	}
}

// TestCreateSessionConfiguredLimits: the limits come from the Service, not
// from the defaults.
func TestCreateSessionConfiguredLimits(t *testing.T) {
	s := checkService(t, false)
	s.Limits.PDFMaxBytes = 1 * upload.MiB
	s.Limits.ImageMaxCount = 2
	s.Limits.PartsListMaxCount = 1

	e := wantError(t, mustFail(s.CreateSession(context.Background(), "u1", []upload.FileSpec{pdf(upload.MiB + 1)})), upload.CodeFileTooLarge)
	if got := e.Details["maxBytes"]; got != int64(upload.MiB) {
		t.Errorf("details.maxBytes = %v, want %d", got, upload.MiB)
	}
	wantError(t, mustFail(s.CreateSession(context.Background(), "u1", withImages([]upload.FileSpec{pdf(1)}, upload.CategoryImage, 3))), upload.CodeBadRequest)
	wantError(t, mustFail(s.CreateSession(context.Background(), "u1", withPartsLists([]upload.FileSpec{pdf(1)}, 2))), upload.CodeBadRequest)
}

func mustFail[T any](_ T, err error) error { return err }

func TestRegisterFileChecks(t *testing.T) {
	md5 := strings.Repeat("a", 32)
	sha := strings.Repeat("B", 64)
	tests := []struct {
		name   string
		spec   upload.FileSpec
		sums   *upload.Checksums
		code   string
		fields []string
	}{
		{name: "pdf", spec: pdf(1)},
		{name: "checksums", spec: pdf(1), sums: &upload.Checksums{MD5: md5, SHA256: sha}},
		{name: "empty checksums", spec: pdf(1), sums: &upload.Checksums{}},

		{name: "empty spec", spec: upload.FileSpec{}, code: upload.CodeValidation, fields: []string{"category", "name", "size", "type", "ext"}},
		{name: "size 0", spec: pdf(0), code: upload.CodeValidation, fields: []string{"size"}},
		{name: "md5 too short", spec: pdf(1), sums: &upload.Checksums{MD5: md5[:31]}, code: upload.CodeValidation, fields: []string{"checksums.md5"}},
		{name: "md5 not hex", spec: pdf(1), sums: &upload.Checksums{MD5: strings.Repeat("z", 32)}, code: upload.CodeValidation, fields: []string{"checksums.md5"}},
		{name: "sha256 of md5's length", spec: pdf(1), sums: &upload.Checksums{SHA256: md5}, code: upload.CodeValidation, fields: []string{"checksums.sha256"}},
		{name: "field and checksum", spec: pdf(0), sums: &upload.Checksums{MD5: "x"}, code: upload.CodeValidation, fields: []string{"size", "checksums.md5"}},
		{name: "wrong type", spec: modify(pdf(1), func(f *upload.FileSpec) { f.Type = "text/csv" }), code: upload.CodeUnsupportedMediaType},
		{name: "too large", spec: modify(image(upload.CategoryImage, 0), func(f *upload.FileSpec) { f.Size = 20*upload.MiB + 1 }), code: upload.CodeFileTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := checkService(t, tt.code == "")
			f, err := s.RegisterFile(context.Background(), "u1", "00000000-0000-4000-8000-000000000002", tt.spec, tt.sums)
			wantError(t, err, tt.code, tt.fields...)
			if f != nil {
				t.Errorf("file = %+v, want nil", f)
			}
		})
	}
}

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func validID(s string) bool { return uuidPattern.MatchString(s) }

func TestFinalizeRequestCheck(t *testing.T) {
	const id = "6f1c2d3e-4a5b-4c6d-8e7f-112233445566"
	str := func(s string) *string { return &s }
	ok := func(change func(r *upload.FinalizeRequest)) upload.FinalizeRequest {
		r := upload.FinalizeRequest{SessionID: id, Title: "My Castle"}
		change(&r)
		return r
	}
	tags := func(n, length int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = strings.Repeat("t", length)
		}
		return out
	}
	tests := []struct {
		name   string
		req    upload.FinalizeRequest
		fields []string // nil: valid
	}{
		{"minimal", ok(func(*upload.FinalizeRequest) {}), nil},
		{"every field at its limit", ok(func(r *upload.FinalizeRequest) {
			r.Title = strings.Repeat("t", 200)
			r.Description = str(strings.Repeat("d", 5000))
			r.Tags = tags(20, 50)
			r.Theme = str(strings.Repeat("h", 100))
		}), nil},
		{"runes, not bytes", ok(func(r *upload.FinalizeRequest) {
			r.Title = strings.Repeat("é", 200)
			r.Description = str(strings.Repeat("🏰", 5000))
			r.Tags = []string{strings.Repeat("城", 50)}
			r.Theme = str(strings.Repeat("ü", 100))
		}), nil},
		{"title surrounded by spaces", ok(func(r *upload.FinalizeRequest) { r.Title = "  " + strings.Repeat("t", 200) + "  " }), nil},
		{"one-character title", ok(func(r *upload.FinalizeRequest) { r.Title = "x" }), nil},
		{"empty description and theme", ok(func(r *upload.FinalizeRequest) { r.Description, r.Theme = str(""), str("") }), nil},
		{"no tags", ok(func(r *upload.FinalizeRequest) { r.Tags = []string{} }), nil},

		{"missing id", ok(func(r *upload.FinalizeRequest) { r.SessionID = "" }), []string{"uploadSessionId"}},
		{"bad uuid", ok(func(r *upload.FinalizeRequest) { r.SessionID = "not-a-uuid" }), []string{"uploadSessionId"}},
		{"uuid cut short", ok(func(r *upload.FinalizeRequest) { r.SessionID = id[:35] }), []string{"uploadSessionId"}},
		{"empty title", ok(func(r *upload.FinalizeRequest) { r.Title = "" }), []string{"title"}},
		{"whitespace title", ok(func(r *upload.FinalizeRequest) { r.Title = " \t\n " }), []string{"title"}},
		{"201-character title", ok(func(r *upload.FinalizeRequest) { r.Title = strings.Repeat("t", 201) }), []string{"title"}},
		{"201-rune title", ok(func(r *upload.FinalizeRequest) { r.Title = strings.Repeat("é", 201) }), []string{"title"}},
		{"description 5001", ok(func(r *upload.FinalizeRequest) { r.Description = str(strings.Repeat("d", 5001)) }), []string{"description"}},
		{"21 tags", ok(func(r *upload.FinalizeRequest) { r.Tags = tags(21, 5) }), []string{"tags"}},
		{"tag of 51", ok(func(r *upload.FinalizeRequest) { r.Tags = []string{"ok", strings.Repeat("t", 51)} }), []string{"tags[1]"}},
		{"tag of 51 runes", ok(func(r *upload.FinalizeRequest) { r.Tags = []string{strings.Repeat("城", 51)} }), []string{"tags[0]"}},
		{"empty tag", ok(func(r *upload.FinalizeRequest) { r.Tags = []string{""} }), []string{"tags[0]"}},
		{"theme 101", ok(func(r *upload.FinalizeRequest) { r.Theme = str(strings.Repeat("h", 101)) }), []string{"theme"}},
		// PostgreSQL's text cannot hold U+0000, nor bytes that are not UTF-8.
		{"NUL in title", ok(func(r *upload.FinalizeRequest) { r.Title = "My\x00Castle" }), []string{"title"}},
		{"NUL in description", ok(func(r *upload.FinalizeRequest) { r.Description = str("a\x00") }), []string{"description"}},
		{"NUL in a tag", ok(func(r *upload.FinalizeRequest) { r.Tags = []string{"ok", "\x00"} }), []string{"tags[1]"}},
		{"NUL in theme", ok(func(r *upload.FinalizeRequest) { r.Theme = str("\x00") }), []string{"theme"}},
		{"bad UTF-8 in title", ok(func(r *upload.FinalizeRequest) { r.Title = "caf\xe9" }), []string{"title"}},
		{"bad UTF-8 in a tag", ok(func(r *upload.FinalizeRequest) { r.Tags = []string{"\xff"} }), []string{"tags[0]"}},
		{"everything wrong", upload.FinalizeRequest{
			Title: "", Description: str(strings.Repeat("d", 5001)), Tags: append(tags(20, 5), strings.Repeat("t", 51)),
			Theme: str(strings.Repeat("h", 101)),
		}, []string{"uploadSessionId", "title", "description", "tags", "tags[20]", "theme"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Check(validID)
			if tt.fields == nil {
				if err != nil {
					t.Fatalf("Check() = %v, want nil", err)
				}
				return
			}
			wantErrorFields(t, err, tt.fields)
		})
	}
}

func wantErrorFields(t *testing.T, err error, fields []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want a VALIDATION_ERROR naming %q", fields)
	}
	wantError(t, err, upload.CodeValidation, fields...)
}

// TestCreateSessionRefusesKeyChangingUserIDs: a user id is a segment of
// every object key of the user; ids that would change a key's shape never
// reach the store.
func TestCreateSessionRefusesKeyChangingUserIDs(t *testing.T) {
	s := checkService(t, false)
	files := []upload.FileSpec{{Category: upload.CategoryInstruction, Name: "a.pdf", Size: 1, Type: "application/pdf", Ext: "pdf"}}
	for _, id := range []string{"", ".", "..", "...", "a/b", "../x", "u\x00", strings.Repeat("u", 129)} {
		t.Run(id, func(t *testing.T) {
			_, err := s.CreateSession(context.Background(), id, files)
			wantError(t, err, upload.CodeUnauthorized)
		})
	}
}
