package webhook

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Defaults of a Sender's fields.
const (
	DefaultBaseDelay      = time.Second
	DefaultAttempts       = 4
	DefaultAttemptTimeout = 10 * time.Second
	DefaultMaxRetryAfter  = 30 * time.Second
)

// UserAgent is the User-Agent of every request.
const UserAgent = "moc-upload-webhook/1.0"

// bodySnippet is how much of a failed answer's body is kept for the log
// and the error; drainLimit is how much is read to reuse the connection.
const (
	bodySnippet = 256
	drainLimit  = 64 << 10
)

var (
	// ErrExhausted is a delivery that failed on every attempt.
	ErrExhausted = errors.New("webhook: delivery failed on every attempt")
	// ErrRejected is a delivery the receiver refused with a status that is
	// not retried (a 4xx other than 408 and 429, or a 3xx).
	ErrRejected = errors.New("webhook: delivery rejected by the receiver")
)

// StatusError is a receiver's answer outside 2xx. Errors returned by
// Deliver wrap the last one, so errors.As finds its status.
type StatusError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Body is the start of the answer's body (at most 256 bytes).
	Body string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("receiver answered %d", e.StatusCode)
	}
	return fmt.Sprintf("receiver answered %d: %q", e.StatusCode, e.Body)
}

// Sender delivers webhooks to one receiver. Set its fields (or use New)
// before first use and do not change them afterwards; one Sender may then
// deliver from several goroutines at once.
type Sender struct {
	// URL is the receiver's absolute http(s) URL (required).
	URL string
	// Secret, when set, signs every request: "whsec_" and the standard
	// base64 of 24 to 64 bytes. Empty sends unsigned requests.
	Secret string
	// Client sends the requests; nil means a client that does not follow
	// redirects (the spec counts a 3xx as a failure).
	Client *http.Client
	// BaseDelay is the wait after the first failed attempt; each further
	// wait doubles it (default DefaultBaseDelay, 1 s: waits 1 s, 2 s, 4 s).
	BaseDelay time.Duration
	// Attempts is the most attempts made, the first included (default
	// DefaultAttempts, 4).
	Attempts int
	// AttemptTimeout bounds one attempt, from sending the request to
	// reading the answer (default DefaultAttemptTimeout, 10 s).
	AttemptTimeout time.Duration
	// MaxRetryAfter caps the wait a 429 or 503 asks for with Retry-After
	// (default DefaultMaxRetryAfter, 30 s). A wait is never shorter than
	// the backoff's.
	MaxRetryAfter time.Duration
	// Logger receives one WARN per failed attempt and one ERROR when
	// delivery is given up (default slog.Default()).
	Logger *slog.Logger
}

// New returns a Sender for url, signing with secret when it is not empty,
// with the default delays and attempts; it checks url and secret first
// (ErrConfig).
func New(url, secret string) (*Sender, error) {
	s := &Sender{URL: url, Secret: secret}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sender) check() error {
	u, err := url.Parse(s.URL)
	if s.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: the URL must be an absolute http or https URL", ErrConfig)
	}
	if s.Secret != "" {
		return CheckSecret(s.Secret)
	}
	return nil
}

var noRedirects = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Deliver POSTs p to the receiver, with webhook-id id on every attempt
// (the event's unique id, such as its outbox row's id: no dots, spaces or
// control characters), and retries as the package documentation says. It
// returns nil once the receiver answered 2xx; an error wrapping
// ErrExhausted or ErrRejected (and the last *StatusError, if any) when it
// gave up; the context's error, wrapped, when ctx ended first; ErrConfig
// or a payload error before sending anything.
func (s *Sender) Deliver(ctx context.Context, id string, p Payload) error {
	if err := s.check(); err != nil {
		return err
	}
	if id == "" || strings.ContainsFunc(id, func(r rune) bool { return r == '.' || unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return fmt.Errorf("webhook: id %q: want a non-empty id without dots, spaces or control characters", id)
	}
	if p.MocID == "" || p.Timestamp.IsZero() {
		return errors.New("webhook: the payload needs a mocId and a timestamp")
	}
	body, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("webhook: encode payload: %w", err)
	}

	client := s.Client
	if client == nil {
		client = noRedirects
	}
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With(slog.String("event", orDefault(p.Event, EventMocFinalized)), slog.String("mocId", p.MocID), slog.String("webhookId", id))
	attempts := orDefault(s.Attempts, DefaultAttempts)
	base := orDefault(s.BaseDelay, DefaultBaseDelay)
	maxRetryAfter := orDefault(s.MaxRetryAfter, DefaultMaxRetryAfter)

	var last error
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return stopped(ctx, log, p.MocID, attempt-1, err, last)
		}
		res := s.attempt(ctx, client, id, body)
		if res.err == nil {
			if attempt > 1 {
				log.InfoContext(ctx, "webhook delivered", slog.Int("attempt", attempt))
			}
			return nil
		}
		if ctx.Err() != nil { // the caller's context ended during the attempt
			return stopped(ctx, log, p.MocID, attempt, ctx.Err(), last)
		}
		last = lastErr(res)
		attrs := []any{slog.Int("attempt", attempt), slog.Int("attempts", attempts)}
		if res.status != 0 {
			attrs = append(attrs, slog.Int("status", res.status))
		}
		attrs = append(attrs, slog.String("error", res.err.Error()))

		if !res.retry {
			log.WarnContext(ctx, "webhook attempt failed", attrs...)
			log.ErrorContext(ctx, "webhook rejected: not retried", slog.Int("attempt", attempt), slog.Int("status", res.status), slog.String("error", res.err.Error()))
			return fmt.Errorf("%w: moc %s: %w", ErrRejected, p.MocID, res.err) // a *StatusError
		}
		if attempt >= attempts {
			log.WarnContext(ctx, "webhook attempt failed", attrs...)
			log.ErrorContext(ctx, "webhook delivery failed: attempts exhausted", slog.Int("attempts", attempt), slog.String("error", res.err.Error()))
			return fmt.Errorf("%w: moc %s, %d attempts: %w", ErrExhausted, p.MocID, attempt, last)
		}

		wait := base << min(attempt-1, 20)
		if res.retryAfter > wait {
			wait = max(wait, min(res.retryAfter, maxRetryAfter))
		}
		log.WarnContext(ctx, "webhook attempt failed", append(attrs, slog.Duration("retryIn", wait))...)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= wait {
			return stopped(ctx, log, p.MocID, attempt, context.DeadlineExceeded, last)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return stopped(ctx, log, p.MocID, attempt, ctx.Err(), last)
		case <-t.C:
		}
	}
}

// stopped reports a delivery that ctx ended: not given up, so a WARN.
func stopped(ctx context.Context, log *slog.Logger, mocID string, attempts int, cause, last error) error {
	log.WarnContext(ctx, "webhook delivery stopped by its context", slog.Int("attempts", attempts), slog.String("cause", cause.Error()))
	if last == nil {
		return fmt.Errorf("webhook: moc %s: stopped after %d attempts: %w", mocID, attempts, cause)
	}
	return fmt.Errorf("webhook: moc %s: stopped after %d attempts: %w (last attempt: %w)", mocID, attempts, cause, last)
}

// lastErr is what an error that gives up wraps of the last attempt's: its
// *StatusError, findable with errors.As; a network error or attempt
// timeout only as text, so that errors.Is(err, context.DeadlineExceeded)
// means the caller's context ended, never an attempt's timeout.
func lastErr(r result) error {
	if r.status != 0 {
		return r.err
	}
	return errors.New(r.err.Error())
}

type result struct {
	err        error
	status     int
	retry      bool
	retryAfter time.Duration
}

// attempt makes one request, signed at its own time.
func (s *Sender) attempt(ctx context.Context, client *http.Client, id string, body []byte) result {
	ctx, cancel := context.WithTimeout(ctx, orDefault(s.AttemptTimeout, DefaultAttemptTimeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		return result{err: err}
	}
	now := time.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	if s.Secret != "" {
		sig, err := Sign(s.Secret, id, now, body)
		if err != nil {
			return result{err: err}
		}
		req.Header.Set(HeaderSignature, sig)
	}

	resp, err := client.Do(req)
	if err != nil { // a network error or the attempt's timeout
		var ue *url.Error
		if errors.As(err, &ue) { // without the URL, which may hold a token
			err = fmt.Errorf("%s: %w", ue.Op, ue.Err)
		}
		return result{err: err, retry: true}
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, bodySnippet))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return result{}
	}
	r := result{
		err:    &StatusError{StatusCode: resp.StatusCode, Body: strings.ToValidUTF8(string(head), "")},
		status: resp.StatusCode,
	}
	switch code := resp.StatusCode; {
	case code >= 500, code == http.StatusTooManyRequests, code == http.StatusRequestTimeout:
		r.retry = true
	}
	if r.status == http.StatusTooManyRequests || r.status == http.StatusServiceUnavailable {
		r.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return r
}

// parseRetryAfter reads a Retry-After value, delay-seconds or an HTTP
// date; anything else, or a time past, is 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// orDefault returns v, or def when v is the zero value or negative.
func orDefault[T cmp.Ordered](v, def T) T {
	var zero T
	if v <= zero {
		return def
	}
	return v
}
