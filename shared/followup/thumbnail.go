package followup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// DefaultMaxImageBytes is the largest image a thumbnail is made from
// (10 MiB); a larger one is not downloaded at all.
const DefaultMaxImageBytes = 10 << 20

// ThumbnailContentType is the type of every generated thumbnail.
const ThumbnailContentType = "image/jpeg"

// ThumbnailBlob is what the Thumbnail function needs of S3 (package
// s3blob implements it).
type ThumbnailBlob interface {
	// Head returns the object's size; an error wrapping upload.ErrNotFound
	// when there is none.
	Head(ctx context.Context, key string) (int64, error)
	// Open streams the whole object.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// PutObject stores body as key, replacing what was there.
	PutObject(ctx context.Context, key, contentType string, body []byte) error
	// ObjectURL is the object's plain S3 URL.
	ObjectURL(key string) string
}

// Thumbnails does the thumbnail jobs: it makes a 300x300 JPEG of the MOC's
// first image (upload.Moc.FirstImage) and records the result on the MOC.
//
// Every answer about the image or the storage is final, so that a MOC
// never waits on a thumbnail that cannot come: the MOC's thumbnail_status
// becomes failed, one warning names the MOC and the reason, last_error
// keeps it, nothing else of the MOC changes, and Run returns nil.
//
//   - An image that cannot give a thumbnail — over MaxImageBytes (refused
//     on its HEAD, never downloaded), gone from storage, of a type or
//     content the decoder refuses — ends the row done: the work was done,
//     its answer is "no thumbnail".
//   - An S3 error reading the image or writing the thumbnail, after the
//     SDK's own retries (throttling, 5xx, a stream cut short), ends the
//     row failed: given up, not sent again by the Sweeper.
//
// Only what cannot be recorded returns an error: the database failing, or
// the function's own deadline cutting S3 short (ctx ended). The row then
// stays pending with the reason, and Lambda's asynchronous retry
// (MaximumRetryAttempts 1 in template.yaml: 2 runs) and then the Sweeper
// run the job again; when the Sweeper gives up, the MOC's thumbnail is
// failed too. Running a job twice writes the same object (the key depends
// on the MOC only) and the second run finds the row finished.
type Thumbnails struct {
	Store JobStore
	Blob  ThumbnailBlob
	// Stage is the first segment of object keys (STAGE).
	Stage string
	// MaxImageBytes is the largest image read (default DefaultMaxImageBytes).
	MaxImageBytes int64
	// Generate makes the thumbnail (required: thumbnail.Generate). It is
	// given, not imported, so that only the binaries that make thumbnails
	// link the image decoders (docs/benchmarks.md "Cold start and binary
	// size").
	Generate func(r io.Reader, mimeType string) ([]byte, error)
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Run does one thumbnail job; see Thumbnails. Its span is
// generate.thumbnail (consumer), a child of the dispatch's.
func (t *Thumbnails) Run(ctx context.Context, job Job) (err error) {
	ctx, span := startJob(ctx, KindThumbnail, job)
	defer func() { endJob(span, err) }()
	log := logger(t.Logger).With(jobAttrs(job)...)
	row, m, err := start(ctx, t.Store, job, KindThumbnail, log)
	if err != nil || row == nil {
		return err
	}
	img := m.FirstImage()
	if img == nil {
		// Finalize asks for a thumbnail only for a MOC with an image.
		log.WarnContext(ctx, "the MOC has no image: no thumbnail")
		return finish(ctx, t.Store, row.ID, Outcome{Status: StatusDone, LastError: "the MOC has no image",
			Thumbnail: &ThumbnailState{Status: upload.ThumbnailNone}})
	}
	log = log.With(slog.String("imageKey", img.S3Key))
	key := upload.ThumbnailKey(t.Stage, m.UserID, m.ID)
	jpeg, no, err := t.make(ctx, img)
	if err == nil && no == nil {
		if perr := t.Blob.PutObject(ctx, key, ThumbnailContentType, jpeg); perr != nil {
			no, err = storageFailure(ctx, "the thumbnail could not be stored", perr)
		}
	}
	switch {
	case err != nil:
		msg := err.Error()
		log.WarnContext(ctx, "thumbnail not made, to be retried", slog.String("err", msg))
		note(ctx, t.Store, row.ID, msg, log)
		return err
	case no != nil:
		log.WarnContext(ctx, "thumbnail failed", slog.String("reason", no.reason))
		return finish(ctx, t.Store, row.ID, Outcome{Status: no.status, LastError: no.reason,
			Thumbnail: &ThumbnailState{Status: upload.ThumbnailFailed}})
	}
	url := t.Blob.ObjectURL(key)
	if err := finish(ctx, t.Store, row.ID, Outcome{Status: StatusDone,
		Thumbnail: &ThumbnailState{Status: upload.ThumbnailReady, URL: &url}}); err != nil {
		return err
	}
	log.InfoContext(ctx, "thumbnail ready", slog.String("key", key), slog.Int("bytes", len(jpeg)))
	return nil
}

// noThumbnail is a final answer without a thumbnail: why, and the status
// it ends the row with (StatusDone for the image's fault, StatusFailed for
// S3's).
type noThumbnail struct {
	reason string
	status string
}

// storageFailure is what an S3 error makes of a job: a final answer
// (thumbnail failed, row failed) once the SDK has retried it, or an error
// to be retried when the function's own context ended it — that is the
// deadline's doing, not S3's.
func storageFailure(ctx context.Context, what string, err error) (*noThumbnail, error) {
	if ctx.Err() != nil {
		return nil, fmt.Errorf("followup: %s: %w", what, err)
	}
	return &noThumbnail{reason: "S3 error: " + what + ": " + err.Error(), status: StatusFailed}, nil
}

// make reads the image and makes its thumbnail. It returns the JPEG; or
// why there is none (a final answer); or an error worth a retry.
func (t *Thumbnails) make(ctx context.Context, img *upload.MocFile) ([]byte, *noThumbnail, error) {
	if t.Generate == nil {
		return nil, nil, errors.New("followup: Thumbnails.Generate is not set")
	}
	limit := t.MaxImageBytes
	if limit <= 0 {
		limit = DefaultMaxImageBytes
	}
	refused := func(reason string) *noThumbnail {
		return &noThumbnail{reason: reason, status: StatusDone}
	}
	tooLarge := func(size int64) *noThumbnail {
		return refused(fmt.Sprintf("the image is %d bytes, over the %d-byte limit for thumbnails", size, limit))
	}
	const gone = "the image is no longer in storage"
	const unread = "the image could not be read"
	size, err := t.Blob.Head(ctx, img.S3Key)
	switch {
	case errors.Is(err, upload.ErrNotFound):
		return nil, refused(gone), nil
	case err != nil:
		no, err := storageFailure(ctx, unread, err)
		return nil, no, err
	case size > limit:
		return nil, tooLarge(size), nil
	}
	body, err := t.Blob.Open(ctx, img.S3Key)
	if errors.Is(err, upload.ErrNotFound) {
		return nil, refused(gone), nil
	}
	if err != nil {
		no, err := storageFailure(ctx, unread, err)
		return nil, no, err
	}
	defer body.Close()
	// The object may have grown since the HEAD: never read past the limit.
	r := &trackingReader{r: io.LimitReader(body, limit+1)}
	jpeg, genErr := t.Generate(r, img.MimeType)
	switch {
	case r.err != nil:
		// The read failed, not the image: S3 cut the stream.
		no, err := storageFailure(ctx, unread, r.err)
		return nil, no, err
	case r.n > limit:
		return nil, tooLarge(r.n), nil
	case genErr != nil:
		// thumbnail.ErrUnsupported, thumbnail.ErrDecode, or another
		// refusal of these bytes: trying again would give the same.
		return nil, refused("the image cannot be made into a thumbnail: " + genErr.Error()), nil
	}
	return jpeg, nil, nil
}

// trackingReader counts what it reads and keeps the first error other
// than io.EOF.
type trackingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (t *trackingReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.n += int64(n)
	if err != nil && err != io.EOF && t.err == nil {
		t.err = err
	}
	return n, err
}
