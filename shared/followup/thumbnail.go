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
// first image and records the result on the MOC.
//
// An image that cannot give a thumbnail — over MaxImageBytes, gone from
// storage, of a type or content the decoder refuses — is a final answer:
// the MOC's thumbnail_status becomes failed, a warning is logged, the row
// is done (last_error says why), and Run returns nil. Storage or database
// trouble (S3 down, a read cut short) is not the image's fault: Run notes
// it on the row, which stays pending, and returns the error, so that
// Lambda's asynchronous retries (MaximumRetryAttempts, default 2) and then
// the Sweeper run the job again; when the Sweeper gives up, the MOC's
// thumbnail is failed too. Running a job twice writes the same object
// (the key depends on the MOC only) and the second run finds the row done.
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
	jpeg, reason, err := t.make(ctx, img)
	switch {
	case err != nil:
		msg := err.Error()
		log.WarnContext(ctx, "thumbnail not made, to be retried", slog.String("err", msg))
		note(ctx, t.Store, row.ID, msg, log)
		return err
	case reason != "":
		log.WarnContext(ctx, "thumbnail failed", slog.String("reason", reason))
		return finish(ctx, t.Store, row.ID, Outcome{Status: StatusDone, LastError: reason,
			Thumbnail: &ThumbnailState{Status: upload.ThumbnailFailed}})
	}
	key := upload.ThumbnailKey(t.Stage, m.UserID, m.ID)
	if err := t.Blob.PutObject(ctx, key, ThumbnailContentType, jpeg); err != nil {
		err = fmt.Errorf("followup: store thumbnail: %w", err)
		log.WarnContext(ctx, "thumbnail not stored, to be retried", slog.String("err", err.Error()))
		note(ctx, t.Store, row.ID, err.Error(), log)
		return err
	}
	url := t.Blob.ObjectURL(key)
	if err := finish(ctx, t.Store, row.ID, Outcome{Status: StatusDone,
		Thumbnail: &ThumbnailState{Status: upload.ThumbnailReady, URL: &url}}); err != nil {
		return err
	}
	log.InfoContext(ctx, "thumbnail ready", slog.String("key", key), slog.Int("bytes", len(jpeg)))
	return nil
}

// make reads the image and makes its thumbnail. It returns the JPEG; or
// why the image cannot give one (a final answer); or an error worth a
// retry.
func (t *Thumbnails) make(ctx context.Context, img *upload.MocFile) (jpeg []byte, reason string, err error) {
	if t.Generate == nil {
		return nil, "", errors.New("followup: Thumbnails.Generate is not set")
	}
	limit := t.MaxImageBytes
	if limit <= 0 {
		limit = DefaultMaxImageBytes
	}
	tooLarge := func(size int64) string {
		return fmt.Sprintf("the image is %d bytes, over the %d-byte limit for thumbnails", size, limit)
	}
	size, err := t.Blob.Head(ctx, img.S3Key)
	switch {
	case errors.Is(err, upload.ErrNotFound):
		return nil, "the image is no longer in storage", nil
	case err != nil:
		return nil, "", fmt.Errorf("followup: head image: %w", err)
	case size > limit:
		return nil, tooLarge(size), nil
	}
	body, err := t.Blob.Open(ctx, img.S3Key)
	if errors.Is(err, upload.ErrNotFound) {
		return nil, "the image is no longer in storage", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("followup: read image: %w", err)
	}
	defer body.Close()
	// The object may have grown since the HEAD: never read past the limit.
	r := &trackingReader{r: io.LimitReader(body, limit+1)}
	jpeg, genErr := t.Generate(r, img.MimeType)
	switch {
	case r.err != nil:
		// The read failed, not the image: S3 cut the stream.
		return nil, "", fmt.Errorf("followup: read image: %w", r.err)
	case r.n > limit:
		return nil, tooLarge(r.n), nil
	case genErr != nil:
		// thumbnail.ErrUnsupported, thumbnail.ErrDecode, or another
		// refusal of these bytes: trying again would give the same.
		return nil, "the image cannot be made into a thumbnail: " + genErr.Error(), nil
	}
	return jpeg, "", nil
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
