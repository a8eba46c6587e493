package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/google/uuid"

	"github.com/mocbuilders/moc-upload/shared/s3blob"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// The upload benchmarks put the same bytes into the same S3 server in the
// same run three ways: straight with aws-sdk-go-v2 (the baseline), on
// presigned URLs the API hands out, and through the API itself (proxied).
// docs/benchmarks.md has the figures and the command.

const (
	benchPartSize = 5 * mib // upload.PartSizeBytes
	benchClients  = 4
)

// benchHTTP carries the benchmarks' API and presigned requests. Unlike
// http.DefaultClient, which keeps two idle connections per host, it keeps
// one per concurrent client alive, as the SDK's client does.
var benchHTTP = &http.Client{Transport: &http.Transport{
	MaxIdleConns: 64, MaxIdleConnsPerHost: 64, DisableCompression: true,
}}

// benchSDK is the baseline's client, configured as the service's own S3
// adapter is (s3blob.NewClient: request checksums only where required),
// and its uploads send UNSIGNED-PAYLOAD (benchUnsigned) as the service's
// and presigned PUTs do. The SDK's defaults over plain HTTP would hash
// every body twice on the client (SHA-256 for the signature, CRC32 for the
// checksum) and once more on the server: a slower baseline, flattering
// ratios.
func benchSDK(b *testing.B) *s3.Client {
	b.Helper()
	c := st.Config
	cli, err := s3blob.NewClient(context.Background(), s3blob.Config{Bucket: c.S3Bucket, Endpoint: c.S3Endpoint,
		Region: c.S3Region, AccessKeyID: c.S3AccessKey, SecretAccessKey: c.S3SecretKey})
	if err != nil {
		b.Fatal(err)
	}
	return cli
}

var benchUnsigned = s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)

// benchRounds interleaves the variants of the upload benchmarks: each
// round runs every variant (b.N iterations each), so that a load that
// comes and goes on a shared machine falls on baseline and measured alike,
// where -count would run all samples of one variant, then all of the next.
// `-count 1 -bench.rounds 8` gives eight samples of each, named
// …/round=N/via=…; `benchstat -ignore /round` pools them.
var benchRounds = flag.Int("bench.rounds", 1, "rounds of interleaved variants in the upload benchmarks")

// benchRoundsRun runs round(b) under round=1 … round=benchRounds.
func benchRoundsRun(b *testing.B, round func(b *testing.B)) {
	for r := 1; r <= *benchRounds; r++ {
		b.Run(fmt.Sprintf("round=%d", r), round)
	}
}

// benchRanges cuts size bytes into 5 MiB parts: part n is [r[n-1][0], r[n-1][1]).
func benchRanges(size int) [][2]int {
	var r [][2]int
	for off := 0; off < size; off += benchPartSize {
		r = append(r, [2]int{off, min(off+benchPartSize, size)})
	}
	return r
}

// benchParallel runs fn(0) … fn(n-1) at once and joins their errors.
func benchParallel(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = fn(i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// benchPool runs fn(0) … fn(n-1), workers at a time.
func benchPool(n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	return benchParallel(workers, func(int) error {
		for {
			i := int(next.Add(1)) - 1
			if i >= n {
				return nil
			}
			if err := fn(i); err != nil {
				return err
			}
		}
	})
}

// benchCall sends one request to the API as a client would and returns the
// success envelope's data; any other status than want is an error.
func benchCall(base, user, method, path, contentType string, body []byte, want int) (map[string]any, error) {
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+user)
	resp, err := benchHTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %d, want %d: %.300s", method, path, resp.StatusCode, want, raw)
	}
	var env struct {
		Data map[string]any `json:"data"`
	}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &env); err != nil {
			return nil, fmt.Errorf("%s %s: %w: %.300s", method, path, err, raw)
		}
	}
	return env.Data, nil
}

// benchPutURL PUTs body to a presigned URL with the headers it was signed
// with, and no credentials, as a browser would; it returns S3's ETag.
func benchPutURL(u string, headers map[string]string, body []byte) (string, error) {
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := benchHTTP.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("PUT presigned URL: %d %.300s", resp.StatusCode, msg)
	}
	return resp.Header.Get("ETag"), nil
}

func benchFilePath(sessionID, fileID string) string {
	return "/api/mocs/uploads/sessions/" + sessionID + "/files/" + fileID
}

// proxiedUpload: one client per file, all at once, each PUTs its file's
// parts through the API (PUT …/parts/{n}) one after another, then
// completes the file (POST …/complete). Every file holds data.
func benchProxied(base, user, sessionID string, fileIDs []string, data []byte) error {
	ranges := benchRanges(len(data))
	return benchParallel(len(fileIDs), func(i int) error {
		for n, r := range ranges {
			if _, err := benchCall(base, user, "PUT", partPath(sessionID, fileIDs[i], n+1), "application/octet-stream", data[r[0]:r[1]], 200); err != nil {
				return err
			}
		}
		_, err := benchCall(base, user, "POST", benchFilePath(sessionID, fileIDs[i])+"/complete", "application/json", nil, 200)
		return err
	})
}

// presignedUpload: one client per file, all at once, each asks the API for
// every part's URL in one request (POST …/parts/urls), PUTs the parts to
// S3 one after another with plain net/http, then completes the file
// through the API.
func benchPresigned(base, user, sessionID string, fileIDs []string, data []byte) error {
	ranges := benchRanges(len(data))
	return benchParallel(len(fileIDs), func(i int) error {
		fp := benchFilePath(sessionID, fileIDs[i])
		d, err := benchCall(base, user, "POST", fp+"/parts/urls", "application/json", nil, 200)
		if err != nil {
			return err
		}
		parts, _ := d["parts"].([]any)
		if len(parts) != len(ranges) {
			return fmt.Errorf("%d presigned parts, want %d", len(parts), len(ranges))
		}
		for _, p := range parts {
			p := p.(map[string]any)
			n := int(p["partNumber"].(float64))
			h := map[string]string{}
			if m, ok := p["headers"].(map[string]any); ok {
				for k, v := range m {
					h[k] = v.(string)
				}
			}
			r := ranges[n-1]
			if _, err := benchPutURL(p["url"].(string), h, data[r[0]:r[1]]); err != nil {
				return fmt.Errorf("part %d: %w", n, err)
			}
		}
		_, err = benchCall(base, user, "POST", fp+"/complete", "application/json", nil, 200)
		return err
	})
}

// benchFile is a file registered for a benchmark.
type benchFile struct {
	id, key, uploadID string
	whole             upload.PresignedRequest // the whole-file PUT (uploadUrl)
}

// benchPDFs opens a session of n PDFs of size bytes for a new user and
// registers them through the service (setup, not timed): each file's S3
// multipart upload is open and its uploadUrl signed.
func benchPDFs(b *testing.B, n, size int) (user, sessionID string, files []benchFile) {
	b.Helper()
	ctx := context.Background()
	svc := st.App.Service
	user = "bench-" + uuid.NewString()
	specs := make([]upload.FileSpec, n)
	for i := range specs {
		specs[i] = upload.FileSpec{Category: upload.CategoryInstruction, Name: fmt.Sprintf("f%d.pdf", i),
			Size: int64(size), Type: "application/pdf", Ext: "pdf"}
	}
	sess, err := svc.CreateSession(ctx, user, specs)
	if err != nil {
		b.Fatal(err)
	}
	for _, spec := range specs {
		reg, err := svc.RegisterFile(ctx, user, sess.ID, spec, nil)
		if err != nil {
			b.Fatal(err)
		}
		files = append(files, benchFile{id: reg.File.ID, key: reg.File.S3Key, uploadID: reg.File.UploadID, whole: reg.Upload})
	}
	return user, sess.ID, files
}

func benchIDs(files []benchFile) []string {
	ids := make([]string, len(files))
	for i, f := range files {
		ids[i] = f.id
	}
	return ids
}

// benchDrop checks that every file is stored whole, with size bytes,
// then deletes what the iteration stored (not timed), so that the S3
// server's disk does not fill up over a run: the objects, and the
// multipart uploads left open.
func benchDrop(b *testing.B, files []benchFile, size int) {
	b.Helper()
	ctx := context.Background()
	bucket := aws.String(st.Config.S3Bucket)
	for _, f := range files {
		benchCheckStored(b, f.key, int64(size))
		if _, err := s3c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: bucket, Key: aws.String(f.key)}); err != nil {
			b.Fatal(err)
		}
		if f.uploadID != "" {
			// Gone already when the upload was completed.
			_, _ = s3c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: bucket, Key: aws.String(f.key), UploadId: aws.String(f.uploadID)})
		}
	}
}

// BenchmarkUpload256MiB: 256 MiB in 5 MiB parts by 4 concurrent clients,
// each uploading one 64 MiB PDF (12 parts of 5 MiB and one of 4 MiB; a PDF
// may be at most 100 MiB in the test stack) one part at a time and
// completing it. Opening the multipart uploads is setup (for the API:
// create the session and register the files), not timed.
//
//   - via=sdk (baseline): UploadPart of each part and
//     CompleteMultipartUpload, straight to S3 with aws-sdk-go-v2 (benchSDK);
//   - via=presigned: one PresignParts request per file
//     (POST …/parts/urls), a plain net/http PUT of each part to its URL,
//     and POST …/complete (the service lists the parts in S3, records them
//     and completes the upload);
//   - via=proxied: PUT …/parts/{n} through the local gateway without
//     AWS's payload limits (server), then POST …/complete;
//   - via=sdk-defaults, for comparison: as via=sdk with the SDK's default
//     client (s3c).
func BenchmarkUpload256MiB(b *testing.B) {
	data := pdfBytes(64 * mib)
	total := int64(benchClients * len(data))
	sdk := benchSDK(b)
	api := func(upload func(base, user, sessionID string, fileIDs []string, data []byte) error, base string) func(*testing.B) {
		return func(b *testing.B) {
			b.SetBytes(total)
			for b.Loop() {
				b.StopTimer()
				user, sessionID, files := benchPDFs(b, benchClients, len(data))
				b.StartTimer()
				err := upload(base, user, sessionID, benchIDs(files), data)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				benchDrop(b, files, len(data))
				b.StartTimer()
			}
		}
	}
	benchRoundsRun(b, func(b *testing.B) {
		b.Run("via=sdk", func(b *testing.B) { benchSDKParts(b, sdk, benchUnsigned, data) })
		// Presigned parts are what a deployed client sends: its API
		// requests go through the gateway with AWS's limits on.
		b.Run("via=presigned", api(benchPresigned, awsServer.URL))
		b.Run("via=proxied", api(benchProxied, server.URL))
		b.Run("via=sdk-defaults", func(b *testing.B) { benchSDKParts(b, s3c, nil, data) })
	})
}

// benchSDKParts is BenchmarkUpload256MiB's upload straight to S3 with cli:
// benchClients clients, each uploading one copy of data in 5 MiB parts.
func benchSDKParts(b *testing.B, cli *s3.Client, opt func(*s3.Options), data []byte) {
	ctx := context.Background()
	bucket := aws.String(st.Config.S3Bucket)
	ranges := benchRanges(len(data))
	var opts []func(*s3.Options)
	if opt != nil {
		opts = append(opts, opt)
	}
	b.SetBytes(int64(benchClients * len(data)))
	for b.Loop() {
		b.StopTimer()
		files := make([]benchFile, benchClients)
		for i := range files {
			key := "bench/sdk/" + uuid.NewString() + ".pdf"
			up, err := cli.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: bucket, Key: aws.String(key),
				ContentType: aws.String("application/pdf")})
			if err != nil {
				b.Fatal(err)
			}
			files[i] = benchFile{key: key, uploadID: aws.ToString(up.UploadId)}
		}
		b.StartTimer()
		err := benchParallel(benchClients, func(i int) error {
			f := files[i]
			var done []types.CompletedPart
			for n, r := range ranges {
				out, err := cli.UploadPart(ctx, &s3.UploadPartInput{Bucket: bucket, Key: aws.String(f.key), UploadId: aws.String(f.uploadID),
					PartNumber: aws.Int32(int32(n + 1)), Body: bytes.NewReader(data[r[0]:r[1]]), ContentLength: aws.Int64(int64(r[1] - r[0]))},
					opts...)
				if err != nil {
					return err
				}
				done = append(done, types.CompletedPart{PartNumber: aws.Int32(int32(n + 1)), ETag: out.ETag})
			}
			_, err := cli.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: bucket, Key: aws.String(f.key),
				UploadId: aws.String(f.uploadID), MultipartUpload: &types.CompletedMultipartUpload{Parts: done}})
			return err
		})
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		benchDrop(b, files, len(data))
		b.StartTimer()
	}
}

// BenchmarkWholeFiles: ten 20 MiB PDFs, each in one PUT, four at a time.
//
//   - via=sdk (baseline): PutObject straight to S3 with aws-sdk-go-v2
//     (benchSDK), Content-Type application/pdf;
//   - via=presigned: a plain net/http PUT of each file to the uploadUrl
//     RegisterFile gave it, with its uploadHeaders (Content-Type), as the
//     old web client does. Registering the files is setup, not timed;
//   - via=sdk-defaults, for comparison: as via=sdk with the SDK's default
//     client (s3c).
func BenchmarkWholeFiles(b *testing.B) {
	const files, size = 10, 20 * mib
	data := pdfBytes(size)
	sdk := benchSDK(b)
	presigned := func(b *testing.B) {
		b.SetBytes(files * size)
		for b.Loop() {
			b.StopTimer()
			_, _, fs := benchPDFs(b, files, size)
			if h := fs[0].whole.Header; fs[0].whole.Method != "PUT" || len(h) != 1 || h["Content-Type"] != "application/pdf" {
				b.Fatalf("uploadUrl: %s with %v", fs[0].whole.Method, h)
			}
			b.StartTimer()
			err := benchPool(files, benchClients, func(i int) error {
				_, err := benchPutURL(fs[i].whole.URL, fs[i].whole.Header, data)
				return err
			})
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			benchDrop(b, fs, size)
			b.StartTimer()
		}
	}
	benchRoundsRun(b, func(b *testing.B) {
		b.Run("via=sdk", func(b *testing.B) { benchSDKPuts(b, sdk, benchUnsigned, files, data) })
		b.Run("via=presigned", presigned)
		b.Run("via=sdk-defaults", func(b *testing.B) { benchSDKPuts(b, s3c, nil, files, data) })
	})
}

// benchSDKPuts is BenchmarkWholeFiles's upload straight to S3 with cli:
// n PutObjects of data, benchClients at a time.
func benchSDKPuts(b *testing.B, cli *s3.Client, opt func(*s3.Options), n int, data []byte) {
	ctx := context.Background()
	bucket := aws.String(st.Config.S3Bucket)
	var opts []func(*s3.Options)
	if opt != nil {
		opts = append(opts, opt)
	}
	b.SetBytes(int64(n * len(data)))
	for b.Loop() {
		b.StopTimer()
		fs := make([]benchFile, n)
		for i := range fs {
			fs[i].key = "bench/sdk/" + uuid.NewString() + ".pdf"
		}
		b.StartTimer()
		err := benchPool(n, benchClients, func(i int) error {
			_, err := cli.PutObject(ctx, &s3.PutObjectInput{Bucket: bucket, Key: aws.String(fs[i].key),
				Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))), ContentType: aws.String("application/pdf")},
				opts...)
			return err
		})
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		benchDrop(b, fs, len(data))
		b.StartTimer()
	}
}

// benchCheckStored fails unless key holds size bytes, so that no variant is
// fast by storing less.
func benchCheckStored(b *testing.B, key string, size int64) {
	b.Helper()
	out, err := s3c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(st.Config.S3Bucket), Key: aws.String(key)})
	if err != nil {
		b.Fatal(err)
	}
	if aws.ToInt64(out.ContentLength) != size {
		b.Fatalf("%s holds %d bytes, want %d", key, aws.ToInt64(out.ContentLength), size)
	}
}
