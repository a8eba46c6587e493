package invoke_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	localinvoke "github.com/mocbuilders/moc-upload/local/invoke"
	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/invoke"
)

const deadline = 10 * time.Second

type run struct {
	function string
	payload  string
}

// localAPI serves the local invoke API over real HTTP with a handler for
// each of followup.Functions that reports its runs on the returned
// channel, and records the Authorization header of each request.
func localAPI(t *testing.T) (endpoint string, runs chan run, auth func() []string) {
	t.Helper()
	runs = make(chan run, 10)
	handlers := map[string]localinvoke.Handler{}
	for _, fn := range followup.Functions {
		handlers[fn] = func(_ context.Context, payload []byte) ([]byte, error) {
			runs <- run{fn, string(payload)}
			return nil, nil
		}
	}
	srv := localinvoke.New(handlers, localinvoke.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	var mu sync.Mutex
	var headers []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		headers = append(headers, r.Header.Get("Authorization"))
		mu.Unlock()
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		_ = srv.Close(ctx)
	})
	return hs.URL, runs, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), headers...)
	}
}

func waitRun(t *testing.T, runs chan run) run {
	t.Helper()
	select {
	case r := <-runs:
		return r
	case <-time.After(deadline):
		t.Fatal("the function did not run")
		return run{}
	}
}

func TestInvokeAsyncThroughTheLocalAPI(t *testing.T) {
	endpoint, runs, auth := localAPI(t)
	ctx := context.Background()
	inv, err := invoke.New(ctx, invoke.Config{
		Endpoint: endpoint + "/", Region: "eu-west-1",
		AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret", SessionToken: "token",
	})
	if err != nil {
		t.Fatal(err)
	}
	job := `{"outboxId":"o1","kind":"thumbnail","mocId":"m1"}`
	if err := inv.InvokeAsync(ctx, followup.ThumbnailFunction, []byte(job)); err != nil {
		t.Fatal(err)
	}
	if r := waitRun(t, runs); r.function != followup.ThumbnailFunction || r.payload != job {
		t.Errorf("ran %+v", r)
	}
	if h := auth(); len(h) != 1 || !strings.HasPrefix(h[0], "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") ||
		!strings.Contains(h[0], "/eu-west-1/lambda/aws4_request") {
		t.Errorf("Authorization %q, want a SigV4 signature with the static key", h)
	}
}

func TestUnsignedWithoutCredentialsOutsideAWS(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	endpoint, runs, auth := localAPI(t)
	inv, err := invoke.New(context.Background(), invoke.Config{Endpoint: endpoint})
	if err != nil {
		t.Fatal(err)
	}
	if err := inv.InvokeAsync(context.Background(), followup.SweeperFunction, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	waitRun(t, runs)
	if h := auth(); len(h) != 1 || h[0] != "" {
		t.Errorf("Authorization %q, want none", h)
	}
}

func TestFunctionARN(t *testing.T) {
	endpoint, runs, _ := localAPI(t)
	inv, err := invoke.New(context.Background(), invoke.Config{Endpoint: endpoint})
	if err != nil {
		t.Fatal(err)
	}
	// As deployed, a function may be named by its ARN.
	if err := inv.InvokeAsync(context.Background(), "arn:aws:lambda:us-east-1:123456789012:function:Webhook", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if r := waitRun(t, runs); r.function != followup.WebhookFunction {
		t.Errorf("ran %+v", r)
	}
}

func TestUnknownFunction(t *testing.T) {
	endpoint, _, _ := localAPI(t)
	inv, err := invoke.New(context.Background(), invoke.Config{Endpoint: endpoint})
	if err != nil {
		t.Fatal(err)
	}
	err = inv.InvokeAsync(context.Background(), "Nope", []byte(`{}`))
	var rnf *types.ResourceNotFoundException
	if !errors.As(err, &rnf) {
		t.Fatalf("%T %v, want a *types.ResourceNotFoundException", err, err)
	}
	if !strings.HasPrefix(err.Error(), "invoke Nope: ") {
		t.Errorf("error %q does not name the function first", err)
	}
}

func TestTimeout(t *testing.T) {
	// A server that never answers: the call gives up after Config.Timeout.
	stop := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-stop }))
	defer hs.Close()
	defer close(stop)
	inv, err := invoke.New(context.Background(), invoke.Config{Endpoint: hs.URL, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- inv.InvokeAsync(context.Background(), followup.WebhookFunction, []byte(`{}`)) }()
	select {
	case err := <-done:
		if err == nil || !strings.HasPrefix(err.Error(), "invoke Webhook: ") {
			t.Errorf("err %v, want a timeout naming the function", err)
		}
	case <-time.After(deadline):
		t.Fatal("InvokeAsync did not give up")
	}
}

// fakeAPI answers every Invoke with status.
type fakeAPI struct {
	status int32
	in     *lambda.InvokeInput
}

func (f *fakeAPI) Invoke(_ context.Context, in *lambda.InvokeInput, _ ...func(*lambda.Options)) (*lambda.InvokeOutput, error) {
	f.in = in
	return &lambda.InvokeOutput{StatusCode: f.status}, nil
}

func TestEventMustBeQueued(t *testing.T) {
	f := &fakeAPI{status: 200}
	inv := invoke.NewWithClient(f, invoke.Config{})
	err := inv.InvokeAsync(context.Background(), followup.ThumbnailFunction, []byte(`{}`))
	if !errors.Is(err, invoke.ErrNotQueued) {
		t.Errorf("status 200: %v, want ErrNotQueued", err)
	}
	if f.in.InvocationType != types.InvocationTypeEvent {
		t.Errorf("InvocationType %q", f.in.InvocationType)
	}
	f.status = 202
	if err := inv.InvokeAsync(context.Background(), followup.ThumbnailFunction, []byte(`{}`)); err != nil {
		t.Error(err)
	}
}

func TestBadEndpoint(t *testing.T) {
	for _, ep := range []string{"127.0.0.1:3002", "ws://x", "http://"} {
		if _, err := invoke.New(context.Background(), invoke.Config{Endpoint: ep}); err == nil {
			t.Errorf("endpoint %q accepted", ep)
		}
	}
}
