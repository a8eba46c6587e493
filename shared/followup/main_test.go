package followup_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mocbuilders/moc-upload/local/logbuf"
	"github.com/mocbuilders/moc-upload/local/stacktest"
	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/postgres"
	"github.com/mocbuilders/moc-upload/shared/s3blob"
	"github.com/mocbuilders/moc-upload/shared/thumbnail"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// The tests run against a real PostgreSQL and a real S3 server (versitygw),
// started once for the test binary by stacktest; each test gets a fresh
// database and bucket. Only Lambda is played: fakeInvoker records what
// would have been invoked.
func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

const stage = "test"

// invocation is one InvokeAsync call.
type invocation struct {
	Function string
	Job      followup.Job
}

// fakeInvoker records the invocations it accepts; while fail is set it
// refuses them with that error instead (fault injection).
type fakeInvoker struct {
	mu    sync.Mutex
	calls []invocation
	fail  error
	tries atomic.Int32
}

func (f *fakeInvoker) InvokeAsync(_ context.Context, function string, payload []byte) error {
	f.tries.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	var job followup.Job
	if err := json.Unmarshal(payload, &job); err != nil {
		return fmt.Errorf("fake invoker: payload %s: %w", payload, err)
	}
	f.calls = append(f.calls, invocation{function, job})
	return nil
}

func (f *fakeInvoker) failWith(err error) {
	f.mu.Lock()
	f.fail = err
	f.mu.Unlock()
}

// take returns the invocations so far and forgets them.
func (f *fakeInvoker) take() []invocation {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// countingBlob counts the calls of the thumbnail's blob port.
type countingBlob struct {
	*s3blob.Blob
	heads, opens, puts atomic.Int32
}

func (c *countingBlob) Head(ctx context.Context, key string) (int64, error) {
	c.heads.Add(1)
	return c.Blob.Head(ctx, key)
}

func (c *countingBlob) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	c.opens.Add(1)
	return c.Blob.Open(ctx, key)
}

func (c *countingBlob) PutObject(ctx context.Context, key, contentType string, body []byte) error {
	c.puts.Add(1)
	return c.Blob.PutObject(ctx, key, contentType, body)
}

// faultyBlob is a real blob store with one fault injected: its n-th call
// (from 1: Head, Open, each Read of an opened body, PutObject) fails with
// err, after calling before, when set. failOn 0 never fails: the calls
// are only counted.
type faultyBlob struct {
	followup.ThumbnailBlob
	failOn int32
	err    error
	before func()
	calls  atomic.Int32
}

func (f *faultyBlob) fault() error {
	if f.calls.Add(1) != f.failOn {
		return nil
	}
	if f.before != nil {
		f.before()
	}
	return f.err
}

func (f *faultyBlob) Head(ctx context.Context, key string) (int64, error) {
	if err := f.fault(); err != nil {
		return 0, err
	}
	return f.ThumbnailBlob.Head(ctx, key)
}

func (f *faultyBlob) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := f.fault(); err != nil {
		return nil, err
	}
	rc, err := f.ThumbnailBlob.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	return faultyBody{rc, f}, nil
}

func (f *faultyBlob) PutObject(ctx context.Context, key, contentType string, body []byte) error {
	if err := f.fault(); err != nil {
		return err
	}
	return f.ThumbnailBlob.PutObject(ctx, key, contentType, body)
}

// faultyBody is an object's body whose reads count as calls of its blob.
type faultyBody struct {
	io.ReadCloser
	f *faultyBlob
}

func (b faultyBody) Read(p []byte) (int, error) {
	if err := b.f.fault(); err != nil {
		return 0, err
	}
	return b.ReadCloser.Read(p)
}

// env is a service with its outbox, over a fresh database and bucket.
type env struct {
	store  *postgres.Store
	blob   *countingBlob
	s3     *s3.Client
	bucket string
	inv    *fakeInvoker
	disp   *followup.Dispatcher
	svc    *upload.Service
	thumbs *followup.Thumbnails
	logs   *logbuf.Buffer
	log    *slog.Logger
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dbURL := stacktest.Postgres(t)
	if err := postgres.Migrate(t.Context(), dbURL); err != nil {
		t.Fatal(err)
	}
	store, err := postgres.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	s3env := stacktest.S3(t)
	cfg := s3blob.Config{Bucket: s3env.Bucket, Endpoint: s3env.Endpoint, Region: s3env.Region,
		AccessKeyID: s3env.AccessKey, SecretAccessKey: s3env.SecretKey, SSE: s3blob.DefaultSSE}
	client, err := s3blob.NewClient(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	blob := &countingBlob{Blob: s3blob.NewWithClient(client, s3.NewPresignClient(client), cfg)}
	logs := &logbuf.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	inv := &fakeInvoker{}
	disp := &followup.Dispatcher{Invoker: inv, Store: store, Logger: log}
	svc := &upload.Service{
		Store: store, Blob: blob, Limits: upload.DefaultLimits(), Stage: stage,
		DownloadURLTTL: time.Hour, UploadURLTTL: 15 * time.Minute, FinalizeConcurrency: 4,
		ThumbnailsEnabled: true, WebhookEnabled: true, FollowUps: disp,
		Now: time.Now, NewID: uuid.NewString,
	}
	return &env{
		store: store, blob: blob, s3: client, bucket: cfg.Bucket, inv: inv, disp: disp, svc: svc,
		thumbs: &followup.Thumbnails{Store: store, Blob: blob, Stage: stage, Logger: log, Generate: thumbnail.Generate},
		logs:   logs, log: log,
	}
}

// pngImage encodes a w x h PNG: a gradient, so the thumbnail has content.
func pngImage(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{uint8(x * 255 / w), uint8(y * 255 / h), 128, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pdf is a small PDF for the MOC's instruction file.
var pdf = append([]byte("%PDF-1.7\n"), bytes.Repeat([]byte("x"), 1000)...)

// finalize uploads a MOC's files through the service — the PDF, and
// image (a PNG) unless it is nil — and finalizes it.
func (e *env) finalize(t *testing.T, userID, title string, image []byte) *upload.Moc {
	t.Helper()
	files := []testFile{pdfFile()}
	if image != nil {
		files = append(files, pngFile("front.png", image))
	}
	return e.finalizeFiles(t, userID, title, files)
}

// testFile is a file of a session; data nil: registered, never uploaded.
type testFile struct {
	spec upload.FileSpec
	data []byte
}

func pngFile(name string, data []byte) testFile {
	return testFile{upload.FileSpec{Category: upload.CategoryImage, Name: name, Size: int64(len(data)), Type: "image/png", Ext: "png"}, data}
}

func pdfFile() testFile {
	return testFile{upload.FileSpec{Category: upload.CategoryInstruction, Name: "instructions.pdf", Size: int64(len(pdf)), Type: "application/pdf", Ext: "pdf"}, pdf}
}

// openSession opens a session of files, registers them in their order and
// uploads the bytes of those that have some in the reverse order (so that
// no test can mistake the upload order for the registration order); it
// returns the session and the files' ids by name.
func (e *env) openSession(t *testing.T, userID string, files ...testFile) (string, map[string]string) {
	t.Helper()
	ctx := t.Context()
	var specs []upload.FileSpec
	for _, f := range files {
		specs = append(specs, f.spec)
	}
	sess, err := e.svc.CreateSession(ctx, userID, specs)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(files))
	for i, f := range files {
		reg, err := e.svc.RegisterFile(ctx, userID, sess.ID, f.spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = reg.File.ID
	}
	byName := map[string]string{}
	for i := len(files) - 1; i >= 0; i-- {
		data := files[i].data
		byName[files[i].spec.Name] = ids[i]
		for n, off := 1, int64(0); off < int64(len(data)); n, off = n+1, off+sess.PartSizeBytes {
			part := data[off:min(off+sess.PartSizeBytes, int64(len(data)))]
			sum := md5.Sum(part)
			if _, err := e.svc.UploadPart(ctx, userID, sess.ID, ids[i], n, bytes.NewReader(part),
				int64(len(part)), base64.StdEncoding.EncodeToString(sum[:])); err != nil {
				t.Fatalf("upload part %d of %s: %v", n, files[i].spec.Name, err)
			}
		}
	}
	return sess.ID, byName
}

// finalizeFiles opens a session of files (openSession) and finalizes the
// MOC.
func (e *env) finalizeFiles(t *testing.T, userID, title string, files []testFile) *upload.Moc {
	t.Helper()
	sessionID, _ := e.openSession(t, userID, files...)
	m, resumed, err := e.svc.Finalize(t.Context(), userID, upload.FinalizeRequest{SessionID: sessionID, Title: title})
	if err != nil || resumed {
		t.Fatalf("Finalize = %v, resumed %v", err, resumed)
	}
	return m
}

// rows returns the MOC's outbox rows by kind.
func (e *env) rows(t *testing.T, mocID string) map[string]followup.Row {
	t.Helper()
	out := map[string]followup.Row{}
	for _, id := range e.queryStrings(t, `SELECT id FROM outbox WHERE moc_id = $1`, mocID) {
		r := e.row(t, id)
		out[r.Kind] = r
	}
	return out
}

// queryStrings returns the one text column of a query's rows.
func (e *env) queryStrings(t *testing.T, sql string, args ...any) []string {
	t.Helper()
	rs, err := e.store.Pool().Query(t.Context(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rs, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) row(t *testing.T, id string) followup.Row {
	t.Helper()
	r, err := e.store.OutboxRow(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return *r
}

func (e *env) moc(t *testing.T, id string) *upload.Moc {
	t.Helper()
	m, err := e.store.MocByID(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// job is the job of the MOC's row of kind.
func (e *env) job(t *testing.T, mocID, kind string) followup.Job {
	t.Helper()
	r, ok := e.rows(t, mocID)[kind]
	if !ok {
		t.Fatalf("MOC %s has no %s row", mocID, kind)
	}
	return r.Job()
}

// setDispatched moves a row's dispatched_at ago into the past (nil: NULL).
func (e *env) setDispatched(t *testing.T, id string, ago *time.Duration) {
	t.Helper()
	var err error
	if ago == nil {
		_, err = e.store.Pool().Exec(t.Context(), `UPDATE outbox SET dispatched_at = NULL WHERE id = $1`, id)
	} else {
		_, err = e.store.Pool().Exec(t.Context(), `UPDATE outbox SET dispatched_at = now() - $2::interval WHERE id = $1`, id, *ago)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) getObject(t *testing.T, key string) ([]byte, *s3.GetObjectOutput) {
	t.Helper()
	out, err := e.s3.GetObject(t.Context(), &s3.GetObjectInput{Bucket: &e.bucket, Key: &key})
	if err != nil {
		t.Fatalf("GetObject %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b, out
}

func (e *env) objectExists(t *testing.T, key string) bool {
	t.Helper()
	_, err := e.blob.Blob.Head(t.Context(), key)
	if errors.Is(err, upload.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q: %s", what, sub, s)
		}
	}
}
