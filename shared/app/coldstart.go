package app

import (
	"log/slog"
	"time"
)

// phases are the durations of a cold start's steps, logged once per
// process (the "cold start" line) so that what an init spends is
// visible in the function's logs, next to Lambda's Init Duration.
type phases []slog.Attr

// mark notes the time since *since as name, in milliseconds, and moves
// *since to now.
func (p *phases) mark(name string, since *time.Time) {
	now := time.Now()
	*p = append(*p, slog.Float64(name, float64(now.Sub(*since).Microseconds())/1000))
	*since = now
}

func anySlice(p phases) []any {
	out := make([]any, len(p))
	for i, a := range p {
		out[i] = a
	}
	return out
}
