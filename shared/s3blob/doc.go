// Package s3blob is the [upload.Blob] adapter over Amazon S3 (or any
// S3-compatible store such as versitygw) using aws-sdk-go-v2.
//
// [New] builds it from a [Config]; [NewWithClient] takes any [S3API] (the
// handful of SDK methods the package calls) and a [Presigner], so a test can
// wrap the real client to inject faults.
//
// # Configuration
//
// The package only takes a [Config]; the service's config package reads the
// environment:
//
//	S3_BUCKET              Config.Bucket (required)
//	S3_ENDPOINT            Config.Endpoint: an S3-compatible endpoint such as
//	                       http://127.0.0.1:7070; path-style addressing is used.
//	                       Unset → AWS S3 with the default credential chain
//	                       (the Lambda role).
//	AWS_REGION             Config.Region (default us-east-1)
//	AWS_ACCESS_KEY_ID      Config.AccessKeyID and Config.SecretAccessKey: static
//	AWS_SECRET_ACCESS_KEY  credentials, used only with an Endpoint. Otherwise
//	                       the default chain reads these same variables, plus
//	                       the AWS_SESSION_TOKEN that Lambda's role needs.
//	S3_SSE                 Config.SSE: x-amz-server-side-encryption sent on
//	                       CreateMultipartUpload and PutObject. The config package
//	                       defaults it to "AES256"; an empty Config.SSE sends no
//	                       header.
//	S3_PUBLIC_BASE_URL     Config.PublicBaseURL: when set, PresignGet returns
//	                       PublicBaseURL + "/" + key (a CDN or public bucket)
//	                       instead of a presigned URL.
//
// Config.MaxAttempts (default 3) is the SDK standard retryer's attempt limit.
// Config.OperationTimeout (default 10 s) and Config.TransferTimeout (default
// 25 s, for calls that move an object body) bound each call, all attempts
// included; Config.DeadlineReserve (default 0.5 s) is kept free before the
// caller's own deadline (see "Deadlines").
//
// # IAM
//
// On the bucket's objects (arn:aws:s3:::BUCKET/*) the functions need:
//
//	s3:PutObject                  CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//	                              PutObject, presigned PutObject and UploadPart URLs
//	s3:GetObject                  GetObject (Open, ReadHead), HeadObject (Head), presigned GETs
//	s3:AbortMultipartUpload       AbortMultipartUpload
//	s3:DeleteObject               DeleteObject (a replaced file's object)
//	s3:ListMultipartUploadParts   ListParts (parts PUT directly to presigned URLs)
//
// With SSE "aws:kms" the role also needs kms:GenerateDataKey and kms:Decrypt on
// the key; "AES256" (SSE-S3) needs nothing more. HeadObject of a missing key
// answers 403 instead of 404 unless the role also has s3:ListBucket on the
// bucket (arn:aws:s3:::BUCKET): grant it, or a missing object is reported as
// an error other than [upload.ErrNotFound]. s3:ListBucketMultipartUploads is
// only needed by a janitor that lists stale uploads; this package does not.
// Presigned URLs carry the signer's permissions, so the role that presigns
// needs s3:GetObject / s3:PutObject itself.
//
// # Considerations
//
// Streaming. UploadPart sends the part's body as it reads it, without
// buffering: the body is typically an http.Request body, which cannot seek.
// aws-sdk-go-v2 reads a body twice when it signs the payload (SHA-256) or
// computes a request checksum over plain HTTP, and refuses an unseekable body
// in both cases. So UploadPart
//
//   - sends UNSIGNED-PAYLOAD ([v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware]);
//     the headers are still signed, and TLS (AWS) protects the bytes in transit;
//   - builds the client with RequestChecksumCalculation = WhenRequired, so the
//     SDK does not compute a CRC32 for UploadPart (with the default,
//     WhenSupported, it fails over plain HTTP with "unseekable stream is not
//     supported without TLS and trailing checksum");
//   - sets ContentLength to size, so no chunked encoding is needed.
//
// Integrity. When a Content-MD5 is given it is sent to S3, which checks it
// (BadDigest → [upload.ErrBadDigest]). The adapter does not hash the bytes
// itself: the upload service hashes a part that comes with a Content-MD5 as
// it streams and checks the header against that too, for S3-compatible
// stores that ignore it.
//
// Retries. The SDK's standard retryer retries throttling, 5xx and network
// errors with backoff, up to MaxAttempts. The part body cannot be replayed,
// so UploadPart is retried only while none of its bytes have been read:
// connection refused, or a store that refuses the request on its headers
// (503 SlowDown, NoSuchUpload) before answering "100 Continue". (The SDK
// sends "Expect: 100-continue" for bodies of 2 MiB or more but builds its
// requests with Proto 0.0, so net/http would not wait for the 100 Continue;
// UploadPart marks its request HTTP/1.1 so it does. A store that never
// answers 100 Continue costs one second per part: net/http then sends the
// body anyway.) Once bytes were sent, a failed attempt ends the call.
// Failures that mean the store cannot be reached — network errors, 5xx,
// throttling, retries exhausted, a deadline passed — wrap
// [upload.ErrUnavailable] (the API's 503 S3_UNAVAILABLE, retryable by the
// client). A body that fails to read (the client went away, too few bytes)
// is reported as such, not as unavailability.
//
// Deadlines. Every call has a deadline: its timeout, or the caller's
// deadline less DeadlineReserve when that comes first (on Lambda the
// context carries the invocation's deadline). A store that accepts the
// connection and never answers therefore ends the call at its deadline, as
// [upload.ErrUnavailable], in time for the caller to answer. Open's
// deadline lasts until its body is closed.
//
// Refused parts. CompleteMultipartUpload refused with InvalidPart,
// InvalidPartOrder or EntityTooSmall (a part replaced since it was listed)
// is an [upload.PartsRefusedError] (wrapping [upload.ErrInvalidPart]) that
// names the refused parts, found by asking ListParts: the API's 409
// INVALID_PART, never a 500.
//
// Not found. NoSuchKey, NotFound (HeadObject's bare 404) and NoSuchUpload
// wrap [upload.ErrNotFound]. versitygw answers CompleteMultipartUpload of an
// aborted upload with InvalidPart instead of NoSuchUpload; the adapter then
// asks ListParts and reports ErrNotFound when the upload is gone. Completing
// an upload that was already completed succeeds on versitygw (S3 may answer
// NoSuchUpload: ErrNotFound).
//
// ETags. Blob returns ETags without the surrounding quotes S3 puts on them
// (`"9b2cf535f27731c974343645a3985328"` → `9b2cf535f27731c974343645a3985328`)
// and quotes them again for CompleteMultipartUpload; quoted or bare ETags are
// accepted there.
//
// Presigned URLs. A URL presigned with temporary credentials (the Lambda
// role's) stops working when those credentials expire, whatever its ttl;
// use PublicBaseURL (CloudFront) for links that must outlive them. Upload
// URLs (PresignPutObject, PresignUploadPart) sign Content-Length, so S3
// refuses a body of another size, and Content-Type / Content-MD5 when given;
// the returned Header lists what the client must send (not Host or
// Content-Length, which every HTTP client sets itself). PresignPutObject
// signs no encryption header: the bucket's default encryption applies, so a
// browser needs to send nothing but Content-Type.
//
// Multipart uploads that are never completed or aborted keep their parts
// (and cost) forever; configure a bucket lifecycle rule
// AbortIncompleteMultipartUpload (e.g. after 1 day).
package s3blob
