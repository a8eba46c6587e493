// Package invoke plays AWS Lambda's Invoke API for local runs, as `sam
// local start-lambda` serves it: the functions' handlers run in-process, and
// any client of the Invoke API — aws-sdk-go-v2's lambda client with
// BaseEndpoint http://<addr>, `aws lambda invoke --endpoint-url
// http://<addr>` — can call them. The local stack serves it on
// 127.0.0.1:3002 and points the functions at it (LAMBDA_ENDPOINT), so that
// finalize's follow-up work takes the path it takes in AWS.
//
// # The API
//
// One operation, POST /2015-03-31/functions/{FunctionName}/invocations
// (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html). The
// request's signature is not checked (any SigV4 signature, or none, is
// accepted). FunctionName is the name a handler was given, alone or in one
// of the forms Lambda accepts: name:qualifier,
// 123456789012:function:name and arn:aws:lambda:region:account:function:name
// (with an optional :qualifier). Only $LATEST exists: another qualifier (or
// ?Qualifier=) is a function that does not exist.
//
// X-Amz-Invocation-Type says what happens:
//
//   - RequestResponse (the default): the handler runs and its result is the
//     200 response's body, with X-Amz-Executed-Version: $LATEST. A handler
//     error is 200 too, with X-Amz-Function-Error: Unhandled and the body
//     Lambda's Go runtime (aws-lambda-go) reports for it:
//     {"errorMessage": err.Error(), "errorType": <the error's Go type name>}
//     (a panic too: its value's message and type). "The status code in the API response
//     doesn't reflect function errors" (API_Invoke).
//   - Event: 202 with an empty body as soon as the request is read; the
//     handler runs in the background. Failures are logged, and retried as
//     configured (below).
//   - DryRun: 204, nothing runs (Lambda only checks the parameters and the
//     caller's permission).
//
// Every answer carries x-amzn-RequestId, which is also the invocation's
// AwsRequestID in the handler's lambdacontext.
//
// Errors have Lambda's shape, so the SDK returns its modeled error types:
// the x-amzn-ErrorType header names the exception and the body is
// {"Type": "User", "message": …} (Lambda's own JSON; smithy's restJson1
// deserializer reads the type from the header and maps "message" to the
// exception's Message).
//
//   - A function without a handler: 404 ResourceNotFoundException, "Function
//     not found: arn:aws:lambda:{region}:{account}:function:{name}"
//     (*types.ResourceNotFoundException in aws-sdk-go-v2).
//   - A payload that is not JSON: 400 InvalidRequestContentException, "Could
//     not parse request body into json: …". An empty payload is passed to
//     the handler as {} (as `sam local start-lambda` does).
//   - A payload over Lambda's quota, 6 MB (6,291,456 bytes) for
//     RequestResponse and 1 MB (1,048,576 bytes) for Event: 413
//     RequestTooLargeException (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
//     A result over 6 MB is a function error instead, errorType
//     Function.ResponseSizeTooLarge, as in Lambda.
//   - An X-Amz-Invocation-Type other than the three: 400
//     InvalidParameterValueException.
//   - Any other path: 404, and another method: 405, with
//     x-amzn-ErrorType LocalServiceException (`sam local start-lambda`'s
//     PathNotFoundException and MethodNotAllowedException).
//   - An Event invocation after Close: 500 ServiceException.
//
// X-Amz-Log-Type: Tail returns no LogResult (the handlers log to the
// process's log), and X-Amz-Client-Context is ignored.
//
// # Timeout
//
// With Options.Timeout set, a handler's context has that deadline (a
// function's Timeout in template.yaml) and an invocation that has not
// returned by then fails with errorType Sandbox.Timedout, "Task timed out
// after N seconds" — Lambda's words in the function's log. Lambda stops
// the sandbox; here the handler's goroutine cannot be stopped, only its
// context is cancelled, and Wait and Close still wait for it.
//
// # Asynchronous invocations and retries
//
// Lambda queues an Event invocation and runs it later; "If the function
// returns an error, by default Lambda attempts to run it two more times,
// with a one-minute wait between the first two attempts, and two minutes
// between the second and third attempts"
// (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html).
// A function's EventInvokeConfig.MaximumRetryAttempts (0 to 2) changes the
// count. Here each function retries Options.MaxRetryAttempts[function]
// times (0 when absent: the template sets every async function's count, and
// the local stack passes the same numbers), after Options.RetryDelays (1
// and 2 minutes by default). Each failed attempt is logged at ERROR with
// the function, request id, attempt and Lambda's error JSON fields, and the
// event is discarded after the last one, as Lambda does without a
// dead-letter queue or on-failure destination. The queue lives in memory:
// Close drops the retries still waiting (each logged), where Lambda would
// keep them for up to MaximumEventAgeInSeconds (6 hours by default); the
// service's outbox and Sweeper make up for both.
//
// Lambda runs async events with the function's reserved concurrency; here
// every accepted event starts at once, in its own goroutine.
package invoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambda/messages"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/google/uuid"
)

// Handler is a function's entry point: the invocation's payload in, the
// result out (the body of a RequestResponse answer).
type Handler func(ctx context.Context, payload []byte) ([]byte, error)

// Invocation types (X-Amz-Invocation-Type).
const (
	RequestResponse = "RequestResponse"
	Event           = "Event"
	DryRun          = "DryRun"
)

// Lambda's payload quotas.
const (
	MaxSyncPayloadBytes  = 6 << 20 // 6,291,456: RequestResponse request and response
	MaxAsyncPayloadBytes = 1 << 20 // 1,048,576: Event request
)

// The region and account of the local functions' ARNs, unless set.
const defaultRegion, defaultAccountID = "us-east-1", "123456789012"

// LatestVersion is the only version of every local function.
const LatestVersion = "$LATEST"

// DefaultRetryDelays are Lambda's waits before the first and the second
// retry of a failed asynchronous invocation.
var DefaultRetryDelays = []time.Duration{time.Minute, 2 * time.Minute}

// ErrTimeout is the error of an invocation that ran past Options.Timeout.
var ErrTimeout = errors.New("task timed out")

// Options configure a Server. The zero value is usable.
type Options struct {
	// Logger receives a line per failed invocation and per dropped retry
	// (slog.Default() when nil); successful invocations are logged at
	// DEBUG.
	Logger *slog.Logger
	// Region and AccountID appear in function ARNs: the error messages and
	// the handler's lambdacontext.InvokedFunctionArn (us-east-1 and
	// 123456789012 when empty).
	Region, AccountID string
	// Timeout is each invocation's time limit, the function's Timeout; 0:
	// none.
	Timeout time.Duration
	// MaxRetryAttempts is each function's MaximumRetryAttempts for Event
	// invocations, 0 to 2 (values outside are clamped); a function absent
	// from it is not retried.
	MaxRetryAttempts map[string]int
	// RetryDelays are the waits before the first and the second retry
	// (DefaultRetryDelays when nil; the last one repeats when short).
	RetryDelays []time.Duration
	// OnInvoke, when set, is called after every run of a handler, every
	// attempt of an async event included (tests count invocations with it).
	// It runs on the invocation's goroutine and must not block for long.
	OnInvoke func(Invocation)
}

// Invocation describes one run of a handler.
type Invocation struct {
	Function  string
	RequestID string
	Type      string // RequestResponse or Event
	Attempt   int    // 1, then 2 and 3 for the retries of an Event
	Payload   []byte
	Result    []byte
	Err       error // the handler's error, a panic, or ErrTimeout
	Duration  time.Duration
}

// Server is a local Lambda Invoke API, an http.Handler.
type Server struct {
	handlers map[string]Handler
	opts     Options
	log      *slog.Logger

	base    context.Context // parent of every handler's context
	cancel  context.CancelFunc
	closing chan struct{} // closed by Close

	mu      sync.Mutex
	closed  bool
	events  int           // Event invocations accepted and not finished (running or waiting to retry)
	running int           // handler goroutines that have not returned
	idle    chan struct{} // closed when events and running both reach 0
}

// New returns a Server running handlers, by function name.
func New(handlers map[string]Handler, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Region == "" {
		opts.Region = defaultRegion
	}
	if opts.AccountID == "" {
		opts.AccountID = defaultAccountID
	}
	if opts.RetryDelays == nil {
		opts.RetryDelays = DefaultRetryDelays
	}
	hs := make(map[string]Handler, len(handlers))
	for name, h := range handlers {
		if h != nil {
			hs[name] = h
		}
	}
	base, cancel := context.WithCancel(context.Background())
	return &Server{
		handlers: hs, opts: opts, log: opts.Logger,
		base: base, cancel: cancel, closing: make(chan struct{}),
	}
}

// Functions lists the names of the functions the server has.
func (s *Server) Functions() []string {
	names := make([]string, 0, len(s.handlers))
	for n := range s.handlers {
		names = append(names, n)
	}
	return names
}

const invokePrefix, invokeSuffix = "/2015-03-31/functions/", "/invocations"

// ServeHTTP serves the Invoke API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	requestID := uuid.NewString()
	w.Header().Set("X-Amzn-Requestid", requestID)
	path := r.URL.Path
	if !strings.HasPrefix(path, invokePrefix) || !strings.HasSuffix(path, invokeSuffix) ||
		len(path) <= len(invokePrefix)+len(invokeSuffix) {
		writeError(w, http.StatusNotFound, "LocalServiceException", "LocalService", "PathNotFoundException")
		return
	}
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "LocalServiceException", "LocalService", "MethodNotAllowedException")
		return
	}
	fn, qualifier := parseFunctionName(strings.TrimSuffix(strings.TrimPrefix(path, invokePrefix), invokeSuffix))
	if q := r.URL.Query().Get("Qualifier"); q != "" {
		qualifier = q
	}
	h, ok := s.handlers[fn]
	if !ok || (qualifier != "" && qualifier != LatestVersion) {
		arn := s.arn(fn)
		if qualifier != "" {
			arn += ":" + qualifier
		}
		writeError(w, http.StatusNotFound, "ResourceNotFoundException", "User", "Function not found: "+arn)
		return
	}
	typ := r.Header.Get("X-Amz-Invocation-Type")
	if typ == "" {
		typ = RequestResponse
	}
	limit := int64(MaxSyncPayloadBytes)
	switch typ {
	case RequestResponse, DryRun:
	case Event:
		limit = MaxAsyncPayloadBytes
	default:
		writeError(w, http.StatusBadRequest, "InvalidParameterValueException", "User",
			fmt.Sprintf("1 validation error detected: Value '%s' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]", typ))
		return
	}
	payload, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		s.log.Info("invoke request body unreadable", "function", fn, "err", err)
		return
	}
	if int64(len(payload)) > limit {
		writeError(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException", "User",
			fmt.Sprintf("Request must be smaller than %d bytes for the InvokeFunction operation", limit))
		return
	}
	if len(payload) == 0 {
		payload = []byte("{}")
	}
	if !json.Valid(payload) {
		var v any
		err := json.Unmarshal(payload, &v)
		writeError(w, http.StatusBadRequest, "InvalidRequestContentException", "User",
			"Could not parse request body into json: "+err.Error())
		return
	}

	switch typ {
	case DryRun:
		w.WriteHeader(http.StatusNoContent)
	case Event:
		if !s.acceptEvent() {
			writeError(w, http.StatusInternalServerError, "ServiceException", "Service",
				"the local invoke API is shutting down")
			return
		}
		go s.runEvent(fn, h, payload, requestID)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusAccepted)
	default:
		result, err := s.call(fn, h, payload, requestID, RequestResponse, 1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amz-Executed-Version", LatestVersion)
		if err != nil {
			w.Header().Set("X-Amz-Function-Error", "Unhandled")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(errorPayload(err))
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(result)
	}
}

// call runs h once and returns its result, or the error Lambda would
// report. A result over the quota is an error; an empty one is null.
func (s *Server) call(fn string, h Handler, payload []byte, requestID, typ string, attempt int) ([]byte, error) {
	ctx := lambdacontext.NewContext(s.base, &lambdacontext.LambdaContext{
		AwsRequestID: requestID, InvokedFunctionArn: s.arn(fn),
	})
	var cancel context.CancelFunc
	if s.opts.Timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, s.opts.Timeout)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	defer cancel()

	type outcome struct {
		result []byte
		err    error
	}
	done := make(chan outcome, 1)
	start := time.Now()
	s.add(0, 1)
	go func() {
		defer s.add(0, -1)
		var o outcome
		defer func() {
			if v := recover(); v != nil {
				s.log.Error("handler panicked", "function", fn, "requestId", requestID,
					"panic", v, "stack", string(debug.Stack()))
				o = outcome{err: panicError(v)}
			}
			done <- o
		}()
		o.result, o.err = h(ctx, append([]byte(nil), payload...))
	}()
	var o outcome
	select {
	case o = <-done:
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			o.err = timeoutError(requestID, s.opts.Timeout)
		} else {
			o.err = fmt.Errorf("%w: the local invoke API stopped", ctx.Err())
		}
	}
	if o.err == nil {
		if len(o.result) == 0 {
			o.result = []byte("null")
		} else if len(o.result) > MaxSyncPayloadBytes && typ == RequestResponse {
			o.err = messages.InvokeResponse_Error{
				Type:    "Function.ResponseSizeTooLarge",
				Message: fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", MaxSyncPayloadBytes),
			}
		}
	}
	inv := Invocation{
		Function: fn, RequestID: requestID, Type: typ, Attempt: attempt,
		Payload: payload, Result: o.result, Err: o.err, Duration: time.Since(start),
	}
	if o.err != nil {
		e := lambdaError(o.err)
		s.log.Error("invocation failed", "function", fn, "requestId", requestID, "type", typ,
			"attempt", attempt, "errorType", e.Type, "errorMessage", e.Message)
	} else {
		s.log.Debug("invoked", "function", fn, "requestId", requestID, "type", typ,
			"attempt", attempt, "duration", inv.Duration)
	}
	if s.opts.OnInvoke != nil {
		s.opts.OnInvoke(inv)
	}
	if o.err != nil {
		return nil, o.err
	}
	return o.result, nil
}

// runEvent runs an accepted Event invocation, with its retries.
func (s *Server) runEvent(fn string, h Handler, payload []byte, requestID string) {
	defer s.add(-1, 0)
	retries := min(max(s.opts.MaxRetryAttempts[fn], 0), 2)
	for attempt := 1; ; attempt++ {
		_, err := s.call(fn, h, payload, requestID, Event, attempt)
		if err == nil {
			return
		}
		if attempt > retries {
			s.log.Error("async event discarded: every attempt failed", "function", fn,
				"requestId", requestID, "attempts", attempt)
			return
		}
		delay := s.opts.RetryDelays[min(attempt-1, len(s.opts.RetryDelays)-1)]
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.closing:
			t.Stop()
			s.log.Warn("async event dropped: the local invoke API stopped before its retry",
				"function", fn, "requestId", requestID, "attempts", attempt)
			return
		}
	}
}

// acceptEvent counts a new Event invocation, unless the server is closed.
func (s *Server) acceptEvent() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.events++
	return true
}

// add changes the counts and wakes Wait when both reach 0.
func (s *Server) add(events, running int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events += events
	s.running += running
	if s.events == 0 && s.running == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// Wait blocks until every Event invocation accepted so far has finished,
// its retries included, and no handler is running; or until ctx ends
// (ctx.Err()).
func (s *Server) Wait(ctx context.Context) error {
	s.mu.Lock()
	if s.events == 0 && s.running == 0 {
		s.mu.Unlock()
		return nil
	}
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops accepting Event invocations (500 ServiceException), drops the
// retries that are waiting, and waits for the running invocations until
// ctx ends; then it cancels their contexts and returns ctx.Err(). Stop the
// HTTP server first: a RequestResponse invocation arriving after Close
// gets a cancelled context. Close is idempotent.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	err := s.Wait(ctx)
	if err != nil {
		s.mu.Lock()
		n := s.running
		s.mu.Unlock()
		s.log.Warn("stopped waiting for running invocations; their contexts are cancelled", "running", n, "err", err)
	}
	s.cancel()
	return err
}

func (s *Server) arn(fn string) string {
	return fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", s.opts.Region, s.opts.AccountID, fn)
}

// parseFunctionName returns the function name and qualifier of any of the
// forms of FunctionName: name, name:qualifier, account:function:name[:q],
// arn:partition:lambda:region:account:function:name[:q].
func parseFunctionName(s string) (name, qualifier string) {
	parts := strings.Split(s, ":")
	switch {
	case len(parts) >= 7 && parts[0] == "arn" && parts[2] == "lambda" && parts[5] == "function":
		parts = parts[6:]
	case len(parts) >= 3 && parts[1] == "function":
		parts = parts[2:]
	}
	name = parts[0]
	if len(parts) > 1 {
		qualifier = strings.Join(parts[1:], ":")
	}
	return name, qualifier
}

// writeError writes Lambda's error answer: x-amzn-ErrorType and
// {"Type", "message"}.
func writeError(w http.ResponseWriter, status int, errorType, typ, message string) {
	body, _ := json.Marshal(struct {
		Type    string `json:"Type"`
		Message string `json:"message"`
	}{typ, message})
	w.Header().Set("X-Amzn-Errortype", errorType)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// lambdaError is the error as aws-lambda-go reports it: its message and
// its Go type's name (messages.InvokeResponse_Error as it is).
func lambdaError(err error) messages.InvokeResponse_Error {
	var ie messages.InvokeResponse_Error
	if errors.As(err, &ie) {
		return ie
	}
	return messages.InvokeResponse_Error{Message: err.Error(), Type: typeName(err)}
}

// typeName is the name of v's type, or of the type it points to, as
// aws-lambda-go names an error's or a panic value's type.
func typeName(v any) string {
	t := reflect.TypeOf(v)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}

func errorPayload(err error) []byte {
	b, _ := json.Marshal(lambdaError(err))
	return b
}

// panicError is a recovered panic as aws-lambda-go reports it: the value's
// message and type name. (The runtime adds the stack as "stackTrace"; here
// it goes to the log.)
func panicError(v any) error {
	msg := fmt.Sprint(v)
	if err, ok := v.(error); ok {
		msg = err.Error()
	}
	return messages.InvokeResponse_Error{Message: msg, Type: typeName(v)}
}

// timeoutError is Lambda's report of an invocation that ran out of time.
func timeoutError(requestID string, d time.Duration) error {
	return fmt.Errorf("%w: %w", ErrTimeout, messages.InvokeResponse_Error{
		Type:    "Sandbox.Timedout",
		Message: fmt.Sprintf("RequestId: %s Error: Task timed out after %.2f seconds", requestID, d.Seconds()),
	})
}
