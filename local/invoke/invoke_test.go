package invoke_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/mocbuilders/moc-upload/local/invoke"
	sharedinvoke "github.com/mocbuilders/moc-upload/shared/invoke"
)

// deadline bounds every wait of a test on something another goroutine
// does.
const deadline = 10 * time.Second

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start serves handlers over real HTTP and returns the server and an SDK
// client of it, signing with static credentials (the server accepts any
// signature) and without retries, so that each call is one request.
func start(t *testing.T, handlers map[string]invoke.Handler, opts invoke.Options) (*invoke.Server, *lambda.Client) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	srv := invoke.New(handlers, opts)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	c := lambda.New(lambda.Options{
		BaseEndpoint:     aws.String(hs.URL),
		Region:           "eu-west-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "token"),
		RetryMaxAttempts: 1,
	})
	return srv, c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}

func echo(_ context.Context, payload []byte) ([]byte, error) { return payload, nil }

func TestEventAnswers202AtOnceAndRunsTheHandler(t *testing.T) {
	type run struct {
		payload   string
		requestID string
		arn       string
	}
	release := make(chan struct{})
	ran := make(chan run, 1)
	_, c := start(t, map[string]invoke.Handler{
		"Thumbnail": func(ctx context.Context, payload []byte) ([]byte, error) {
			<-release // the 202 must not wait for this
			lc, _ := lambdacontext.FromContext(ctx)
			ran <- run{string(payload), lc.AwsRequestID, lc.InvokedFunctionArn}
			return nil, nil
		},
	}, invoke.Options{})

	out, err := c.Invoke(ctxT(t), &lambda.InvokeInput{
		FunctionName: aws.String("Thumbnail"), InvocationType: types.InvocationTypeEvent,
		Payload: []byte(`{"outboxId":"o1"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.StatusCode != http.StatusAccepted || len(out.Payload) != 0 {
		t.Fatalf("status %d payload %q, want 202 and no payload", out.StatusCode, out.Payload)
	}
	reqID, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	close(release)
	select {
	case r := <-ran:
		if r.payload != `{"outboxId":"o1"}` {
			t.Errorf("payload %q", r.payload)
		}
		if reqID == "" || r.requestID != reqID {
			t.Errorf("handler's request id %q, x-amzn-RequestId %q", r.requestID, reqID)
		}
		if r.arn != "arn:aws:lambda:us-east-1:123456789012:function:Thumbnail" {
			t.Errorf("arn %q", r.arn)
		}
	case <-time.After(deadline):
		t.Fatal("the handler did not run")
	}
}

func TestRequestResponseReturnsTheResult(t *testing.T) {
	_, c := start(t, map[string]invoke.Handler{
		"Sweeper": echo,
		"Nothing": func(context.Context, []byte) ([]byte, error) { return nil, nil },
	}, invoke.Options{})
	ctx := ctxT(t)
	for _, tc := range []struct {
		name, fn      string
		typ           types.InvocationType
		payload, want string
	}{
		{"default type", "Sweeper", "", `{"a":1}`, `{"a":1}`},
		{"explicit", "Sweeper", types.InvocationTypeRequestResponse, `[1,2]`, `[1,2]`},
		{"empty payload is {}", "Sweeper", "", ``, `{}`},
		{"no result is null", "Nothing", "", `{}`, `null`},
		{"ARN", "arn:aws:lambda:us-east-1:123456789012:function:Sweeper", "", `"x"`, `"x"`},
		{"partial ARN with $LATEST", "123456789012:function:Sweeper:$LATEST", "", `1`, `1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &lambda.InvokeInput{FunctionName: aws.String(tc.fn), InvocationType: tc.typ}
			if tc.payload != "" {
				in.Payload = []byte(tc.payload)
			}
			out, err := c.Invoke(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if out.StatusCode != 200 || string(out.Payload) != tc.want || out.FunctionError != nil ||
				aws.ToString(out.ExecutedVersion) != "$LATEST" {
				t.Errorf("got %d %q error %v version %v", out.StatusCode, out.Payload,
					aws.ToString(out.FunctionError), aws.ToString(out.ExecutedVersion))
			}
		})
	}
}

type customError struct{ msg string }

func (e *customError) Error() string { return e.msg }

func TestRequestResponseFunctionErrors(t *testing.T) {
	big := bytes.Repeat([]byte("x"), invoke.MaxSyncPayloadBytes+1)
	_, c := start(t, map[string]invoke.Handler{
		"Plain":  func(context.Context, []byte) ([]byte, error) { return nil, errors.New("boom") },
		"Custom": func(context.Context, []byte) ([]byte, error) { return nil, &customError{"custom boom"} },
		"Panics": func(context.Context, []byte) ([]byte, error) { panic("kaboom") },
		"Big":    func(context.Context, []byte) ([]byte, error) { return big, nil },
		"Slow": func(ctx context.Context, _ []byte) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
	}, invoke.Options{Timeout: 50 * time.Millisecond})
	ctx := ctxT(t)
	for _, tc := range []struct {
		fn, errorType, message string
	}{
		{"Plain", "errorString", "boom"},
		{"Custom", "customError", "custom boom"},
		{"Panics", "string", "kaboom"},
		{"Big", "Function.ResponseSizeTooLarge", "Response payload size exceeded maximum allowed payload size (6291456 bytes)."},
		{"Slow", "Sandbox.Timedout", "Task timed out after 0.05 seconds"},
	} {
		t.Run(tc.fn, func(t *testing.T) {
			out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(tc.fn), Payload: []byte(`{}`)})
			if err != nil {
				t.Fatalf("a function error is not an API error: %v", err)
			}
			if out.StatusCode != 200 || aws.ToString(out.FunctionError) != "Unhandled" {
				t.Fatalf("status %d X-Amz-Function-Error %q", out.StatusCode, aws.ToString(out.FunctionError))
			}
			var body map[string]any
			if err := json.Unmarshal(out.Payload, &body); err != nil {
				t.Fatalf("payload %q: %v", out.Payload, err)
			}
			msg, _ := body["errorMessage"].(string)
			if body["errorType"] != tc.errorType || !strings.Contains(msg, tc.message) {
				t.Errorf("payload %s, want errorType %q and errorMessage with %q", out.Payload, tc.errorType, tc.message)
			}
		})
	}
}

func TestAPIErrorsAreTheSDKsTypes(t *testing.T) {
	srv, c := start(t, map[string]invoke.Handler{"Webhook": echo}, invoke.Options{})
	ctx := ctxT(t)

	_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("Nope"), InvocationType: types.InvocationTypeEvent})
	var rnf *types.ResourceNotFoundException
	if !errors.As(err, &rnf) {
		t.Fatalf("unknown function: %T %v, want *types.ResourceNotFoundException", err, err)
	}
	if rnf.ErrorMessage() != "Function not found: arn:aws:lambda:us-east-1:123456789012:function:Nope" ||
		aws.ToString(rnf.Type) != "User" {
		t.Errorf("message %q type %q", rnf.ErrorMessage(), aws.ToString(rnf.Type))
	}

	_, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("Webhook"), Qualifier: aws.String("live")})
	if !errors.As(err, &rnf) || !strings.HasSuffix(rnf.ErrorMessage(), ":function:Webhook:live") {
		t.Errorf("unknown qualifier: %v", err)
	}

	_, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("Webhook"), Payload: []byte(`{not json`)})
	var bad *types.InvalidRequestContentException
	if !errors.As(err, &bad) || !strings.HasPrefix(bad.ErrorMessage(), "Could not parse request body into json") {
		t.Errorf("bad JSON: %T %v", err, err)
	}

	_, err = c.Invoke(ctx, &lambda.InvokeInput{
		FunctionName: aws.String("Webhook"), InvocationType: types.InvocationTypeEvent,
		Payload: []byte(`"` + strings.Repeat("x", invoke.MaxAsyncPayloadBytes) + `"`),
	})
	var large *types.RequestTooLargeException
	if !errors.As(err, &large) {
		t.Errorf("async payload over 1 MB: %T %v", err, err)
	}

	_, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("Webhook"), InvocationType: "Later"})
	var param *types.InvalidParameterValueException
	if !errors.As(err, &param) {
		t.Errorf("unknown invocation type: %T %v", err, err)
	}
	if err := srv.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestDryRunRunsNothing(t *testing.T) {
	var mu sync.Mutex
	var runs int
	_, c := start(t, map[string]invoke.Handler{"Sweeper": echo}, invoke.Options{
		OnInvoke: func(invoke.Invocation) { mu.Lock(); runs++; mu.Unlock() },
	})
	ctx := ctxT(t)
	out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("Sweeper"), InvocationType: types.InvocationTypeDryRun})
	if err != nil || out.StatusCode != http.StatusNoContent {
		t.Fatalf("DryRun: %v, status %d, want 204", err, statusOf(out))
	}
	_, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("Other"), InvocationType: types.InvocationTypeDryRun})
	var rnf *types.ResourceNotFoundException
	if !errors.As(err, &rnf) {
		t.Errorf("DryRun of an unknown function: %v", err)
	}
	// A RequestResponse afterwards is the first run.
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("Sweeper")}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if runs != 1 {
		t.Errorf("%d runs, want 1 (DryRun runs nothing)", runs)
	}
}

func statusOf(out *lambda.InvokeOutput) int32 {
	if out == nil {
		return 0
	}
	return out.StatusCode
}

func TestOtherPathsAndMethods(t *testing.T) {
	srv := invoke.New(map[string]invoke.Handler{"Sweeper": echo}, invoke.Options{Logger: quietLogger()})
	hs := httptest.NewServer(srv)
	defer hs.Close()
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"POST", "/2015-03-31/functions/Sweeper/invocations", 200},
		{"GET", "/2015-03-31/functions/Sweeper/invocations", 405},
		{"POST", "/2015-03-31/functions/Sweeper", 404},
		{"POST", "/", 404},
	} {
		req, _ := http.NewRequest(tc.method, hs.URL+tc.path, strings.NewReader(`{}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("X-Amzn-Requestid") == "" {
			t.Errorf("%s %s: %d, want %d with a request id", tc.method, tc.path, resp.StatusCode, tc.status)
		}
		if tc.status != 200 && resp.Header.Get("X-Amzn-Errortype") != "LocalServiceException" {
			t.Errorf("%s %s: x-amzn-ErrorType %q", tc.method, tc.path, resp.Header.Get("X-Amzn-Errortype"))
		}
	}
}

// recorder collects OnInvoke's reports.
type recorder struct {
	mu   sync.Mutex
	invs []invoke.Invocation
	ch   chan invoke.Invocation
}

func newRecorder() *recorder { return &recorder{ch: make(chan invoke.Invocation, 100)} }

func (r *recorder) record(inv invoke.Invocation) {
	r.mu.Lock()
	r.invs = append(r.invs, inv)
	r.mu.Unlock()
	r.ch <- inv
}

func (r *recorder) next(t *testing.T) invoke.Invocation {
	t.Helper()
	select {
	case inv := <-r.ch:
		return inv
	case <-time.After(deadline):
		t.Fatal("no invocation")
		return invoke.Invocation{}
	}
}

func (r *recorder) all() []invoke.Invocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]invoke.Invocation(nil), r.invs...)
}

func TestAsyncRetries(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	failUntil := func(fn string, n int) invoke.Handler {
		return func(context.Context, []byte) ([]byte, error) {
			mu.Lock()
			defer mu.Unlock()
			calls[fn]++
			if calls[fn] < n {
				return nil, errors.New("not yet")
			}
			return nil, nil
		}
	}
	rec := newRecorder()
	srv, c := start(t, map[string]invoke.Handler{
		"Third":   failUntil("Third", 3),  // succeeds on the last retry
		"Never":   failUntil("Never", 99), // discarded after 1 + 2 attempts
		"NoRetry": failUntil("NoRetry", 2),
		"Clamped": failUntil("Clamped", 99),
	}, invoke.Options{
		MaxRetryAttempts: map[string]int{"Third": 2, "Never": 2, "Clamped": 5},
		RetryDelays:      []time.Duration{0},
		OnInvoke:         rec.record,
	})
	ctx := ctxT(t)
	for _, fn := range []string{"Third", "Never", "NoRetry", "Clamped"} {
		if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn), InvocationType: types.InvocationTypeEvent}); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	attempts := map[string][]int{}
	ids := map[string]map[string]bool{}
	for _, inv := range rec.all() {
		attempts[inv.Function] = append(attempts[inv.Function], inv.Attempt)
		if ids[inv.Function] == nil {
			ids[inv.Function] = map[string]bool{}
		}
		ids[inv.Function][inv.RequestID] = true
		if inv.Type != invoke.Event {
			t.Errorf("type %q", inv.Type)
		}
	}
	for fn, want := range map[string]int{"Third": 3, "Never": 3, "NoRetry": 1, "Clamped": 3} {
		if got := attempts[fn]; len(got) != want || got[len(got)-1] != want {
			t.Errorf("%s: attempts %v, want 1..%d", fn, got, want)
		}
		if len(ids[fn]) != 1 {
			t.Errorf("%s: request ids %v, want one for every attempt", fn, ids[fn])
		}
	}
}

func TestCloseWaitsForRunningEvents(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	finished := make(chan struct{})
	srv, c := start(t, map[string]invoke.Handler{
		"Webhook": func(context.Context, []byte) ([]byte, error) {
			close(started)
			<-release
			close(finished)
			return nil, nil
		},
	}, invoke.Options{})
	ctx := ctxT(t)
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("Webhook"), InvocationType: types.InvocationTypeEvent}); err != nil {
		t.Fatal(err)
	}
	<-started
	closed := make(chan error, 1)
	go func() { closed <- srv.Close(ctx) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while an invocation was running", err)
	default:
	}
	close(release)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(deadline):
		t.Fatal("Close did not return")
	}
	select {
	case <-finished:
	default:
		t.Fatal("Close returned before the invocation finished")
	}
	// Closed: new events are refused with 500 ServiceException.
	_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("Webhook"), InvocationType: types.InvocationTypeEvent})
	var svc *types.ServiceException
	if !errors.As(err, &svc) {
		t.Errorf("Event after Close: %T %v, want *types.ServiceException", err, err)
	}
}

func TestCloseIsBounded(t *testing.T) {
	cancelled := make(chan struct{})
	started := make(chan struct{})
	srv, c := start(t, map[string]invoke.Handler{
		"Stuck": func(ctx context.Context, _ []byte) ([]byte, error) {
			close(started)
			<-ctx.Done() // only the end of Close's wait releases it
			close(cancelled)
			return nil, ctx.Err()
		},
	}, invoke.Options{})
	if _, err := c.Invoke(ctxT(t), &lambda.InvokeInput{FunctionName: aws.String("Stuck"), InvocationType: types.InvocationTypeEvent}); err != nil {
		t.Fatal(err)
	}
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := srv.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v, want context.DeadlineExceeded", err)
	}
	select {
	case <-cancelled:
	case <-time.After(deadline):
		t.Fatal("the handler's context was not cancelled")
	}
}

func TestCloseDropsWaitingRetries(t *testing.T) {
	rec := newRecorder()
	srv, c := start(t, map[string]invoke.Handler{
		"Thumbnail": func(context.Context, []byte) ([]byte, error) { return nil, errors.New("fails") },
	}, invoke.Options{
		MaxRetryAttempts: map[string]int{"Thumbnail": 2},
		OnInvoke:         rec.record, // default delays: the retry waits a minute
	})
	ctx := ctxT(t)
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("Thumbnail"), InvocationType: types.InvocationTypeEvent}); err != nil {
		t.Fatal(err)
	}
	if inv := rec.next(t); inv.Attempt != 1 || inv.Err == nil {
		t.Fatalf("first attempt %+v", inv)
	}
	if err := srv.Close(ctx); err != nil {
		t.Fatalf("Close with a retry waiting: %v", err)
	}
	if n := len(rec.all()); n != 1 {
		t.Errorf("%d attempts, want 1 (the retry dropped)", n)
	}
}

func TestTimeoutIsReported(t *testing.T) {
	rec := newRecorder()
	srv, c := start(t, map[string]invoke.Handler{
		"Slow": func(ctx context.Context, _ []byte) ([]byte, error) {
			<-ctx.Done()
			return nil, nil // too late: the invocation already timed out
		},
	}, invoke.Options{Timeout: 20 * time.Millisecond, OnInvoke: rec.record})
	ctx := ctxT(t)
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("Slow"), InvocationType: types.InvocationTypeEvent}); err != nil {
		t.Fatal(err)
	}
	if inv := rec.next(t); !errors.Is(inv.Err, invoke.ErrTimeout) {
		t.Errorf("err %v, want ErrTimeout", inv.Err)
	}
	if err := srv.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestScheduleInvokesThroughTheAPI(t *testing.T) {
	got := make(chan []byte, 10)
	srv := invoke.New(map[string]invoke.Handler{
		"Sweeper": func(ctx context.Context, payload []byte) ([]byte, error) {
			got <- payload
			return nil, nil
		},
	}, invoke.Options{Logger: quietLogger()})
	hs := httptest.NewServer(srv)
	defer hs.Close()
	client, err := sharedinvoke.New(context.Background(), sharedinvoke.Config{Endpoint: hs.URL, Region: "eu-west-1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		invoke.Schedule{Function: "Sweeper", Every: 10 * time.Millisecond, Invoker: client,
			Region: "eu-west-1", Logger: quietLogger()}.Run(ctx)
	}()
	for i := range 2 {
		select {
		case p := <-got:
			var ev events.EventBridgeEvent
			if err := json.Unmarshal(p, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.DetailType != "Scheduled Event" || ev.Source != "aws.events" || ev.Region != "eu-west-1" ||
				len(ev.Resources) != 1 || ev.Resources[0] != "arn:aws:events:eu-west-1:123456789012:rule/SweeperFunctionSchedule" ||
				string(ev.Detail) != "{}" || ev.ID == "" {
				t.Errorf("event %d: %s", i, p)
			}
		case <-time.After(deadline):
			t.Fatalf("no scheduled invocation %d", i)
		}
	}
	cancel()
	<-done
	wctx, wcancel := context.WithTimeout(context.Background(), deadline)
	defer wcancel()
	if err := srv.Close(wctx); err != nil {
		t.Fatal(err)
	}
}
