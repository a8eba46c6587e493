package s3blob

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

const MiB = 1 << 20

// onlyReader hides every method of r but Read (no io.Seeker, no Len), like
// an http.Request body.
type onlyReader struct{ r io.Reader }

func (o *onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// gen returns n deterministic pseudo-random bytes for seed, unseekable.
func gen(seed byte, n int64) io.Reader {
	return &onlyReader{io.LimitReader(rand.NewChaCha8([32]byte{seed}), n)}
}

func genBytes(seed byte, n int64) []byte {
	b, err := io.ReadAll(gen(seed, n))
	if err != nil {
		panic(err)
	}
	return b
}

func md5b64(b []byte) string {
	s := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

// newBlob returns a Blob on a fresh bucket of the test S3 server, and the
// SDK client under it.
func newBlob(t *testing.T) (*Blob, *s3.Client, Config) {
	t.Helper()
	cfg := s3env(t)
	c, err := NewClient(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return NewWithClient(c, s3.NewPresignClient(c), cfg), c, cfg
}

// getObject reads key with the SDK directly.
func getObject(t *testing.T, c *s3.Client, bucket, key string) []byte {
	t.Helper()
	out, err := c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatalf("GetObject %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putSmall stores data at key through a one-part multipart upload.
func putSmall(t *testing.T, b *Blob, key string, data []byte) {
	t.Helper()
	ctx := t.Context()
	id, err := b.CreateMultipartUpload(ctx, key, "application/octet-stream")
	if err != nil {
		t.Fatal(err)
	}
	etag, err := b.UploadPart(ctx, key, id, 1, bytes.NewReader(data), int64(len(data)), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.CompleteMultipartUpload(ctx, key, id, []upload.CompletedPart{{PartNumber: 1, ETag: etag}}); err != nil {
		t.Fatal(err)
	}
}

func TestMultipartRoundTrip(t *testing.T) {
	b, c, cfg := newBlob(t)
	ctx := t.Context()
	key := "dev/moc-instructions/user 1/sess/instruction/ä file.pdf"

	id, err := b.CreateMultipartUpload(ctx, key, "application/pdf")
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int64{5 * MiB, 5 * MiB, 2 * MiB}
	var want []byte
	var parts []upload.CompletedPart
	for i, size := range sizes {
		n := i + 1
		data := genBytes(byte(n), size)
		want = append(want, data...)
		etag, err := b.UploadPart(ctx, key, id, n, gen(byte(n), size), size, md5b64(data))
		if err != nil {
			t.Fatalf("part %d: %v", n, err)
		}
		sum := md5.Sum(data)
		if etag != hex.EncodeToString(sum[:]) {
			t.Errorf("part %d: etag %q, want the part's MD5 without quotes", n, etag)
		}
		parts = append(parts, upload.CompletedPart{PartNumber: n, ETag: etag})
	}

	listed, err := b.ListParts(ctx, key, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 3 {
		t.Fatalf("ListParts: %+v", listed)
	}
	for i, p := range listed {
		if p.PartNumber != i+1 || p.ETag != parts[i].ETag || p.Size != sizes[i] {
			t.Errorf("ListParts[%d] = %+v, want %d %s %d", i, p, i+1, parts[i].ETag, sizes[i])
		}
	}

	// Out of order and one ETag quoted: Complete sorts and (re)quotes.
	shuffled := []upload.CompletedPart{parts[2], {PartNumber: 1, ETag: `"` + parts[0].ETag + `"`}, parts[1]}
	if err := b.CompleteMultipartUpload(ctx, key, id, shuffled); err != nil {
		t.Fatal(err)
	}

	got := getObject(t, c, cfg.Bucket, key)
	if !bytes.Equal(got, want) {
		t.Fatalf("object: %d bytes, want %d (equal content: false)", len(got), len(want))
	}
	size, err := b.Head(ctx, key)
	if err != nil || size != 12*MiB {
		t.Fatalf("Head = %d, %v; want %d", size, err, 12*MiB)
	}
	rc, err := b.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	opened, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(opened, want) {
		t.Fatalf("Open: %d bytes, %v", len(opened), err)
	}
	// Completing it again (a retry after a crash) succeeds (S3 and
	// versitygw) or is "not found"; aborting it is "not found".
	if err := b.CompleteMultipartUpload(ctx, key, id, parts); err != nil && !errors.Is(err, upload.ErrNotFound) {
		t.Errorf("second Complete = %v, want success or ErrNotFound", err)
	}
	if err := b.AbortMultipartUpload(ctx, key, id); !errors.Is(err, upload.ErrNotFound) {
		t.Errorf("Abort after Complete = %v, want ErrNotFound", err)
	}
}

// TestUploadPartStreams proves the body is sent while it is being read: a
// reverse proxy in front of S3 counts the bytes it has received, and the
// unseekable generator checks, before producing its last MiB, that most of
// the earlier bytes already went over the wire.
func TestUploadPartStreams(t *testing.T) {
	cfg := s3env(t)
	upstream, err := url.Parse(cfg.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var received atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = &countingBody{r.Body, &received}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	pcfg := cfg
	pcfg.Endpoint = srv.URL
	b, err := New(t.Context(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	key := "stream/part.bin"
	id, err := b.CreateMultipartUpload(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}

	const size = 5 * MiB
	body := &watchedReader{r: gen(7, size), at: 4 * MiB, check: func() bool {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if received.Load() >= 2*MiB {
				return true
			}
			time.Sleep(5 * time.Millisecond)
		}
		return false
	}}
	var _ io.Reader = body
	if _, ok := any(body).(io.Seeker); ok {
		t.Fatal("the test body must not be seekable")
	}
	etag, err := b.UploadPart(ctx, key, id, 1, body, size, "")
	if err != nil {
		t.Fatal(err)
	}
	if !body.checked || !body.ok {
		t.Fatalf("after 4 MiB were read the proxy had received %d bytes: the body was buffered, not streamed", received.Load())
	}
	if err := b.CompleteMultipartUpload(ctx, key, id, []upload.CompletedPart{{PartNumber: 1, ETag: etag}}); err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := getObject(t, c, cfg.Bucket, key); !bytes.Equal(got, genBytes(7, size)) {
		t.Fatalf("object differs from what was streamed (%d bytes)", len(got))
	}
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// watchedReader calls check once when at bytes have been read.
type watchedReader struct {
	r           io.Reader
	read, at    int64
	check       func() bool
	checked, ok bool
}

func (w *watchedReader) Read(p []byte) (int, error) {
	if !w.checked && w.read >= w.at {
		w.checked, w.ok = true, w.check()
	}
	n, err := w.r.Read(p)
	w.read += int64(n)
	return n, err
}

// TestSDKDefaultRefusesUnseekableBody documents why the client is built with
// RequestChecksumCalculation WhenRequired and UploadPart sends an unsigned
// payload: with the SDK's defaults an unseekable body over plain HTTP fails.
func TestSDKDefaultRefusesUnseekableBody(t *testing.T) {
	b, c, cfg := newBlob(t)
	ctx := t.Context()
	key := "sdk/defaults.bin"
	id, err := b.CreateMultipartUpload(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	in := func() *s3.UploadPartInput {
		return &s3.UploadPartInput{Bucket: &cfg.Bucket, Key: &key, UploadId: &id,
			PartNumber: aws.Int32(1), Body: gen(1, 1024), ContentLength: aws.Int64(1024)}
	}
	// Default checksum calculation (WhenSupported): a CRC32 must be computed
	// up front over HTTP, which needs a seekable body.
	_, err = c.UploadPart(ctx, in(), s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware),
		func(o *s3.Options) { o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenSupported })
	if err == nil || !strings.Contains(err.Error(), "unseekable stream is not supported") {
		t.Errorf("WhenSupported: err = %v, want the unseekable-stream refusal", err)
	}
	// Signed payload: SigV4 hashes the body first, which needs a seekable body.
	_, err = c.UploadPart(ctx, in())
	if err == nil || !strings.Contains(err.Error(), "not seekable") {
		t.Errorf("signed payload: err = %v, want a not-seekable error", err)
	}
	// Both switched off, as UploadPart does: accepted.
	if _, err := c.UploadPart(ctx, in(), s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)); err != nil {
		t.Errorf("unsigned payload, WhenRequired: %v", err)
	}
}

func TestReuploadReplacesPart(t *testing.T) {
	b, c, cfg := newBlob(t)
	ctx := t.Context()
	key := "replace/file.bin"
	id, err := b.CreateMultipartUpload(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	first, err := b.UploadPart(ctx, key, id, 1, gen(1, 1000), 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	second, err := b.UploadPart(ctx, key, id, 1, gen(2, 700), 700, "")
	if err != nil {
		t.Fatal(err)
	}
	if first == second {
		t.Fatal("both uploads have the same etag")
	}
	listed, err := b.ListParts(ctx, key, id)
	if err != nil || len(listed) != 1 || listed[0].ETag != second || listed[0].Size != 700 {
		t.Fatalf("ListParts = %+v, %v; want only the second upload", listed, err)
	}

	// Completing with the replaced part's etag fails (InvalidPart) and is
	// neither "not found" nor "unavailable"; the upload survives it.
	err = b.CompleteMultipartUpload(ctx, key, id, []upload.CompletedPart{{PartNumber: 1, ETag: first}})
	if err == nil {
		t.Fatal("Complete with a stale etag succeeded")
	}
	if errors.Is(err, upload.ErrNotFound) || errors.Is(err, upload.ErrUnavailable) || !strings.Contains(err.Error(), "s3: complete multipart upload of "+key) {
		t.Errorf("Complete with a stale etag: %v", err)
	}
	// It is a refusal of part 1, which the domain answers as a 409 that
	// names the part, never as a 500.
	var refused *upload.PartsRefusedError
	if !errors.Is(err, upload.ErrInvalidPart) || !errors.As(err, &refused) || !slices.Equal(refused.PartNumbers, []int{1}) {
		t.Errorf("Complete with a stale etag: %v, want ErrInvalidPart naming part 1", err)
	}
	if err := b.CompleteMultipartUpload(ctx, key, id, []upload.CompletedPart{{PartNumber: 1, ETag: second}}); err != nil {
		t.Fatal(err)
	}
	if got := getObject(t, c, cfg.Bucket, key); !bytes.Equal(got, genBytes(2, 700)) {
		t.Fatal("object is not the second upload")
	}
}

func TestContentMD5(t *testing.T) {
	b, _, _ := newBlob(t)
	ctx := t.Context()
	key := "md5/file.bin"
	id, err := b.CreateMultipartUpload(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	data := genBytes(3, 4096)

	if _, err := b.UploadPart(ctx, key, id, 1, gen(3, 4096), 4096, md5b64(data)); err != nil {
		t.Fatalf("correct Content-MD5: %v", err)
	}

	wrong := md5b64([]byte("something else"))
	_, err = b.UploadPart(ctx, key, id, 2, gen(3, 4096), 4096, wrong)
	if !errors.Is(err, upload.ErrBadDigest) {
		t.Fatalf("wrong Content-MD5: err = %v, want ErrBadDigest", err)
	}
	if apiCode(err) != "BadDigest" {
		t.Errorf("the store did not refuse the part itself: %v", err)
	}
	if parts, err := b.ListParts(ctx, key, id); err != nil || len(parts) != 1 {
		t.Errorf("after a refused part: ListParts = %+v, %v; want only part 1", parts, err)
	}

	if _, err := b.UploadPart(ctx, key, id, 2, gen(3, 4096), 4096, "not base64!"); !errors.Is(err, upload.ErrBadDigest) {
		t.Errorf("malformed Content-MD5: err = %v, want ErrBadDigest", err)
	}
}

func TestMissingObject(t *testing.T) {
	b, _, _ := newBlob(t)
	ctx := t.Context()
	if _, err := b.Head(ctx, "no/such/key"); !errors.Is(err, upload.ErrNotFound) {
		t.Errorf("Head: %v, want ErrNotFound", err)
	}
	if _, err := b.Open(ctx, "no/such/key"); !errors.Is(err, upload.ErrNotFound) {
		t.Errorf("Open: %v, want ErrNotFound", err)
	}
	if _, _, err := b.ReadHead(ctx, "no/such/key", 512); !errors.Is(err, upload.ErrNotFound) {
		t.Errorf("ReadHead: %v, want ErrNotFound", err)
	}
}

func TestDeleteObject(t *testing.T) {
	b, _, _ := newBlob(t)
	ctx := t.Context()
	putSmall(t, b, "del/a.bin", []byte("bytes"))
	if err := b.DeleteObject(ctx, "del/a.bin"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Head(ctx, "del/a.bin"); !errors.Is(err, upload.ErrNotFound) {
		t.Errorf("Head after delete: %v, want ErrNotFound", err)
	}
	if err := b.DeleteObject(ctx, "del/a.bin"); err != nil {
		t.Errorf("deleting a missing object: %v, want no error", err)
	}
}

func TestAbort(t *testing.T) {
	b, _, _ := newBlob(t)
	ctx := t.Context()
	key := "abort/file.bin"
	id, err := b.CreateMultipartUpload(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.UploadPart(ctx, key, id, 1, gen(1, 100), 100, ""); err != nil {
		t.Fatal(err)
	}
	if err := b.AbortMultipartUpload(ctx, key, id); err != nil {
		t.Fatal(err)
	}
	if _, err := b.UploadPart(ctx, key, id, 2, gen(1, 100), 100, ""); !errors.Is(err, upload.ErrNotFound) {
		t.Errorf("UploadPart after Abort: %v, want ErrNotFound", err)
	}
	if err := b.AbortMultipartUpload(ctx, key, id); !errors.Is(err, upload.ErrNotFound) {
		t.Errorf("second Abort: %v, want ErrNotFound", err)
	}
	if err := b.CompleteMultipartUpload(ctx, key, id, []upload.CompletedPart{{PartNumber: 1, ETag: "x"}}); !errors.Is(err, upload.ErrNotFound) {
		t.Errorf("Complete after Abort: %v, want ErrNotFound", err)
	}
	if _, err := b.ListParts(ctx, key, id); !errors.Is(err, upload.ErrNotFound) {
		t.Errorf("ListParts after Abort: %v, want ErrNotFound", err)
	}
}

func TestPresignGet(t *testing.T) {
	b, _, cfg := newBlob(t)
	ctx := t.Context()
	key := "presign/a b+c/ü.pdf"
	data := genBytes(5, 3000)
	putSmall(t, b, key, data)

	u, err := b.PresignGet(ctx, key, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u, cfg.Endpoint+"/"+cfg.Bucket+"/") || !strings.Contains(u, "X-Amz-Signature=") {
		t.Errorf("presigned URL %s", u)
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, data) {
		t.Fatalf("GET presigned URL: %s, %d bytes", resp.Status, len(got))
	}

	// ObjectURL needs credentials.
	resp, err = http.Get(b.ObjectURL(key))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("anonymous GET of ObjectURL: %s, want 403", resp.Status)
	}

	pub := NewWithClient(b.api, b.presign, Config{Bucket: cfg.Bucket, PublicBaseURL: "https://cdn.example.com/files/"})
	if u, err := pub.PresignGet(ctx, key, time.Minute); err != nil || u != "https://cdn.example.com/files/presign/a%20b+c/%C3%BC.pdf" {
		t.Errorf("PresignGet with PublicBaseURL = %q, %v", u, err)
	}
}

func TestPresignUploadPart(t *testing.T) {
	b, c, cfg := newBlob(t)
	ctx := t.Context()
	key := "presign/part.bin"
	id, err := b.CreateMultipartUpload(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	data := genBytes(6, 2048)
	pr, err := b.PresignUploadPart(ctx, key, id, 1, int64(len(data)), md5b64(data), 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(pr.Method, pr.URL, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range pr.Header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("PUT presigned part: %s %s (headers %v)", resp.Status, msg, pr.Header)
	}
	parts, err := b.ListParts(ctx, key, id)
	if err != nil || len(parts) != 1 || parts[0].Size != 2048 {
		t.Fatalf("ListParts = %+v, %v", parts, err)
	}
	if err := b.CompleteMultipartUpload(ctx, key, id, []upload.CompletedPart{{PartNumber: 1, ETag: parts[0].ETag}}); err != nil {
		t.Fatal(err)
	}
	if got := getObject(t, c, cfg.Bucket, key); !bytes.Equal(got, data) {
		t.Fatal("object differs")
	}
}

func TestObjectURL(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		key  string
		want string
	}{
		{Config{Bucket: "b", Endpoint: "http://127.0.0.1:7070/"}, "dev/moc-instructions/u/s/image/f.png",
			"http://127.0.0.1:7070/b/dev/moc-instructions/u/s/image/f.png"},
		{Config{Bucket: "b", Endpoint: "http://127.0.0.1:7070"}, "a b/ü?#%.pdf",
			"http://127.0.0.1:7070/b/a%20b/%C3%BC%3F%23%25.pdf"},
		{Config{Bucket: "moc-bucket"}, "prod/x y.pdf",
			"https://moc-bucket.s3.us-east-1.amazonaws.com/prod/x%20y.pdf"},
		{Config{Bucket: "moc-bucket", Region: "eu-west-1"}, "prod/a/b.jpg",
			"https://moc-bucket.s3.eu-west-1.amazonaws.com/prod/a/b.jpg"},
	} {
		if got := NewWithClient(nil, nil, tc.cfg).ObjectURL(tc.key); got != tc.want {
			t.Errorf("ObjectURL(%q) with %+v = %s, want %s", tc.key, tc.cfg, got, tc.want)
		}
	}
}

func TestSSE(t *testing.T) {
	_, c, cfg := newBlob(t)
	ctx := t.Context()
	var seen []string
	spy := &faultyAPI{S3API: c, onCreate: func(in *s3.CreateMultipartUploadInput) { seen = append(seen, string(in.ServerSideEncryption)) }}
	on := NewWithClient(spy, nil, cfg)
	offCfg := cfg
	offCfg.SSE = ""
	off := NewWithClient(spy, nil, offCfg)
	for _, b := range []*Blob{on, off} {
		if _, err := b.CreateMultipartUpload(ctx, "sse/x", "text/plain"); err != nil {
			t.Fatalf("CreateMultipartUpload (SSE %q): %v", b.cfg.SSE, err)
		}
	}
	if len(seen) != 2 || seen[0] != "AES256" || seen[1] != "" {
		t.Errorf("SSE headers sent: %q", seen)
	}
}

// faultyAPI forwards to S3API and fails call number failAt (counting every
// method) with err.
type faultyAPI struct {
	S3API
	calls    int
	failAt   int
	err      error
	onCreate func(*s3.CreateMultipartUploadInput)
}

func (f *faultyAPI) fail() error {
	f.calls++
	if f.calls == f.failAt {
		return f.err
	}
	return nil
}

func (f *faultyAPI) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, o ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	if f.onCreate != nil {
		f.onCreate(in)
	}
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.S3API.CreateMultipartUpload(ctx, in, o...)
}

func (f *faultyAPI) UploadPart(ctx context.Context, in *s3.UploadPartInput, o ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.S3API.UploadPart(ctx, in, o...)
}

func (f *faultyAPI) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, o ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.S3API.CompleteMultipartUpload(ctx, in, o...)
}

func (f *faultyAPI) HeadObject(ctx context.Context, in *s3.HeadObjectInput, o ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.S3API.HeadObject(ctx, in, o...)
}

func TestFaultInjection(t *testing.T) {
	_, c, cfg := newBlob(t)
	ctx := t.Context()
	key := "fault/file.bin"

	t.Run("third call fails, the retried call succeeds", func(t *testing.T) {
		injected := errors.New("injected fault")
		api := &faultyAPI{S3API: c, failAt: 3, err: injected}
		b := NewWithClient(api, nil, cfg)
		id, err := b.CreateMultipartUpload(ctx, key, "") // call 1
		if err != nil {
			t.Fatal(err)
		}
		e1, err := b.UploadPart(ctx, key, id, 1, gen(1, 5*MiB), 5*MiB, "") // call 2
		if err != nil {
			t.Fatal(err)
		}
		_, err = b.UploadPart(ctx, key, id, 2, gen(2, 1000), 1000, "") // call 3
		if !errors.Is(err, injected) || err.Error() != "s3: upload part 2 of "+key+": injected fault" {
			t.Fatalf("call 3: %v", err)
		}
		if errors.Is(err, upload.ErrUnavailable) || errors.Is(err, upload.ErrNotFound) || errors.Is(err, upload.ErrBadDigest) {
			t.Errorf("an unknown failure got a sentinel: %v", err)
		}
		e2, err := b.UploadPart(ctx, key, id, 2, gen(2, 1000), 1000, "") // call 4
		if err != nil {
			t.Fatal(err)
		}
		if err := b.CompleteMultipartUpload(ctx, key, id, []upload.CompletedPart{{PartNumber: 1, ETag: e1}, {PartNumber: 2, ETag: e2}}); err != nil {
			t.Fatal(err)
		}
		want := append(genBytes(1, 5*MiB), genBytes(2, 1000)...)
		if got := getObject(t, c, cfg.Bucket, key); !bytes.Equal(got, want) {
			t.Fatal("object differs")
		}
	})

	t.Run("network error is ErrUnavailable", func(t *testing.T) {
		netErr := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
		for _, failAt := range []int{1, 2, 3} {
			api := &faultyAPI{S3API: c, failAt: failAt, err: netErr}
			b := NewWithClient(api, nil, cfg)
			id, err := b.CreateMultipartUpload(ctx, key+"2", "")
			if err == nil {
				_, err = b.UploadPart(ctx, key+"2", id, 1, gen(1, 10), 10, "")
			}
			if err == nil {
				_, err = b.Head(ctx, key)
			}
			if !errors.Is(err, upload.ErrUnavailable) || !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("fail at call %d: %v, want ErrUnavailable wrapping the net error", failAt, err)
			}
		}
	})
}

// TestUnreachable runs the real SDK stack against a closed port: the
// standard retryer gives up and the error wraps ErrUnavailable.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := Config{Bucket: "b", Endpoint: "http://" + addr, AccessKeyID: "k", SecretAccessKey: "s", MaxAttempts: 2}
	c, err := NewClient(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := NewWithClient(withRetryer(c, 2), nil, cfg)
	_, err = b.Head(t.Context(), "k")
	var maxErr *retry.MaxAttemptsError
	if !errors.Is(err, upload.ErrUnavailable) || !errors.As(err, &maxErr) || maxErr.Attempt != 2 {
		t.Errorf("Head: %v, want ErrUnavailable after 2 attempts", err)
	}
	_, err = b.UploadPart(t.Context(), "k", "u", 1, gen(1, 1000), 1000, "")
	if !errors.Is(err, upload.ErrUnavailable) || !errors.As(err, &maxErr) || maxErr.Attempt != 2 {
		t.Errorf("UploadPart: %v, want ErrUnavailable after 2 attempts (nothing of the body was read)", err)
	}
}

// TestUploadPartRetries: a store that refuses the request when it sees the
// headers (503 SlowDown before "100 Continue") never gets the body, so the
// SDK can retry the unseekable part; when every attempt fails the error is
// ErrUnavailable. A store that fails after reading some of the body cannot
// be retried: one attempt, still ErrUnavailable.
func TestUploadPartRetries(t *testing.T) {
	for _, tc := range []struct {
		name         string
		readFirst    int64
		wantAttempts int32
	}{
		{"refused before the body", 0, 3},
		{"failed after 1 MiB of the body", MiB, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var attempts atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				attempts.Add(1)
				if tc.readFirst > 0 {
					io.CopyN(io.Discard, r.Body, tc.readFirst)
				}
				w.Header().Set("Connection", "close")
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
			}))
			defer srv.Close()
			cfg := Config{Bucket: "b", Endpoint: srv.URL, AccessKeyID: "k", SecretAccessKey: "s"}
			c, err := NewClient(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			b := NewWithClient(withRetryer(c, 3), nil, cfg)
			_, err = b.UploadPart(t.Context(), "k", "u", 1, gen(1, 3*MiB), 3*MiB, "")
			if !errors.Is(err, upload.ErrUnavailable) {
				t.Errorf("UploadPart: %v, want ErrUnavailable", err)
			}
			if n := attempts.Load(); n != tc.wantAttempts {
				t.Errorf("%d attempts, want %d (%v)", n, tc.wantAttempts, err)
			}
		})
	}
}

// TestUploadPartBodyFailure: a body that breaks is the caller's problem,
// not an unavailable store.
func TestUploadPartBodyFailure(t *testing.T) {
	b, _, _ := newBlob(t)
	ctx := t.Context()
	key := "body/fail.bin"
	id, err := b.CreateMultipartUpload(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("client went away")
	_, err = b.UploadPart(ctx, key, id, 1, io.MultiReader(gen(1, MiB), &onlyReader{iotestErr{boom}}), 2*MiB, "")
	if !errors.Is(err, boom) || errors.Is(err, upload.ErrUnavailable) {
		t.Errorf("broken body: %v", err)
	}
	_, err = b.UploadPart(ctx, key, id, 1, gen(1, 1000), 2000, "")
	if !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, upload.ErrUnavailable) {
		t.Errorf("short body: %v", err)
	}
	// Extra bytes past size are not sent.
	etag, err := b.UploadPart(ctx, key, id, 1, gen(1, 2000), 1000, md5b64(genBytes(1, 1000)))
	if err != nil || etag == "" {
		t.Errorf("long body: %q, %v", etag, err)
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

// withRetryer returns c with a standard retryer of maxAttempts and no
// backoff, so retry tests are fast.
func withRetryer(c *s3.Client, maxAttempts int) *s3.Client {
	return s3.New(c.Options(), func(o *s3.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = maxAttempts
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		})
		o.RetryMaxAttempts = 0
	})
}

func TestSentinel(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want error
	}{
		{&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, upload.ErrUnavailable},
		{&retry.MaxAttemptsError{Attempt: 3, Err: errors.New("x")}, upload.ErrUnavailable},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), upload.ErrUnavailable},
		{fmt.Errorf("failed to rewind transport stream for retry, %w", errNotRewindable), upload.ErrUnavailable},
		{context.Canceled, nil},
		{errors.New("other"), nil},
	} {
		if got := sentinel(tc.err); got != tc.want {
			t.Errorf("sentinel(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestETagQuotes(t *testing.T) {
	for in, want := range map[string]string{`"abc"`: "abc", "abc": "abc", `"abc-3"`: "abc-3", `"`: `"`, "": ""} {
		if got := unquote(in); got != want {
			t.Errorf("unquote(%q) = %q, want %q", in, got, want)
		}
	}
	if quote("abc") != `"abc"` || quote(`"abc"`) != `"abc"` {
		t.Error("quote")
	}
}

// ListParts follows S3's pages: an upload of more than 1000 parts comes
// back whole, in order.
func TestListPartsPages(t *testing.T) {
	_, c, cfg := newBlob(t)
	pages := &countingLister{S3API: c}
	b := NewWithClient(pages, nil, cfg)
	ctx := t.Context()
	key := "pages/many.bin"
	id, err := b.CreateMultipartUpload(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	const n = 1003
	sem := make(chan struct{}, 8)
	errs := make(chan error, n)
	for i := 1; i <= n; i++ {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			_, err := b.UploadPart(ctx, key, id, i, bytes.NewReader([]byte{byte(i)}), 1, "")
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	parts, err := b.ListParts(ctx, key, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != n || pages.calls.Load() < 2 {
		t.Fatalf("ListParts returned %d parts in %d pages, want %d in at least 2", len(parts), pages.calls.Load(), n)
	}
	for i, p := range parts {
		if p.PartNumber != i+1 || p.Size != 1 {
			t.Fatalf("part %d = %+v", i, p)
		}
	}
}

// A presigned whole-object PUT works with nothing but the Content-Type
// header (what the old web client sends), signs the length and type, and
// no encryption header: the bucket's default applies.
func TestPresignPutObject(t *testing.T) {
	b, c, cfg := newBlob(t)
	ctx := t.Context()
	key := "presign/whole file.pdf"
	data := genBytes(9, 3000)
	pr, err := b.PresignPutObject(ctx, key, "application/pdf", "", int64(len(data)), 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Method != "PUT" || len(pr.Header) != 1 || pr.Header["Content-Type"] != "application/pdf" {
		t.Fatalf("presigned %s with headers %v, want PUT with only Content-Type", pr.Method, pr.Header)
	}
	u, err := url.Parse(pr.URL)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Query().Get("X-Amz-SignedHeaders"); got != "content-length;content-type;host" {
		t.Errorf("signed headers %q", got)
	}
	if u.Query().Get("X-Amz-Expires") != "900" {
		t.Errorf("X-Amz-Expires = %q, want 900", u.Query().Get("X-Amz-Expires"))
	}
	put := func(body []byte, contentType string) int {
		req, err := http.NewRequest(pr.Method, pr.URL, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := put(data[:100], "application/pdf"); got != http.StatusForbidden {
		t.Errorf("PUT of another length: %d, want 403", got)
	}
	if got := put(data, "application/pdf"); got != http.StatusOK {
		t.Fatalf("PUT: %d", got)
	}
	if got := getObject(t, c, cfg.Bucket, key); !bytes.Equal(got, data) {
		t.Fatal("object differs")
	}
	withMD5, err := b.PresignPutObject(ctx, key, "application/pdf", md5b64(data), int64(len(data)), time.Minute)
	if err != nil || withMD5.Header["Content-MD5"] != md5b64(data) {
		t.Fatalf("with MD5: headers %v, %v", withMD5.Header, err)
	}
}

type countingLister struct {
	S3API
	calls atomic.Int64
}

func (c *countingLister) ListParts(ctx context.Context, in *s3.ListPartsInput, optFns ...func(*s3.Options)) (*s3.ListPartsOutput, error) {
	c.calls.Add(1)
	return c.S3API.ListParts(ctx, in, optFns...)
}

// putSpy records the PutObject requests it forwards.
type putSpy struct {
	S3API
	puts []*s3.PutObjectInput
}

func (p *putSpy) PutObject(ctx context.Context, in *s3.PutObjectInput, o ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	p.puts = append(p.puts, in)
	return p.S3API.PutObject(ctx, in, o...)
}

func TestPutObject(t *testing.T) {
	_, c, cfg := newBlob(t)
	ctx := t.Context()
	spy := &putSpy{S3API: c}
	b := NewWithClient(spy, nil, cfg)
	key := "dev/moc-instructions/u1/m1/thumbnail.jpg"

	first, second := genBytes(7, 3000), genBytes(8, 1000)
	for _, data := range [][]byte{first, second} {
		if err := b.PutObject(ctx, key, "image/jpeg", data); err != nil {
			t.Fatalf("PutObject: %v", err)
		}
	}
	// Putting the key again replaced the object.
	if got := getObject(t, c, cfg.Bucket, key); !bytes.Equal(got, second) {
		t.Fatalf("object = %d bytes, want the second put's %d", len(got), len(second))
	}
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &cfg.Bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	if ct := aws.ToString(head.ContentType); ct != "image/jpeg" {
		t.Errorf("Content-Type = %q, want image/jpeg", ct)
	}
	if size, err := b.Head(ctx, key); err != nil || size != int64(len(second)) {
		t.Errorf("Head = %d, %v", size, err)
	}
	// Encrypted as multipart uploads are; without SSE, no header.
	offCfg := cfg
	offCfg.SSE = ""
	if err := NewWithClient(spy, nil, offCfg).PutObject(ctx, "sse/plain", "", []byte("x")); err != nil {
		t.Fatal(err)
	}
	var sse []string
	for _, in := range spy.puts {
		sse = append(sse, string(in.ServerSideEncryption))
	}
	if want := []string{"AES256", "AES256", ""}; fmt.Sprint(sse) != fmt.Sprint(want) {
		t.Errorf("SSE headers sent = %q, want %q", sse, want)
	}
	if in := spy.puts[2]; in.ContentType != nil {
		t.Errorf("Content-Type sent for an empty contentType: %q", *in.ContentType)
	}
}

// TestPutObjectRetries: the body is in memory and seekable, so the SDK's
// retryer sends it again after a store that read it and answered 503; a
// store that stays down is ErrUnavailable.
func TestPutObjectRetries(t *testing.T) {
	cfg := s3env(t)
	upstream, err := url.Parse(cfg.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var puts, failFirst atomic.Int32
	failFirst.Store(1)
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			puts.Add(1)
			if failFirst.Add(-1) >= 0 {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	pcfg := cfg
	pcfg.Endpoint = srv.URL
	c, err := NewClient(t.Context(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	b := NewWithClient(withRetryer(c, 3), nil, pcfg)
	key := "retry/thumbnail.jpg"
	data := genBytes(9, 64<<10)
	if err := b.PutObject(t.Context(), key, "image/jpeg", data); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	if n := puts.Load(); n != 2 {
		t.Errorf("%d PUTs, want 2 (one refused, one retried)", n)
	}
	direct, err := NewClient(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := getObject(t, direct, cfg.Bucket, key); !bytes.Equal(got, data) {
		t.Fatal("object differs from what was put")
	}

	puts.Store(0)
	failFirst.Store(100)
	err = b.PutObject(t.Context(), key, "image/jpeg", data)
	if !errors.Is(err, upload.ErrUnavailable) || !strings.Contains(err.Error(), key) {
		t.Errorf("PutObject on a store that stays down: %v, want ErrUnavailable naming the key", err)
	}
	if n := puts.Load(); n != 3 {
		t.Errorf("%d PUTs, want 3 (the retryer's attempts)", n)
	}
}
