package chaos

import (
	"context"
	"time"
)

// Fault is one fault of a plan: Kind on the proxy of Target ("postgres"
// or "s3") for Window.
type Fault struct {
	Target string
	Kind   Kind
	Window time.Duration
}

// Injected is a fault as it happened.
type Injected struct {
	Fault
	Start, End time.Time
	Err        error // injecting or undoing it failed
}

// Plan is the faults a run injects, one after another, with Gap of calm
// before each.
type Plan struct {
	Faults []Fault
	Gap    time.Duration
}

// EveryFault is each kind of fault on each target, with the window each
// kind gets; freeze is the longest, since it is what must outlast the
// stack's own deadlines.
func EveryFault(latency, reset, freeze, restart time.Duration) []Fault {
	windows := map[Kind]time.Duration{Latency: latency, Reset: reset, Freeze: freeze, Restart: restart}
	var fs []Fault
	for _, target := range []string{TargetS3, TargetPostgres} {
		for _, k := range Kinds {
			fs = append(fs, Fault{Target: target, Kind: k, Window: windows[k]})
		}
	}
	return fs
}

// The targets of faults.
const (
	TargetS3       = "s3"
	TargetPostgres = "postgres"
)

// Duration is how long the plan runs.
func (p Plan) Duration() time.Duration {
	var d time.Duration
	for _, f := range p.Faults {
		d += p.Gap + f.Window
	}
	return d
}

// run injects the plan's faults on proxies (by target) until done or ctx
// ends, and returns what it injected. A fault is always undone, even when
// ctx ends during it.
func (p Plan) run(ctx context.Context, proxies map[string]*Proxy) []Injected {
	var out []Injected
	for _, f := range p.Faults {
		if !sleep(ctx, p.Gap) {
			break
		}
		in := Injected{Fault: f, Start: time.Now()}
		undo, err := proxies[f.Target].Inject(f.Kind, f.Window)
		if err != nil {
			in.Err, in.End = err, time.Now()
			out = append(out, in)
			continue
		}
		sleep(ctx, f.Window)
		in.Err, in.End = undo(), time.Now()
		out = append(out, in)
	}
	return out
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
