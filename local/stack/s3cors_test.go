package stack

import (
	"bytes"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Browsers PUT files and parts straight to presigned URLs of the local S3
// server: with the bucket's CORS rule (template.yaml's) it answers their
// preflights and lets them read the ETag.
func TestBucketCORS(t *testing.T) {
	ctx := testContext(t)
	srv, err := StartS3(ctx, filepath.Join(serviceDir(t), "s3"), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	const bucket = "uploads"
	if err := EnsureBucket(ctx, srv.Endpoint, srv.AccessKey, srv.SecretKey, srv.Region, bucket); err != nil {
		t.Fatal(err)
	}
	putCORS := func(origins ...string) {
		t.Helper()
		if err := PutBucketCORS(ctx, srv.Endpoint, srv.AccessKey, srv.SecretKey, srv.Region, bucket, origins); err != nil {
			t.Fatal(err)
		}
	}
	const app = "http://localhost:5173"
	objectURL := srv.Endpoint + "/" + bucket + "/dev/moc-instructions/u1/s1/instruction/f1.pdf"
	preflight := func(origin string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodOptions, objectURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "PUT")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	putCORS("*")
	resp := preflight(app)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!hasToken(resp.Header.Get("Access-Control-Allow-Methods"), "PUT") ||
		!hasToken(resp.Header.Get("Access-Control-Allow-Headers"), "content-type") ||
		resp.Header.Get("Access-Control-Max-Age") != "3000" {
		t.Fatalf("preflight: %d %v, want 200 allowing the PUT with content-type for 3000 s", resp.StatusCode, resp.Header)
	}

	// A presigned PUT from the browser's origin: stored, ETag readable.
	c := client(srv.Endpoint, srv.AccessKey, srv.SecretKey, srv.Region)
	presign := s3.NewPresignClient(c)
	key := "dev/moc-instructions/u1/s1/instruction/f1.pdf"
	put, err := presign.PresignPutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("%PDF-1.7 presigned from a browser")
	resp = browserPut(t, put.URL, put.SignedHeader, app, body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == "" ||
		resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!hasToken(resp.Header.Get("Access-Control-Expose-Headers"), "ETag") {
		t.Fatalf("presigned PUT: %d %v, want 200 with an ETag the page may read", resp.StatusCode, resp.Header)
	}
	got, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if !bytes.Equal(stored, body) {
		t.Fatalf("stored %q, want %q", stored, body)
	}

	// A presigned part of a multipart upload, the client's usual path.
	mpu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key + ".parts")})
	if err != nil {
		t.Fatal(err)
	}
	part, err := presign.PresignUploadPart(ctx, &s3.UploadPartInput{
		Bucket: aws.String(bucket), Key: mpu.Key, UploadId: mpu.UploadId, PartNumber: aws.Int32(1),
	})
	if err != nil {
		t.Fatal(err)
	}
	resp = browserPut(t, part.URL, part.SignedHeader, app, bytes.Repeat([]byte("p"), 1024))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == "" ||
		!hasToken(resp.Header.Get("Access-Control-Expose-Headers"), "ETag") {
		t.Fatalf("presigned part: %d %v, want 200 with an ETag the page may read", resp.StatusCode, resp.Header)
	}

	// Listed origins: the listed one is echoed, another gets no CORS.
	putCORS(app)
	if resp := preflight(app); resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != app {
		t.Fatalf("listed origin: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := preflight("http://localhost:3001"); resp.StatusCode == http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("other origin: %d %v, want a refusal without Access-Control-Allow-Origin", resp.StatusCode, resp.Header)
	}

	// No origins: no CORS configuration.
	putCORS()
	if resp := preflight(app); resp.StatusCode == http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("without a CORS configuration: %d %v, want a refusal", resp.StatusCode, resp.Header)
	}
}

// browserPut PUTs body to a presigned URL as a browser page would, with an
// Origin header.
func browserPut(t *testing.T, url string, signed http.Header, origin string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range signed {
		if !strings.EqualFold(k, "Host") {
			req.Header[k] = vs
		}
	}
	req.Header.Set("Origin", origin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Logf("PUT %s: %s", url, b)
	}
	return resp
}

// hasToken reports whether the comma-separated list holds tok
// (case-insensitively).
func hasToken(list, tok string) bool {
	for _, v := range strings.Split(list, ",") {
		if strings.EqualFold(strings.TrimSpace(v), tok) {
			return true
		}
	}
	return false
}
