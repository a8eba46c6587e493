package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/mocbuilders/moc-upload/shared/s3blob"
)

// Bytes that go straight to S3: whole files PUT to the uploadUrl that
// register hands out, and parts PUT to presigned URLs. Every test here talks
// to the gateway that enforces AWS's payload limits, as a deployed client
// would.

// smallRefusedBody is the size of files whose PUTs S3 is expected to refuse
// before reading the body. S3 then answers and closes the connection; with a
// body larger than what the server reads with the headers, the close can
// reset the connection while the client is still writing, and the client
// sees "connection reset" instead of the answer.
const smallRefusedBody = 1024

// sendPresigned sends body to a presigned URL with exactly the headers the
// API listed, and no credentials, as a browser would.
func sendPresigned(t *testing.T, method, u string, headers any, body []byte) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := headers.(map[string]any); ok {
		for k, v := range h {
			req.Header.Set(k, v.(string))
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(msg)
}

// putWhole PUTs data to a registered file's uploadUrl the way the old web
// client does: one PUT, one header (Content-Type), no credentials.
func putWhole(t *testing.T, reg map[string]any, contentType string, data []byte) {
	t.Helper()
	if reg["uploadMethod"] != "PUT" {
		t.Fatalf("uploadMethod = %v", reg["uploadMethod"])
	}
	status, _, msg := sendPresigned(t, "PUT", reg["uploadUrl"].(string), map[string]any{"Content-Type": contentType}, data)
	if status != 200 {
		t.Fatalf("PUT uploadUrl: %d %s", status, msg)
	}
}

func sessionFiles(t *testing.T, c client, sessionID string) map[string]map[string]any {
	t.Helper()
	s := c.json("GET", "/api/mocs/uploads/sessions/"+sessionID, nil).data(t, 200)
	out := map[string]map[string]any{}
	for _, f := range s["files"].([]any) {
		f := f.(map[string]any)
		out[f["fileId"].(string)] = f
	}
	return out
}

// multipartUploads lists the bucket's open multipart uploads under key.
func multipartUploads(t *testing.T, key string) int {
	t.Helper()
	out, err := s3c.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{
		Bucket: aws.String(st.Config.S3Bucket), Prefix: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Uploads)
}

func fileKey(t *testing.T, fileID string) string {
	t.Helper()
	var key string
	if err := db.QueryRow(context.Background(), `SELECT s3_key FROM upload_session_files WHERE id = $1`, fileID).Scan(&key); err != nil {
		t.Fatal(err)
	}
	return key
}

func finalizeAndCheckBytes(t *testing.T, c client, sessionID, title string, want map[string][]byte) map[string]any {
	t.Helper()
	moc := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": title}).data(t, 201)
	files := moc["files"].([]any)
	if len(files) != len(want) {
		t.Fatalf("moc files: %v", files)
	}
	for _, f := range files {
		f := f.(map[string]any)
		if got := download(t, f["downloadUrl"].(string)); !bytes.Equal(got, want[f["fileId"].(string)]) {
			t.Fatalf("stored bytes of %s differ from what was sent (%d vs %d bytes)", f["name"], len(got), len(want[f["fileId"].(string)]))
		}
	}
	return moc
}

func TestWholeFilePresignedPut(t *testing.T) {
	c := newAWSClient(t, userFor(t))
	pdf := pdfBytes(7 * mib) // more than a proxied request can carry in AWS
	img := pngBytes(t)
	sessionID := createSession(t, c, pdfDecl("castle.pdf", len(pdf)), pngDecl("front.png", len(img)))
	pdfReg := registerFile(t, c, sessionID, pdfDecl("castle.pdf", len(pdf)))
	imgReg := registerFile(t, c, sessionID, pngDecl("front.png", len(img)))
	pdfID, imgID := pdfReg["fileId"].(string), imgReg["fileId"].(string)

	// What the old web client needs: a URL, a method, one header to send,
	// and an expiry within the session's life.
	if h := pdfReg["uploadHeaders"].(map[string]any); len(h) != 1 || h["Content-Type"] != "application/pdf" {
		t.Fatalf("uploadHeaders = %v, want only Content-Type", h)
	}
	exp, err := time.Parse(time.RFC3339, pdfReg["uploadExpiresAt"].(string))
	if err != nil || time.Until(exp) < 10*time.Minute || time.Until(exp) > 16*time.Minute {
		t.Fatalf("uploadExpiresAt = %v (%v)", pdfReg["uploadExpiresAt"], err)
	}
	u, _ := url.Parse(pdfReg["uploadUrl"].(string))
	if strings.Contains(u.RawQuery, "x-amz-server-side-encryption") || !strings.Contains(u.Query().Get("X-Amz-SignedHeaders"), "content-type") {
		t.Fatalf("uploadUrl signs %q", u.Query().Get("X-Amz-SignedHeaders"))
	}

	putWhole(t, pdfReg, "application/pdf", pdf)
	putWhole(t, imgReg, "image/png", img)

	// Reading the session is where the service learns the files came whole:
	// completed, nothing left in parts, and the unused multipart uploads
	// aborted.
	files := sessionFiles(t, c, sessionID)
	for _, id := range []string{pdfID, imgID} {
		if f := files[id]; f["status"] != "completed" || len(f["uploadedParts"].([]any)) != 0 {
			t.Fatalf("session file after whole PUT: %v", f)
		}
		if n := multipartUploads(t, fileKey(t, id)); n != 0 {
			t.Fatalf("%d multipart uploads left for %s", n, id)
		}
	}
	var status, fileURL string
	if err := db.QueryRow(context.Background(), `SELECT status, file_url FROM upload_session_files WHERE id = $1`, pdfID).Scan(&status, &fileURL); err != nil {
		t.Fatal(err)
	}
	if status != "completed" || !strings.HasSuffix(fileURL, ".pdf") {
		t.Fatalf("file row: %s %s", status, fileURL)
	}
	// Parts for a file that came whole are refused.
	c.json("GET", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+pdfID+"/parts/1/url", nil).fail(t, 409, "FILE_ALREADY_COMPLETED")
	finalizeAndCheckBytes(t, c, sessionID, "Whole Castle", map[string][]byte{pdfID: pdf, imgID: img})
}

// A file PUT whole is found by finalize too, without the session being
// read first, and by complete.
func TestWholeFileFoundByCompleteAndFinalize(t *testing.T) {
	c := newAWSClient(t, userFor(t))
	pdf := pdfBytes(mib)
	img := pngBytes(t)
	sessionID := createSession(t, c, pdfDecl("a.pdf", len(pdf)), pngDecl("b.png", len(img)))
	pdfReg := registerFile(t, c, sessionID, pdfDecl("a.pdf", len(pdf)))
	imgReg := registerFile(t, c, sessionID, pngDecl("b.png", len(img)))
	// A PUT with another Content-Type than the one signed is refused. (A
	// small file: see smallRefusedBody.)
	if status, _, msg := sendPresigned(t, "PUT", imgReg["uploadUrl"].(string), map[string]any{"Content-Type": "image/jpeg"}, img); status != 403 {
		t.Fatalf("PUT with another Content-Type: %d %s, want 403", status, msg)
	}
	putWhole(t, pdfReg, "application/pdf", pdf)
	putWhole(t, imgReg, "image/png", img)
	pdfID, imgID := pdfReg["fileId"].(string), imgReg["fileId"].(string)
	done := c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+pdfID+"/complete", nil).data(t, 200)
	if done["fileId"] != pdfID || !strings.HasSuffix(done["fileUrl"].(string), pdfID+".pdf") {
		t.Fatalf("complete: %v", done)
	}
	finalizeAndCheckBytes(t, c, sessionID, "Found Whole", map[string][]byte{pdfID: pdf, imgID: img})
	if n := multipartUploads(t, fileKey(t, imgID)); n != 0 {
		t.Fatalf("%d multipart uploads left for the image", n)
	}
}

// A whole-file PUT of a file registered with an MD5 must carry it: S3
// checks the bytes.
func TestWholeFileWithDeclaredMD5(t *testing.T) {
	c := newAWSClient(t, userFor(t))
	pdf := pdfBytes(mib)
	sum := md5.Sum(pdf)
	sessionID := createSession(t, c, pdfDecl("sum.pdf", len(pdf)))
	reg := c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files", map[string]any{
		"category": "instruction", "name": "sum.pdf", "size": len(pdf), "type": "application/pdf", "ext": "pdf",
		"checksums": map[string]string{"md5": hex.EncodeToString(sum[:])},
	}).data(t, 201)
	h := reg["uploadHeaders"].(map[string]any)
	if h["Content-MD5"] != contentMD5(pdf) || h["Content-Type"] != "application/pdf" {
		t.Fatalf("uploadHeaders = %v", h)
	}
	other := bytes.Clone(pdf)
	other[len(other)-1] ^= 1
	if status, _, msg := sendPresigned(t, "PUT", reg["uploadUrl"].(string), h, other); status != 400 || !strings.Contains(msg, "BadDigest") {
		t.Fatalf("PUT of other bytes: %d %s, want 400 BadDigest", status, msg)
	}
	if f := sessionFiles(t, c, sessionID)[reg["fileId"].(string)]; f["status"] != "pending" {
		t.Fatalf("file after a refused PUT: %v", f)
	}
	if status, _, msg := sendPresigned(t, "PUT", reg["uploadUrl"].(string), h, pdf); status != 200 {
		t.Fatalf("PUT: %d %s", status, msg)
	}
	finalizeAndCheckBytes(t, c, sessionID, "Summed", map[string][]byte{reg["fileId"].(string): pdf})
}

func TestPresignedParts(t *testing.T) {
	ctx := context.Background()
	c := newAWSClient(t, userFor(t))
	pdf := pdfBytes(12 * mib)
	sessionID := createSession(t, c, pdfDecl("big.pdf", len(pdf)))
	reg := registerFile(t, c, sessionID, pdfDecl("big.pdf", len(pdf)))
	fileID := reg["fileId"].(string)
	urls := "/api/mocs/uploads/sessions/" + sessionID + "/files/" + fileID + "/parts/urls"

	// No body: every part not uploaded yet.
	d := c.json("POST", urls, nil).data(t, 200)
	parts := d["parts"].([]any)
	if len(parts) != 3 {
		t.Fatalf("presigned parts: %v", d)
	}
	etags := map[int]string{}
	for i, p := range parts {
		p := p.(map[string]any)
		n := int(p["partNumber"].(float64))
		if n != i+1 || p["method"] != "PUT" {
			t.Fatalf("part %d: %v", i, p)
		}
		if exp, err := time.Parse(time.RFC3339, p["expiresAt"].(string)); err != nil || time.Until(exp) < 10*time.Minute {
			t.Fatalf("expiresAt %v", p["expiresAt"])
		}
		off, end := (n-1)*5*mib, min(n*5*mib, len(pdf))
		status, h, msg := sendPresigned(t, "PUT", p["url"].(string), p["headers"], pdf[off:end])
		if status != 200 || h.Get("ETag") == "" {
			t.Fatalf("PUT part %d: %d %s", n, status, msg)
		}
		etags[n] = strings.Trim(h.Get("ETag"), `"`)
		if n == 1 {
			// After the first part, only the others are missing.
			left := c.json("POST", urls, map[string]any{}).data(t, 200)["parts"].([]any)
			if len(left) != 2 || left[0].(map[string]any)["partNumber"] != 2.0 {
				t.Fatalf("parts still missing: %v", left)
			}
		}
	}
	// The session shows the parts, with S3's ETags, and the rows record them.
	f := sessionFiles(t, c, sessionID)[fileID]
	up := f["uploadedParts"].([]any)
	if f["status"] != "uploading" || len(up) != 3 {
		t.Fatalf("session file: %v", f)
	}
	for _, p := range up {
		p := p.(map[string]any)
		n := int(p["partNumber"].(float64))
		if p["etag"] != etags[n] || int(p["size"].(float64)) != min(n*5*mib, len(pdf))-(n-1)*5*mib {
			t.Fatalf("uploaded part %v, want etag %s", p, etags[n])
		}
	}
	var rows int
	var stored int64
	if err := db.QueryRow(ctx, `SELECT count(*), sum(size) FROM upload_session_parts WHERE file_id = $1`, fileID).Scan(&rows, &stored); err != nil {
		t.Fatal(err)
	}
	if rows != 3 || stored != int64(len(pdf)) {
		t.Fatalf("part rows: %d of %d bytes", rows, stored)
	}
	if left := c.json("POST", urls, nil).data(t, 200)["parts"].([]any); len(left) != 0 {
		t.Fatalf("presigned parts after all were uploaded: %v", left)
	}
	// Complete with the ETags S3 gave the client.
	var given []map[string]any
	for n := 1; n <= 3; n++ {
		given = append(given, map[string]any{"partNumber": n, "etag": `"` + etags[n] + `"`})
	}
	c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+fileID+"/complete", map[string]any{"parts": given}).data(t, 200)
	finalizeAndCheckBytes(t, c, sessionID, "Presigned Parts", map[string][]byte{fileID: pdf})
}

// Parts PUT to presigned URLs are found by finalize without the session or
// complete being asked first.
func TestPresignedPartsFoundByFinalize(t *testing.T) {
	c := newAWSClient(t, userFor(t))
	pdf := pdfBytes(6 * mib)
	sessionID := createSession(t, c, pdfDecl("f.pdf", len(pdf)))
	fileID := registerFile(t, c, sessionID, pdfDecl("f.pdf", len(pdf)))["fileId"].(string)
	base := "/api/mocs/uploads/sessions/" + sessionID + "/files/" + fileID + "/parts/"
	for n, chunk := range [][]byte{pdf[:5*mib], pdf[5*mib:]} {
		p := c.json("GET", base+strconv.Itoa(n+1)+"/url?md5="+url.QueryEscape(contentMD5(chunk)), nil).data(t, 200)
		if p["partNumber"] != float64(n+1) || p["headers"].(map[string]any)["Content-MD5"] != contentMD5(chunk) {
			t.Fatalf("presigned part: %v", p)
		}
		if status, _, msg := sendPresigned(t, "PUT", p["url"].(string), p["headers"], chunk); status != 200 {
			t.Fatalf("PUT part %d: %d %s", n+1, status, msg)
		}
	}
	finalizeAndCheckBytes(t, c, sessionID, "Found By Finalize", map[string][]byte{fileID: pdf})
}

// S3 refuses a part whose bytes do not match the Content-MD5 signed into
// its URL, and the service records nothing.
func TestPresignedPartWrongMD5(t *testing.T) {
	c := newAWSClient(t, userFor(t))
	pdf := pdfBytes(smallRefusedBody)
	sessionID := createSession(t, c, pdfDecl("m.pdf", len(pdf)))
	fileID := registerFile(t, c, sessionID, pdfDecl("m.pdf", len(pdf)))["fileId"].(string)
	p := c.json("GET", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+fileID+"/parts/1/url?md5="+url.QueryEscape(contentMD5(pdf)), nil).data(t, 200)
	other := bytes.Clone(pdf)
	other[100] ^= 1
	if status, _, msg := sendPresigned(t, "PUT", p["url"].(string), p["headers"], other); status != 400 || !strings.Contains(msg, "BadDigest") {
		t.Fatalf("PUT with a wrong MD5: %d %s, want 400 BadDigest", status, msg)
	}
	unchanged(t, func() {
		if f := sessionFiles(t, c, sessionID)[fileID]; f["status"] != "pending" || len(f["uploadedParts"].([]any)) != 0 {
			t.Fatalf("session file: %v", f)
		}
	})
	// Without the signed header the signature does not match.
	if status, _, _ := sendPresigned(t, "PUT", p["url"].(string), nil, pdf); status != 403 {
		t.Fatalf("PUT without the signed Content-MD5: %d, want 403", status)
	}
	// Bad digests in the request are the client's error.
	c.json("GET", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+fileID+"/parts/1/url?md5=nope", nil).fail(t, 422, "VALIDATION_ERROR")
	c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+fileID+"/parts/urls", map[string]any{"md5s": map[string]string{"1": "zz"}}).fail(t, 422, "VALIDATION_ERROR")
	c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+fileID+"/parts/urls", map[string]any{"partNumbers": []int{2}}).fail(t, 400, "INVALID_PART_NUMBER")
	c.json("GET", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+fileID+"/parts/2/url", nil).fail(t, 400, "INVALID_PART_NUMBER")
	c.as("e2e-someone-else").json("GET", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+fileID+"/parts/1/url", nil).fail(t, 404, "NOT_FOUND")
}

// One file, its first part PUT to a presigned URL and its last through the
// API (small enough for AWS's payload limits).
func TestHalfPresignedHalfProxied(t *testing.T) {
	c := newAWSClient(t, userFor(t))
	pdf := pdfBytes(6 * mib)
	sessionID := createSession(t, c, pdfDecl("h.pdf", len(pdf)))
	fileID := registerFile(t, c, sessionID, pdfDecl("h.pdf", len(pdf)))["fileId"].(string)
	p := c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+fileID+"/parts/urls", map[string]any{"partNumbers": []int{1}}).data(t, 200)["parts"].([]any)[0].(map[string]any)
	if status, _, msg := sendPresigned(t, "PUT", p["url"].(string), p["headers"], pdf[:5*mib]); status != 200 {
		t.Fatalf("PUT part 1: %d %s", status, msg)
	}
	d := c.put(partPath(sessionID, fileID, 2), pdf[5*mib:]).data(t, 200)
	if d["totalParts"] != 2.0 {
		t.Fatalf("proxied part: %v", d)
	}
	if f := sessionFiles(t, c, sessionID)[fileID]; len(f["uploadedParts"].([]any)) != 2 {
		t.Fatalf("session file: %v", f)
	}
	finalizeAndCheckBytes(t, c, sessionID, "Half And Half", map[string][]byte{fileID: pdf})
}

// An upload URL whose time is up is refused by S3. The URL is signed 20
// minutes in the past with the service's 15-minute lifetime, so the test
// waits for nothing.
func TestExpiredPresignedURL(t *testing.T) {
	c := newAWSClient(t, userFor(t))
	pdf := pdfBytes(smallRefusedBody)
	sessionID := createSession(t, c, pdfDecl("late.pdf", len(pdf)))
	fileID := registerFile(t, c, sessionID, pdfDecl("late.pdf", len(pdf)))["fileId"].(string)

	past := -20 * time.Minute
	svc := *st.App.Service
	svc.Now = func() time.Time { return time.Now().Add(past) }
	presign := s3.NewPresignClient(s3c, func(o *s3.PresignOptions) { o.Presigner = shiftedSigner{v4.NewSigner(), past} })
	svc.Blob = s3blob.NewWithClient(s3c, presign, s3blob.Config{Bucket: st.Config.S3Bucket, Endpoint: st.Config.S3Endpoint})
	parts, err := svc.PresignParts(context.Background(), userFor(t), sessionID, fileID, []int{1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !parts[0].ExpiresAt.Before(time.Now()) {
		t.Fatalf("expiresAt %v is not past", parts[0].ExpiresAt)
	}
	h := map[string]any{}
	for k, v := range parts[0].Header {
		h[k] = v
	}
	status, _, msg := sendPresigned(t, "PUT", parts[0].URL, h, pdf)
	if status != 403 || !strings.Contains(strings.ToLower(msg), "expired") {
		t.Fatalf("PUT to an expired URL: %d %s, want 403 expired", status, msg)
	}
	if f := sessionFiles(t, c, sessionID)[fileID]; len(f["uploadedParts"].([]any)) != 0 {
		t.Fatalf("session file: %v", f)
	}
}

// shiftedSigner signs as if the clock were shifted.
type shiftedSigner struct {
	*v4.Signer
	shift time.Duration
}

func (s shiftedSigner) PresignHTTP(ctx context.Context, creds aws.Credentials, r *http.Request, payloadHash, service, region string, signingTime time.Time, optFns ...func(*v4.SignerOptions)) (string, http.Header, error) {
	return s.Signer.PresignHTTP(ctx, creds, r, payloadHash, service, region, signingTime.Add(s.shift), optFns...)
}

// A 100 MiB file through the presigned path with AWS's limits on: 20 parts
// of 5 MiB, four at a time, as a browser would send them.
func TestPresigned100MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MiB upload")
	}
	c := newAWSClient(t, userFor(t))
	pdf := pdfBytes(100 * mib)
	sessionID := createSession(t, c, pdfDecl("huge.pdf", len(pdf)))
	fileID := registerFile(t, c, sessionID, pdfDecl("huge.pdf", len(pdf)))["fileId"].(string)
	parts := c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+fileID+"/parts/urls", nil).data(t, 200)["parts"].([]any)
	if len(parts) != 20 {
		t.Fatalf("%d presigned parts, want 20", len(parts))
	}
	errs := make(chan string, len(parts))
	sem := make(chan struct{}, 4)
	for _, p := range parts {
		p := p.(map[string]any)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			n := int(p["partNumber"].(float64))
			req, _ := http.NewRequest("PUT", p["url"].(string), bytes.NewReader(pdf[(n-1)*5*mib:n*5*mib]))
			for k, v := range p["headers"].(map[string]any) {
				req.Header.Set(k, v.(string))
			}
			resp, err := http.DefaultClient.Do(req)
			switch {
			case err != nil:
				errs <- err.Error()
			case resp.StatusCode != 200:
				errs <- "part " + strconv.Itoa(n) + ": " + resp.Status
			default:
				errs <- ""
			}
			if resp != nil {
				resp.Body.Close()
			}
		}()
	}
	for range parts {
		if e := <-errs; e != "" {
			t.Fatal(e)
		}
	}
	finalizeAndCheckBytes(t, c, sessionID, "Hundred MiB", map[string][]byte{fileID: pdf})
}

// Through a deployed API a 5 MiB part does not fit: the local gateway
// refuses it as API Gateway and Lambda would, and nothing is stored.
func TestProxiedPartOverAWSLimits(t *testing.T) {
	c := newAWSClient(t, userFor(t))
	pdf := pdfBytes(6 * mib)
	sessionID := createSession(t, c, pdfDecl("p.pdf", len(pdf)))
	fileID := registerFile(t, c, sessionID, pdfDecl("p.pdf", len(pdf)))["fileId"].(string)
	unchanged(t, func() {
		r := c.put(partPath(sessionID, fileID, 1), pdf[:5*mib])
		if r.Status != 413 || r.Body["message"] != "Request Entity Too Large" {
			t.Fatalf("proxied 5 MiB part with AWS limits: %d %s", r.Status, r.Raw)
		}
	})
	// Without the limits (the old contract's proxied parts) it goes through.
	newClient(t, c.user).put(partPath(sessionID, fileID, 1), pdf[:5*mib]).data(t, 200)
}
