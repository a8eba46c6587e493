package evidence

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// exchange is one request and its response, as the document shows them.
type exchange struct {
	Method, URL string
	ReqHeader   http.Header
	ReqBody     string // JSON indented, or a summary of binary bytes
	Status      int
	RespHeader  http.Header
	RespBody    string
	Elapsed     time.Duration
	Parsed      map[string]any // the response's JSON object, when it is one
}

// client sends requests as a web client would and keeps every exchange.
type client struct {
	base string
	user string
	log  *[]exchange
}

// binary describes bytes the document shows by size and MD5 only.
type binary struct {
	name string
	data []byte
}

func (b binary) String() string {
	sum := md5.Sum(b.data)
	return fmt.Sprintf("<%d bytes: %s, MD5 %s>", len(b.data), b.name, hex.EncodeToString(sum[:]))
}

// call sends method path (relative to base, or an absolute URL such as a
// presigned one, sent without credentials) with body: nil, a JSON value,
// a binary, or a multipart form (form). headers are name, value pairs.
func (c client) call(ctx context.Context, method, path string, body any, headers ...string) (*exchange, error) {
	u := path
	withAuth := true
	if strings.HasPrefix(path, "http://") || strings.HasPrefix(path, "https://") {
		withAuth = false
	} else {
		u = c.base + path
	}
	var raw []byte
	shown := ""
	contentType := ""
	switch b := body.(type) {
	case nil:
	case binary:
		raw, shown, contentType = b.data, b.String(), "application/octet-stream"
	case form:
		raw, contentType = b.encode()
		shown = b.String()
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		raw, shown, contentType = j, indent(j), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if withAuth && c.user != "" {
		req.Header.Set("Authorization", "Bearer "+c.user)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	x := &exchange{
		Method: method, URL: displayURL(u, c.base), ReqHeader: req.Header.Clone(), ReqBody: shown,
		Status: resp.StatusCode, RespHeader: resp.Header.Clone(), Elapsed: time.Since(start),
	}
	if json.Unmarshal(respBody, &x.Parsed) == nil {
		x.RespBody = indent(respBody)
	} else if len(respBody) > 0 {
		x.RespBody = binary{name: resp.Header.Get("Content-Type"), data: respBody}.String()
	}
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "image/") {
		x.Parsed = map[string]any{"bytes": respBody}
	}
	*c.log = append(*c.log, *x)
	return x, nil
}

// displayURL shows the API's URLs by their path (the stack's port changes
// every run) and others (presigned S3 URLs) whole.
func displayURL(u, base string) string {
	if strings.HasPrefix(u, base) {
		return strings.TrimPrefix(u, base)
	}
	return u
}

func indent(j []byte) string {
	var b bytes.Buffer
	if err := json.Indent(&b, j, "", "  "); err != nil {
		return string(j)
	}
	return b.String()
}

// form is a multipart/form-data body of named binary parts, each with an
// optional Content-MD5 (base64).
type form struct {
	boundary string
	parts    []formPart
}

type formPart struct {
	name, filename, contentMD5 string
	data                       binary
}

func (f form) encode() ([]byte, string) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	_ = w.SetBoundary(f.boundary)
	for _, p := range f.parts {
		h := map[string][]string{
			"Content-Disposition": {mime.FormatMediaType("form-data", map[string]string{"name": p.name, "filename": p.filename})},
			"Content-Type":        {"application/octet-stream"},
		}
		if p.contentMD5 != "" {
			h["Content-Md5"] = []string{p.contentMD5}
		}
		pw, _ := w.CreatePart(h)
		_, _ = pw.Write(p.data.data)
	}
	_ = w.Close()
	return b.Bytes(), w.FormDataContentType()
}

func (f form) String() string {
	var s strings.Builder
	for _, p := range f.parts {
		fmt.Fprintf(&s, "--%s\nContent-Disposition: form-data; name=%q; filename=%q\nContent-Type: application/octet-stream\n", f.boundary, p.name, p.filename)
		if p.contentMD5 != "" {
			fmt.Fprintf(&s, "Content-MD5: %s\n", p.contentMD5)
		}
		fmt.Fprintf(&s, "\n%s\n", p.data)
	}
	fmt.Fprintf(&s, "--%s--", f.boundary)
	return s.String()
}

// get reads a dotted path (data.files.0.fileId) of a parsed response.
func get(v any, path string) any {
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			i := -1
			_, _ = fmt.Sscan(k, &i)
			if i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func str(v any, path string) string {
	s, _ := get(v, path).(string)
	return s
}

// objectKey is the S3 key of a path-style object URL of bucket.
func objectKey(rawURL, bucket string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/"+bucket+"/")
}
