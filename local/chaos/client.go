package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Record is one HTTP request a user sent, to the API or to a presigned
// S3 URL, and how it ended.
type Record struct {
	User  string
	Route string // "POST finalize", "PUT presigned part", …
	// Direct: sent to S3 on a presigned URL, not to the API; S3's own
	// answers and waits, which the service cannot bound.
	Direct bool
	Start  time.Time
	Dur    time.Duration
	Status int    // 0: no answer
	Code   string // the error envelope's code, S3's error, or why there was no answer
	// RetryAfter is the Retry-After header of a 503.
	RetryAfter string
	Body       string // the start of a failed answer's body, for the report
}

// Failed reports whether the request did not succeed.
func (r Record) Failed() bool { return r.Status < 200 || r.Status > 299 }

// Outcome is the record's status and code, as the report counts them;
// "S3: " before what S3 answered a presigned PUT.
func (r Record) Outcome() string {
	if r.Direct {
		return "S3: " + Record{Status: r.Status, Code: r.Code}.Outcome()
	}
	switch {
	case r.Status == 0:
		return "no answer (" + r.Code + ")"
	case r.Status == http.StatusServiceUnavailable && r.RetryAfter == "":
		return itoa(r.Status) + " " + r.Code + " without Retry-After"
	case r.Code != "":
		return itoa(r.Status) + " " + r.Code
	}
	return itoa(r.Status)
}

// recorder keeps every record of a run.
type recorder struct {
	mu   sync.Mutex
	recs []Record
}

func (r *recorder) add(rec Record) {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
}

func (r *recorder) all() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Record(nil), r.recs...)
}

// answer is a response as the workload reads it.
type answer struct {
	Status int
	Header http.Header
	Raw    []byte
	Data   map[string]any // the success envelope's data
	Code   string         // the error envelope's code
	Err    error          // no answer
}

// retryable: no answer, or an answer that says to try again. A 500 is
// retried too, as a client would, but the run counts it as a failure.
func (a answer) retryable() bool { return a.Err != nil || a.Status >= 500 }

// sender sends requests and records each.
type sender struct {
	hc  *http.Client
	rec *recorder
}

// send does one request. auth is the bearer user id ("" for presigned
// URLs, which carry no credentials).
func (s *sender) send(ctx context.Context, user, route, method, url string, body []byte, headers map[string]string, auth string) answer {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return answer{Err: err}
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	rec := Record{User: user, Route: route, Start: time.Now(), Direct: auth == ""}
	resp, err := s.hc.Do(req)
	var a answer
	if err == nil {
		a.Raw, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		a.Status, a.Header = resp.StatusCode, resp.Header
	}
	rec.Dur = time.Since(rec.Start)
	if err != nil {
		if ctx.Err() != nil {
			// The flow gave up (the run is ending): not the service's answer.
			return answer{Err: err}
		}
		a = answer{Err: err}
		rec.Status, rec.Code, rec.Body = 0, netErrorClass(err), err.Error()
		s.rec.add(rec)
		return a
	}
	rec.Status = a.Status
	var env struct {
		Data  map[string]any `json:"data"`
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(a.Raw, &env) == nil {
		a.Data, a.Code = env.Data, env.Error.Code
		if a.Code == "" && env.Message != "" && a.Status >= 400 {
			a.Code = "message: " + env.Message // API Gateway's own answers
		}
	} else if a.Status >= 300 {
		a.Code = s3ErrorCode(a.Raw)
	}
	rec.Code = a.Code
	if a.Status == http.StatusServiceUnavailable {
		rec.RetryAfter = a.Header.Get("Retry-After")
	}
	if rec.Failed() {
		rec.Body = string(a.Raw[:min(len(a.Raw), 400)])
	}
	s.rec.add(rec)
	return a
}

// s3ErrorCode is the <Code> of an S3 XML error body.
func s3ErrorCode(raw []byte) string {
	s := string(raw)
	i := strings.Index(s, "<Code>")
	j := strings.Index(s, "</Code>")
	if i < 0 || j < i {
		return "non-JSON body"
	}
	return "S3 " + s[i+len("<Code>"):j]
}

// netErrorClass names why a request got no answer, for counting.
func netErrorClass(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "client timeout"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	}
	return "transport error"
}
