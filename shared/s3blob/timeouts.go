package s3blob

import (
	"context"
	"io"
	"time"
)

// Every call to S3 has a deadline: a frozen store (one that accepts the
// connection and never answers) must not hold a request, and the database
// connection it may hold, for as long as it stays frozen. The deadline is
// the call's timeout (Config.OperationTimeout or TransferTimeout, every
// attempt of the SDK's retryer included), or the caller's deadline less
// Config.DeadlineReserve when that comes first. On Lambda the caller's
// context carries the invocation's deadline, so a call ends in time for
// the function to answer a retryable 503 (the deadline's error wraps
// upload.ErrUnavailable) before Lambda stops it.

// bound returns ctx with the deadline of a call that may take timeout.
func (b *Blob) bound(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok {
		// A short remaining time keeps three quarters of itself for the call.
		reserve := min(b.cfg.DeadlineReserve, time.Until(d)/4)
		deadline = earlier(deadline, d.Add(-reserve))
	}
	return context.WithDeadline(ctx, deadline)
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// boundBody is an object body whose call's deadline lasts until it is
// closed. A read that fails for the deadline wraps upload.ErrUnavailable.
type boundBody struct {
	io.ReadCloser
	key    string
	cancel context.CancelFunc
}

func (r *boundBody) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = wrap(err, "s3: read %s", r.key)
	}
	return n, err
}

func (r *boundBody) Close() error {
	defer r.cancel()
	return r.ReadCloser.Close()
}
