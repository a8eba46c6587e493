package app

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/local/stacktest"
	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/invoke"
	"github.com/mocbuilders/moc-upload/shared/postgres"
	"github.com/mocbuilders/moc-upload/shared/thumbnail"
	"github.com/mocbuilders/moc-upload/shared/upload"
	"github.com/mocbuilders/moc-upload/shared/webhook"
)

func TestConfigFollowUps(t *testing.T) {
	base := map[string]string{"DATABASE_URL": "postgres://x", "S3_BUCKET": "b"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	c, err := ConfigFrom(envOf(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.ThumbnailsEnabled || c.WebhookURL != "" || c.WebhookSecret != "" || c.WebhookBaseDelay != time.Second ||
		c.ThumbnailFunction != "Thumbnail" || c.WebhookFunction != "Webhook" ||
		c.RedispatchAfter != 300*time.Second || c.LambdaEndpoint != "" {
		t.Errorf("defaults: %+v", c)
	}
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	c, err = ConfigFrom(envOf(with(
		"ENABLE_THUMBNAIL_GENERATION", "true", "MOC_FINALIZE_WEBHOOK_URL", "https://hooks.example.com/moc",
		"MOC_FINALIZE_WEBHOOK_SECRET", secret, "WEBHOOK_RETRY_BASE_DELAY_MS", "5",
		"THUMBNAIL_FUNCTION_NAME", "arn:aws:lambda:eu-west-1:123456789012:function:moc-Thumbnail",
		"WEBHOOK_FUNCTION_NAME", "moc-Webhook", "OUTBOX_REDISPATCH_AFTER_SECONDS", "60",
		"LAMBDA_ENDPOINT", "http://127.0.0.1:3002/")))
	if err != nil {
		t.Fatal(err)
	}
	if !c.ThumbnailsEnabled || c.WebhookURL != "https://hooks.example.com/moc" || c.WebhookSecret != secret ||
		c.WebhookBaseDelay != 5*time.Millisecond || c.ThumbnailFunction != "arn:aws:lambda:eu-west-1:123456789012:function:moc-Thumbnail" ||
		c.WebhookFunction != "moc-Webhook" || c.RedispatchAfter != time.Minute || c.LambdaEndpoint != "http://127.0.0.1:3002" {
		t.Errorf("overrides: %+v", c)
	}

	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{with("ENABLE_THUMBNAIL_GENERATION", "yes please"), "ENABLE_THUMBNAIL_GENERATION"},
		{with("MOC_FINALIZE_WEBHOOK_URL", "ftp://x"), "MOC_FINALIZE_WEBHOOK_URL"},
		{with("MOC_FINALIZE_WEBHOOK_URL", "https://x", "MOC_FINALIZE_WEBHOOK_SECRET", "hunter2-not-a-secret"), "MOC_FINALIZE_WEBHOOK_SECRET"},
		{with("MOC_FINALIZE_WEBHOOK_SECRET", "whsec_short"), "MOC_FINALIZE_WEBHOOK_SECRET"},
		{with("WEBHOOK_RETRY_BASE_DELAY_MS", "-1"), "WEBHOOK_RETRY_BASE_DELAY_MS"},
		{with("OUTBOX_REDISPATCH_AFTER_SECONDS", "0"), "OUTBOX_REDISPATCH_AFTER_SECONDS"},
		{with("LAMBDA_ENDPOINT", "127.0.0.1:3002"), "LAMBDA_ENDPOINT"},
	} {
		_, err := ConfigFrom(envOf(tc.env))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error naming %s", tc.env, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "whsec_short")) {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
}

// fakeLambda plays Lambda's Invoke API for the async functions: each Event
// invocation is answered 202 and run by the App's AsyncHandler, as the
// local invoke API does.
type fakeLambda struct {
	*httptest.Server
	wg    sync.WaitGroup
	mu    sync.Mutex
	calls []string
	errs  []error
}

func newFakeLambda(t *testing.T, handler func(function string) (func(context.Context, []byte) ([]byte, error), error)) *fakeLambda {
	f := &fakeLambda{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// POST /2015-03-31/functions/{name}/invocations
		name := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/2015-03-31/functions/"), "/invocations")
		payload, _ := io.ReadAll(r.Body)
		if r.Header.Get("X-Amz-Invocation-Type") != "Event" {
			http.Error(w, "want an Event invocation", http.StatusBadRequest)
			return
		}
		h, err := handler(name)
		if err != nil {
			w.Header().Set("X-Amzn-ErrorType", "ResourceNotFoundException")
			w.WriteHeader(http.StatusNotFound)
			return
		}
		f.mu.Lock()
		f.calls = append(f.calls, name)
		f.mu.Unlock()
		f.wg.Go(func() {
			_, err := h(context.Background(), payload)
			f.mu.Lock()
			f.errs = append(f.errs, err)
			f.mu.Unlock()
		})
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(f.Close)
	return f
}

// The App wires finalize's outbox to Lambda through the real invoke
// adapter, and its AsyncHandlers do the work: a thumbnail in S3 and a
// signed webhook.
func TestAppRunsFollowUps(t *testing.T) {
	dbURL := stacktest.Postgres(t)
	if err := postgres.Migrate(t.Context(), dbURL); err != nil {
		t.Fatal(err)
	}
	s3env := stacktest.S3(t)
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	var (
		mu    sync.Mutex
		hooks []error
	)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		hooks = append(hooks, webhook.Verify(secret, r.Header, body))
		mu.Unlock()
	}))
	defer rcv.Close()

	var a *App
	lam := newFakeLambda(t, func(fn string) (func(context.Context, []byte) ([]byte, error), error) { return a.AsyncHandler(fn) })
	cfg, err := ConfigFrom(envOf(map[string]string{
		"DATABASE_URL": dbURL, "S3_BUCKET": s3env.Bucket, "S3_ENDPOINT": s3env.Endpoint,
		"AWS_ACCESS_KEY_ID": s3env.AccessKey, "AWS_SECRET_ACCESS_KEY": s3env.SecretKey, "AWS_REGION": s3env.Region,
		"ENABLE_THUMBNAIL_GENERATION": "true", "MOC_FINALIZE_WEBHOOK_URL": rcv.URL,
		"MOC_FINALIZE_WEBHOOK_SECRET": secret, "WEBHOOK_RETRY_BASE_DELAY_MS": "1",
		"LAMBDA_ENDPOINT": lam.URL, "STAGE": "apptest",
	}))
	if err != nil {
		t.Fatal(err)
	}
	// Every part, as the local stack gives them (shared/app/invoker's New,
	// which this package's tests cannot import).
	a, err = NewWith(t.Context(), cfg, Parts{
		Invoker: func(ctx context.Context, cfg Config) (followup.Invoker, error) {
			return invoke.New(ctx, invoke.Config{Endpoint: cfg.LambdaEndpoint, Region: cfg.S3Region,
				AccessKeyID: cfg.S3AccessKey, SecretAccessKey: cfg.S3SecretKey})
		},
		Thumbnail: thumbnail.Generate,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	ctx := t.Context()
	pdf := append([]byte("%PDF-1.7\n"), make([]byte, 100)...)
	img := image.NewRGBA(image.Rect(0, 0, 40, 30))
	for i := range img.Pix {
		img.Pix[i] = byte(i)
	}
	img.Set(0, 0, color.White)
	var pngBuf bytes.Buffer
	if err := png.Encode(&pngBuf, img); err != nil {
		t.Fatal(err)
	}
	files := []struct {
		spec upload.FileSpec
		data []byte
	}{
		{upload.FileSpec{Category: upload.CategoryInstruction, Name: "a.pdf", Size: int64(len(pdf)), Type: "application/pdf", Ext: "pdf"}, pdf},
		{upload.FileSpec{Category: upload.CategoryImage, Name: "a.png", Size: int64(pngBuf.Len()), Type: "image/png", Ext: "png"}, pngBuf.Bytes()},
	}
	sess, err := a.Service.CreateSession(ctx, "u1", []upload.FileSpec{files[0].spec, files[1].spec})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		reg, err := a.Service.RegisterFile(ctx, "u1", sess.ID, f.spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Service.UploadPart(ctx, "u1", sess.ID, reg.File.ID, 1, bytes.NewReader(f.data), int64(len(f.data)), ""); err != nil {
			t.Fatal(err)
		}
	}
	m, _, err := a.Service.Finalize(ctx, "u1", upload.FinalizeRequest{SessionID: sess.ID, Title: "App"})
	if err != nil {
		t.Fatal(err)
	}
	lam.wg.Wait()
	lam.mu.Lock()
	calls, errs := strings.Join(lam.calls, ","), lam.errs
	lam.mu.Unlock()
	if calls != "Thumbnail,Webhook" && calls != "Webhook,Thumbnail" {
		t.Errorf("invoked %q, want Thumbnail and Webhook", calls)
	}
	for _, err := range errs {
		if err != nil {
			t.Errorf("async handler: %v", err)
		}
	}
	mu.Lock()
	if len(hooks) != 1 || hooks[0] != nil {
		t.Errorf("webhooks received: %v, want one that verifies", hooks)
	}
	mu.Unlock()
	d, err := a.Service.GetMoc(ctx, "u1", m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Moc.ThumbnailStatus != upload.ThumbnailReady || d.ThumbnailURL == nil ||
		!strings.Contains(*d.ThumbnailURL, "/apptest/moc-instructions/u1/"+m.ID+"/thumbnail.jpg") {
		t.Errorf("thumbnail = %s %v", d.Moc.ThumbnailStatus, d.ThumbnailURL)
	}

	// The Sweeper takes any event (EventBridge's) and answers its counts.
	sweep, err := a.AsyncHandler("Sweeper")
	if err != nil {
		t.Fatal(err)
	}
	out, err := sweep(ctx, []byte(`{"source":"aws.events","detail-type":"Scheduled Event","detail":{}}`))
	var res followup.SweepResult
	if err != nil || json.Unmarshal(out, &res) != nil || res != (followup.SweepResult{}) {
		t.Errorf("sweep = %s, %v", out, err)
	}
}

func TestAsyncHandlerRefuses(t *testing.T) {
	a := &App{Thumbnails: &followup.Thumbnails{}, Webhooks: &followup.Webhooks{}}
	if _, err := a.AsyncHandler("Finalize"); err == nil {
		t.Error("AsyncHandler of an HTTP function succeeded")
	}
	for _, fn := range []string{"Thumbnail", "Webhook"} {
		h, err := a.AsyncHandler(fn)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{`not json`, `{}`, `[]`} {
			if _, err := h(t.Context(), []byte(bad)); err == nil || !strings.Contains(err.Error(), "not a follow-up job") {
				t.Errorf("%s(%s) = %v, want an error", fn, bad, err)
			}
		}
	}
}

// A function whose main leaves out a part it needs fails its cold start,
// naming the part, instead of dropping the work the part does.
func TestPartsAFunctionNeeds(t *testing.T) {
	invoker := func(context.Context, Config) (followup.Invoker, error) { return nil, nil }
	generate := func(io.Reader, string) ([]byte, error) { return nil, nil }
	for _, c := range []struct {
		function string
		parts    Parts
		want     string // "" = none missing
	}{
		{"Finalize", Parts{}, "Invoker"},
		{"Finalize", Parts{Invoker: invoker}, ""},
		{followup.SweeperFunction, Parts{Thumbnail: generate}, "Invoker"},
		{followup.SweeperFunction, Parts{Invoker: invoker}, ""},
		{followup.ThumbnailFunction, Parts{Invoker: invoker}, "Thumbnail"},
		{followup.ThumbnailFunction, Parts{Thumbnail: generate}, ""},
		{followup.WebhookFunction, Parts{}, ""},
		{"GetSession", Parts{}, ""},
	} {
		err := c.parts.missing(c.function)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want no part missing", c.function, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), "app.Parts."+c.want)):
			t.Errorf("%s: %v, want app.Parts.%s missing", c.function, err, c.want)
		}
	}
	// And serveLambda stops there, before reading any configuration.
	err := serveLambda(t.Context(), followup.ThumbnailFunction, Parts{}, nil)
	if err == nil || !strings.Contains(err.Error(), "app.Parts.Thumbnail") {
		t.Errorf("serveLambda(Thumbnail) without its part = %v", err)
	}
}
