package s3blob

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	//lint:ignore SA1019 deprecated for want of an owner (contrib #9707), not broken; the SDK's own tracing needs github.com/aws/smithy-go/tracing/smithyoteltracing, not in go.mod.
	"go.opentelemetry.io/contrib/instrumentation/github.com/aws/aws-sdk-go-v2/otelaws"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// Defaults applied by New and NewWithClient to a zero Config field.
const (
	DefaultRegion      = "us-east-1"
	DefaultMaxAttempts = 3
	// DefaultSSE is what the config package should pass as Config.SSE when
	// S3_SSE is unset. An empty Config.SSE means no SSE header.
	DefaultSSE = "AES256"
	// DefaultOperationTimeout: S3 answers these in well under a second;
	// ten seconds leave room for the retryer's attempts and backoff.
	DefaultOperationTimeout = 10 * time.Second
	// DefaultTransferTimeout: a 5 MiB part streamed from a slow client, or
	// a 50 MiB object read for its checksum, within API Gateway's 30 s.
	DefaultTransferTimeout = 25 * time.Second
	// DefaultDeadlineReserve is the time kept before the caller's deadline.
	DefaultDeadlineReserve = 500 * time.Millisecond
)

// Config configures a Blob. See the package documentation for the
// environment variables the service maps onto it.
type Config struct {
	// Bucket holds every object (required).
	Bucket string
	// Endpoint is an S3-compatible endpoint (e.g. "http://127.0.0.1:7070");
	// it switches to path-style addressing. Empty → AWS S3.
	Endpoint string
	// Region defaults to us-east-1.
	Region string
	// AccessKeyID and SecretAccessKey are used as static credentials with an
	// Endpoint. Without one, or when empty, the default credential chain is
	// used (on Lambda: the function's role, including its session token).
	AccessKeyID     string
	SecretAccessKey string
	// SSE is the x-amz-server-side-encryption value set on
	// CreateMultipartUpload ("AES256" or "aws:kms"); "" sends none.
	SSE string
	// PublicBaseURL, when set, makes PresignGet return PublicBaseURL + "/" +
	// key instead of a presigned URL (a CDN or a public bucket).
	PublicBaseURL string
	// MaxAttempts is the SDK retryer's attempt limit per call (default 3).
	MaxAttempts int
	// OperationTimeout bounds each call that moves no object body
	// (create, complete, abort, list parts, head, delete), all its
	// attempts included (default DefaultOperationTimeout).
	OperationTimeout time.Duration
	// TransferTimeout bounds each call that moves an object body (upload
	// part, put, get), reading the body included (default
	// DefaultTransferTimeout).
	TransferTimeout time.Duration
	// DeadlineReserve is kept free before the caller's deadline (the
	// Lambda invocation's): a call ends that much earlier, so the caller
	// can still answer (default DefaultDeadlineReserve).
	DeadlineReserve time.Duration
}

// S3API is the part of *s3.Client that Blob calls. Wrap a client in a type
// with these methods to inject faults in tests.
type S3API interface {
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(ctx context.Context, in *s3.UploadPartInput, optFns ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	ListParts(ctx context.Context, in *s3.ListPartsInput, optFns ...func(*s3.Options)) (*s3.ListPartsOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// Presigner is the part of *s3.PresignClient that Blob calls.
type Presigner interface {
	PresignGetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error)
	PresignUploadPart(ctx context.Context, in *s3.UploadPartInput, optFns ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error)
	PresignPutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error)
}

var (
	_ upload.Blob = (*Blob)(nil)
	_ S3API       = (*s3.Client)(nil)
	_ Presigner   = (*s3.PresignClient)(nil)
)

// Blob implements upload.Blob over S3.
type Blob struct {
	api     S3API
	presign Presigner
	cfg     Config
}

// New builds the S3 client for cfg and returns a Blob over it.
func New(ctx context.Context, cfg Config) (*Blob, error) {
	c, err := NewClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return NewWithClient(c, s3.NewPresignClient(c), cfg), nil
}

// NewClient returns the *s3.Client that New uses for cfg: path-style
// addressing, BaseEndpoint and static credentials when cfg.Endpoint is set,
// the default AWS config chain otherwise; the standard retryer with
// cfg.MaxAttempts; request checksums only when an operation requires them;
// OpenTelemetry client spans (otelaws) for the calls, none for presigning.
func NewClient(ctx context.Context, cfg Config) (*s3.Client, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3blob: Config.Bucket is required")
	}
	cfg = withDefaults(cfg)
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(cfg.Region),
		awsconfig.WithRetryMaxAttempts(cfg.MaxAttempts),
		// The default (WhenSupported) makes UploadPart compute a CRC32
		// over the body before sending it, which an unseekable body over
		// plain HTTP cannot do. See "Considerations".
		awsconfig.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		// Finalize checks up to 32 files at once; the SDK's transport
		// keeps only 10 idle connections per host, so every finalize
		// would open (and TLS-handshake) the rest anew.
		awsconfig.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConnsPerHost = 64
		})),
	}
	if cfg.Endpoint != "" && cfg.AccessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3blob: load AWS config: %w", err)
	}
	// Each call is an OpenTelemetry client span, a child of the span in
	// its context, with the global provider (a no-op unless package
	// telemetry set one up). Presigning sends nothing: no span.
	otelaws.AppendMiddlewares(&awsCfg.APIOptions)
	awsCfg.APIOptions = append(awsCfg.APIOptions, untracedPresign)
	return s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		// Ranged GETs and objects uploaded without checksums have nothing
		// to validate; without this every such GET logs a DEBUG line.
		o.DisableLogOutputChecksumValidationSkipped = true
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
			o.UsePathStyle = true
		}
	}), nil
}

// untracedPresign takes otelaws's middlewares out of a presigning
// operation's stack: a presigned URL is computed, not sent, and
// PresignParts would otherwise leave a span per part named after the
// operation (S3.UploadPart) as if it had been called. A missing
// middleware is not an error. (An SDK call's options run after its stack
// is built, presigning's included, so the presigner is already there.)
func untracedPresign(stack *middleware.Stack) error {
	if _, ok := stack.Finalize.Get("PresignHTTPRequest"); !ok {
		return nil
	}
	_, _ = stack.Initialize.Remove("OTelInitializeMiddlewareBefore")
	_, _ = stack.Initialize.Remove("OTelInitializeMiddlewareAfter")
	_, _ = stack.Finalize.Remove("OTelFinalizeMiddleware")
	_, _ = stack.Deserialize.Remove("OTelDeserializeMiddleware")
	return nil
}

// NewWithClient returns a Blob that calls api and presign (usually an
// *s3.Client and s3.NewPresignClient of it; presign may be nil when nothing
// is presigned). cfg.Bucket must be set; the other fields are used as by
// New, except those that configure the client (credentials, MaxAttempts).
func NewWithClient(api S3API, presign Presigner, cfg Config) *Blob {
	return &Blob{api: api, presign: presign, cfg: withDefaults(cfg)}
}

func withDefaults(cfg Config) Config {
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.OperationTimeout <= 0 {
		cfg.OperationTimeout = DefaultOperationTimeout
	}
	if cfg.TransferTimeout <= 0 {
		cfg.TransferTimeout = DefaultTransferTimeout
	}
	if cfg.DeadlineReserve <= 0 {
		cfg.DeadlineReserve = DefaultDeadlineReserve
	}
	cfg.Endpoint = strings.TrimRight(cfg.Endpoint, "/")
	cfg.PublicBaseURL = strings.TrimRight(cfg.PublicBaseURL, "/")
	return cfg
}

// sse is the encryption of the objects the service writes: Config.SSE.
// The SDK sends no x-amz-server-side-encryption header for an empty one.
func (b *Blob) sse() types.ServerSideEncryption { return types.ServerSideEncryption(b.cfg.SSE) }

// CreateMultipartUpload starts a multipart upload of key, with server-side
// encryption when Config.SSE is set.
func (b *Blob) CreateMultipartUpload(ctx context.Context, key, contentType string) (string, error) {
	in := &s3.CreateMultipartUploadInput{Bucket: &b.cfg.Bucket, Key: &key,
		ServerSideEncryption: b.sse()}
	if contentType != "" {
		in.ContentType = &contentType
	}
	ctx, cancel := b.bound(ctx, b.cfg.OperationTimeout)
	defer cancel()
	out, err := b.api.CreateMultipartUpload(ctx, in)
	if err != nil {
		return "", wrap(err, "s3: create multipart upload of %s", key)
	}
	if out.UploadId == nil || *out.UploadId == "" {
		return "", fmt.Errorf("s3: create multipart upload of %s: no upload id in the response", key)
	}
	return *out.UploadId, nil
}

// UploadPart streams exactly size bytes of body as part partNumber. See
// "Considerations" in the package documentation for how the body is sent,
// retried and checked against contentMD5. The returned ETag has no quotes.
func (b *Blob) UploadPart(ctx context.Context, key, uploadID string, partNumber int, body io.Reader, size int64, contentMD5 string) (string, error) {
	if contentMD5 != "" {
		raw, err := base64.StdEncoding.DecodeString(contentMD5)
		if err != nil || len(raw) != md5.Size {
			return "", fmt.Errorf("s3: upload part %d of %s: Content-MD5 %q is not a base64 MD5 digest: %w",
				partNumber, key, contentMD5, upload.ErrBadDigest)
		}
	}
	if partNumber < 1 || partNumber > 10000 {
		return "", fmt.Errorf("s3: upload part %d of %s: part number out of range 1..10000", partNumber, key)
	}
	if size < 0 {
		return "", fmt.Errorf("s3: upload part %d of %s: negative size %d", partNumber, key, size)
	}

	ctx, cancel := b.bound(ctx, b.cfg.TransferTimeout)
	defer cancel()
	pb := newPartBody(body, size)
	in := &s3.UploadPartInput{
		Bucket:        &b.cfg.Bucket,
		Key:           &key,
		UploadId:      &uploadID,
		PartNumber:    aws.Int32(int32(partNumber)),
		Body:          pb,
		ContentLength: aws.Int64(size),
	}
	if contentMD5 != "" {
		in.ContentMD5 = &contentMD5
	}
	out, err := b.api.UploadPart(ctx, in,
		s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware, addHTTP11),
		func(o *s3.Options) {
			// Also when the client was built elsewhere (NewWithClient).
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		})
	if err != nil {
		if rerr := pb.readErr(); rerr != nil {
			// The body broke (the client went away, or sent too few
			// bytes): that is not the store's fault.
			return "", fmt.Errorf("s3: upload part %d of %s: read body: %w", partNumber, key, rerr)
		}
		return "", wrap(err, "s3: upload part %d of %s", partNumber, key)
	}
	if pb.read != size {
		// A store that answers 200 has read Content-Length bytes; this is
		// an S3API that did not read the body.
		return "", fmt.Errorf("s3: upload part %d of %s: only %d of %d bytes were sent", partNumber, key, pb.read, size)
	}
	return unquote(aws.ToString(out.ETag)), nil
}

// addHTTP11 marks the request as HTTP/1.1. The SDK sends "Expect:
// 100-continue" for bodies of 2 MiB or more but leaves the request's
// ProtoMajor/ProtoMinor at 0, and net/http only waits for the 100 Continue
// when ProtoAtLeast(1, 1); without this the body is sent at once, so a store
// refusing the request up front (503 SlowDown, NoSuchUpload) costs the whole
// body and the unseekable part cannot be retried.
func addHTTP11(stack *middleware.Stack) error {
	return stack.Build.Add(middleware.BuildMiddlewareFunc("s3blobHTTP11",
		func(ctx context.Context, in middleware.BuildInput, next middleware.BuildHandler) (middleware.BuildOutput, middleware.Metadata, error) {
			if req, ok := in.Request.(*smithyhttp.Request); ok {
				req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.1", 1, 1
			}
			return next.HandleBuild(ctx, in)
		}), middleware.After)
}

// CompleteMultipartUpload completes the upload with parts, sorted by part
// number; ETags may be given with or without quotes.
func (b *Blob) CompleteMultipartUpload(ctx context.Context, key, uploadID string, parts []upload.CompletedPart) error {
	sorted := slices.Clone(parts)
	slices.SortFunc(sorted, func(a, b upload.CompletedPart) int { return a.PartNumber - b.PartNumber })
	cps := make([]types.CompletedPart, len(sorted))
	for i, p := range sorted {
		cps[i] = types.CompletedPart{
			PartNumber: aws.Int32(int32(p.PartNumber)),
			ETag:       aws.String(quote(p.ETag)),
		}
	}
	ctx, cancel := b.bound(ctx, b.cfg.OperationTimeout)
	defer cancel()
	_, err := b.api.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &b.cfg.Bucket,
		Key:             &key,
		UploadId:        &uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: cps},
	})
	if err != nil {
		switch apiCode(err) {
		case "InvalidPart", "InvalidPartOrder", "EntityTooSmall":
			return b.partsRefused(ctx, key, uploadID, sorted, err)
		}
		return wrap(err, "s3: complete multipart upload of %s", key)
	}
	return nil
}

// partsRefused explains S3's refusal of the parts given to complete an
// upload: it asks which parts S3 holds, and names those given that it does
// not hold, holds with another ETag (replaced by a re-upload since they
// were listed), or holds too small to precede another part. versitygw
// checks the parts before the upload, so a completed or aborted upload
// answers InvalidPart where S3 answers NoSuchUpload: that is ErrNotFound.
func (b *Blob) partsRefused(ctx context.Context, key, uploadID string, given []upload.CompletedPart, err error) error {
	stored, lerr := b.ListParts(ctx, key, uploadID)
	switch {
	case errors.Is(lerr, upload.ErrNotFound):
		return fmt.Errorf("s3: complete multipart upload of %s: %w: upload no longer exists: %w", key, upload.ErrNotFound, err)
	case lerr != nil:
		// Which parts cannot be told; the refusal stands.
		return fmt.Errorf("s3: complete multipart upload of %s: %w", key,
			&upload.PartsRefusedError{Err: errors.Join(err, lerr)})
	}
	have := make(map[int]upload.StoredPart, len(stored))
	for _, p := range stored {
		have[p.PartNumber] = p
	}
	refused := []int{}
	for i, p := range given {
		sp, ok := have[p.PartNumber]
		last := i == len(given)-1
		if !ok || sp.ETag != unquote(p.ETag) || !last && sp.Size < minPartSize {
			refused = append(refused, p.PartNumber)
		}
	}
	return fmt.Errorf("s3: complete multipart upload of %s: %w", key,
		&upload.PartsRefusedError{PartNumbers: refused, Err: err})
}

// minPartSize is S3's least size of a part that is not the last.
const minPartSize = 5 << 20

// AbortMultipartUpload aborts the upload and drops its parts; ErrNotFound
// when S3 does not know the upload (already aborted or completed).
func (b *Blob) AbortMultipartUpload(ctx context.Context, key, uploadID string) error {
	ctx, cancel := b.bound(ctx, b.cfg.OperationTimeout)
	defer cancel()
	_, err := b.api.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: &b.cfg.Bucket, Key: &key, UploadId: &uploadID,
	})
	if err != nil {
		return wrap(err, "s3: abort multipart upload of %s", key)
	}
	return nil
}

// PutObject stores body as key in one PUT (for small objects the service
// makes itself, such as thumbnails), with contentType and, when Config.SSE
// is set, server-side encryption as CreateMultipartUpload. Putting the same
// key again replaces the object. The body is seekable, so the SDK's
// retryer may send it again.
func (b *Blob) PutObject(ctx context.Context, key, contentType string, body []byte) error {
	in := &s3.PutObjectInput{
		Bucket:               &b.cfg.Bucket,
		Key:                  &key,
		Body:                 bytes.NewReader(body),
		ContentLength:        aws.Int64(int64(len(body))),
		ServerSideEncryption: b.sse(),
	}
	if contentType != "" {
		in.ContentType = &contentType
	}
	ctx, cancel := b.bound(ctx, b.cfg.TransferTimeout)
	defer cancel()
	if _, err := b.api.PutObject(ctx, in); err != nil {
		return wrap(err, "s3: put %s", key)
	}
	return nil
}

// DeleteObject removes an object. S3 answers a missing key with success.
func (b *Blob) DeleteObject(ctx context.Context, key string) error {
	ctx, cancel := b.bound(ctx, b.cfg.OperationTimeout)
	defer cancel()
	if _, err := b.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.cfg.Bucket, Key: &key}); err != nil {
		return wrap(err, "s3: delete %s", key)
	}
	return nil
}

// ListParts returns the parts S3 holds for the upload, by part number,
// including those PUT directly to presigned URLs, following S3's pages of
// 1000. ErrNotFound when the upload is gone.
func (b *Blob) ListParts(ctx context.Context, key, uploadID string) ([]upload.StoredPart, error) {
	var parts []upload.StoredPart
	in := &s3.ListPartsInput{Bucket: &b.cfg.Bucket, Key: &key, UploadId: &uploadID}
	// One bound for every page: the caller waits for all of them.
	ctx, cancel := b.bound(ctx, b.cfg.OperationTimeout)
	defer cancel()
	for {
		out, err := b.api.ListParts(ctx, in)
		if err != nil {
			return nil, wrap(err, "s3: list parts of %s", key)
		}
		for _, p := range out.Parts {
			parts = append(parts, upload.StoredPart{
				PartNumber: int(aws.ToInt32(p.PartNumber)),
				ETag:       unquote(aws.ToString(p.ETag)),
				Size:       aws.ToInt64(p.Size),
			})
		}
		next := aws.ToString(out.NextPartNumberMarker)
		if !aws.ToBool(out.IsTruncated) || next == "" || next == aws.ToString(in.PartNumberMarker) {
			break
		}
		in.PartNumberMarker = &next
	}
	slices.SortFunc(parts, func(a, b upload.StoredPart) int { return a.PartNumber - b.PartNumber })
	return parts, nil
}

// PresignPutObject returns a PUT of the whole object: exactly size bytes of
// contentType (and, when contentMD5 is given, that digest), valid for ttl.
// It signs no encryption header: the object gets the bucket's default
// encryption, so a client needs to send nothing but Content-Type.
func (b *Blob) PresignPutObject(ctx context.Context, key, contentType, contentMD5 string, size int64, ttl time.Duration) (upload.PresignedRequest, error) {
	in := &s3.PutObjectInput{
		Bucket:        &b.cfg.Bucket,
		Key:           &key,
		ContentLength: aws.Int64(size),
	}
	if contentType != "" {
		in.ContentType = &contentType
	}
	if contentMD5 != "" {
		in.ContentMD5 = &contentMD5
	}
	if b.presign == nil {
		return upload.PresignedRequest{}, errors.New("s3blob: no Presigner configured")
	}
	req, err := b.presign.PresignPutObject(ctx, in, s3.WithPresignExpires(ttl))
	if err != nil {
		return upload.PresignedRequest{}, fmt.Errorf("s3: presign put %s: %w", key, err)
	}
	return presigned(req), nil
}

// PresignUploadPart returns a PUT of part partNumber, of exactly size bytes
// (and, when contentMD5 is given, that digest), valid for ttl.
func (b *Blob) PresignUploadPart(ctx context.Context, key, uploadID string, partNumber int, size int64, contentMD5 string, ttl time.Duration) (upload.PresignedRequest, error) {
	in := &s3.UploadPartInput{
		Bucket:        &b.cfg.Bucket,
		Key:           &key,
		UploadId:      &uploadID,
		PartNumber:    aws.Int32(int32(partNumber)),
		ContentLength: aws.Int64(size),
	}
	if contentMD5 != "" {
		in.ContentMD5 = &contentMD5
	}
	if b.presign == nil {
		return upload.PresignedRequest{}, errors.New("s3blob: no Presigner configured")
	}
	req, err := b.presign.PresignUploadPart(ctx, in, s3.WithPresignExpires(ttl))
	if err != nil {
		return upload.PresignedRequest{}, fmt.Errorf("s3: presign upload part %d of %s: %w", partNumber, key, err)
	}
	return presigned(req), nil
}

// presigned lists the signed headers a client must send. Host and
// Content-Length are left out: every HTTP client sets them from the URL
// and the body, and a browser refuses to set them by hand.
func presigned(req *v4.PresignedHTTPRequest) upload.PresignedRequest {
	h := make(map[string]string, len(req.SignedHeader))
	for k, vs := range req.SignedHeader {
		if strings.EqualFold(k, "Host") || strings.EqualFold(k, "Content-Length") || len(vs) == 0 {
			continue
		}
		name := http.CanonicalHeaderKey(k)
		if name == "Content-Md5" {
			name = "Content-MD5" // as S3's and the API's documents spell it
		}
		h[name] = strings.Join(vs, ",")
	}
	return upload.PresignedRequest{Method: req.Method, URL: req.URL, Header: h}
}

// Head returns the object's size; ErrNotFound when it does not exist.
func (b *Blob) Head(ctx context.Context, key string) (int64, error) {
	ctx, cancel := b.bound(ctx, b.cfg.OperationTimeout)
	defer cancel()
	out, err := b.api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.cfg.Bucket, Key: &key})
	if err != nil {
		return 0, wrap(err, "s3: head %s", key)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// Open streams the whole object; the caller closes it.
func (b *Blob) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	// The bound lasts until the body is closed: reading it is the transfer.
	ctx, cancel := b.bound(ctx, b.cfg.TransferTimeout)
	out, err := b.api.GetObject(ctx, &s3.GetObjectInput{Bucket: &b.cfg.Bucket, Key: &key})
	if err != nil {
		cancel()
		return nil, wrap(err, "s3: get %s", key)
	}
	return &boundBody{ReadCloser: out.Body, key: key, cancel: cancel}, nil
}

// ObjectURL is the object's plain S3 URL: path-style under the Endpoint,
// or https://{bucket}.s3.{region}.amazonaws.com/{key} on AWS.
func (b *Blob) ObjectURL(key string) string {
	if b.cfg.Endpoint != "" {
		return b.cfg.Endpoint + "/" + url.PathEscape(b.cfg.Bucket) + "/" + escapeKey(key)
	}
	return "https://" + b.cfg.Bucket + ".s3." + b.cfg.Region + ".amazonaws.com/" + escapeKey(key)
}

// PresignGet returns a GET URL valid for ttl, or the object's URL under
// Config.PublicBaseURL when that is set.
func (b *Blob) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if b.cfg.PublicBaseURL != "" {
		return b.cfg.PublicBaseURL + "/" + escapeKey(key), nil
	}
	if b.presign == nil {
		return "", errors.New("s3blob: no Presigner configured")
	}
	req, err := b.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &b.cfg.Bucket, Key: &key},
		s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("s3: presign get %s: %w", key, err)
	}
	return req.URL, nil
}

// escapeKey escapes each "/"-separated segment of key for a URL path.
func escapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// unquote strips the double quotes S3 puts around ETags.
func unquote(etag string) string {
	if len(etag) >= 2 && etag[0] == '"' && etag[len(etag)-1] == '"' {
		return etag[1 : len(etag)-1]
	}
	return etag
}

// quote puts the quotes CompleteMultipartUpload expects around an ETag.
func quote(etag string) string { return `"` + unquote(etag) + `"` }
