package chaos

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// postgresOnly are the routes whose handlers call PostgreSQL and never
// S3 (PresignParts does when no part numbers are listed; the workload
// always lists them).
var postgresOnly = map[string]bool{"POST create session": true, "POST presign parts": true, "GET moc": true, probeRoute: true}

// percentile is the p-th percentile (0..100) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

// met is the fault a request met: the first one active at some moment
// between the request's start and its end.
func (r *Result) met(rec Record) (Injected, bool) {
	end := rec.Start.Add(rec.Dur)
	for _, f := range r.Faults {
		if rec.Start.Before(f.End) && !end.Before(f.Start) {
			return f, true
		}
	}
	return Injected{}, false
}

// Met is how many requests met fault f.
func (r *Result) Met(f Injected) int {
	n := 0
	for _, rec := range r.Records {
		if in, ok := r.met(rec); ok && in.Start.Equal(f.Start) {
			n++
		}
	}
	return n
}

// WriteReport writes the run's figures as Markdown: the requests by route
// with p50/p95/max, the answers by status and code, each fault with what
// the requests sent during it got, and the checks.
func (r *Result) WriteReport(w io.Writer) {
	c := r.Config
	deadline := c.FunctionTimeout.String()
	if c.NoInvocationDeadline {
		deadline = "none"
	}
	fmt.Fprintf(w, "%d users, %d faults over %s, %d requests in %s; invocation deadline %s, request bound %s.\n\n",
		c.Users, len(r.Faults), c.Plan.Duration().Round(time.Second), len(r.Records), r.Elapsed.Round(time.Second), deadline, c.Bound)

	byRoute := map[string][]time.Duration{}
	var all []time.Duration
	fails := map[string]int{}
	for _, rec := range r.Records {
		byRoute[rec.Route] = append(byRoute[rec.Route], rec.Dur)
		all = append(all, rec.Dur)
		if rec.Failed() {
			fails[rec.Route]++
		}
	}
	fmt.Fprintln(w, "| route | requests | not 2xx | p50 | p95 | max |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	for _, route := range slices.Sorted(maps.Keys(byRoute)) {
		ds := byRoute[route]
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s |\n", route, len(ds), fails[route], ms(percentile(ds, 50)), ms(percentile(ds, 95)), ms(percentile(ds, 100)))
	}
	fmt.Fprintf(w, "| **all** | %d | %d | %s | %s | %s |\n\n", len(all), sumValues(fails), ms(percentile(all, 50)), ms(percentile(all, 95)), ms(percentile(all, 100)))

	outcomes := map[string]int{}
	for _, rec := range r.Records {
		if rec.Failed() {
			outcomes[rec.Outcome()]++
		}
	}
	fmt.Fprintln(w, "| answers that were not 2xx | count |")
	fmt.Fprintln(w, "|---|---:|")
	for _, k := range sortedByCount(outcomes) {
		fmt.Fprintf(w, "| %s | %d |\n", k, outcomes[k])
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "| fault | window | API requests that met it | not 2xx | p95 | max | presigned PUTs that met it | failed |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, f := range r.Faults {
		var ds []time.Duration
		bad, direct, directBad := 0, 0, 0
		for _, rec := range r.Records {
			if in, ok := r.met(rec); !ok || !in.Start.Equal(f.Start) {
				continue
			}
			if rec.Direct {
				direct++
				if rec.Failed() {
					directBad++
				}
				continue
			}
			ds = append(ds, rec.Dur)
			if rec.Failed() {
				bad++
			}
		}
		name := f.Target + " " + string(f.Kind)
		if f.Err != nil {
			name += " (" + f.Err.Error() + ")"
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d | %s | %s | %d | %d |\n", name, f.Window, len(ds), bad, ms(percentile(ds, 95)), ms(percentile(ds, 100)), direct, directBad)
	}
	fmt.Fprintln(w)

	// Requests whose handlers never call S3, while S3 was faulty: they are
	// slow only when a request waiting on S3 holds what they need, such
	// as a pooled database connection.
	fmt.Fprintln(w, "| requests that call only PostgreSQL (create session, presign listed parts, GET moc, the probe's), by S3 fault met | requests | p95 | max |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	for _, f := range r.Faults {
		if f.Target != TargetS3 {
			continue
		}
		var ds []time.Duration
		for _, rec := range r.Records {
			if in, ok := r.met(rec); ok && in.Start.Equal(f.Start) && postgresOnly[rec.Route] {
				ds = append(ds, rec.Dur)
			}
		}
		fmt.Fprintf(w, "| s3 %s | %d | %s | %s |\n", f.Kind, len(ds), ms(percentile(ds, 95)), ms(percentile(ds, 100)))
	}
	fmt.Fprintln(w)

	// The slowest requests to the API, with the fault each met: where the
	// waits are, and what a deadline cut.
	api := slices.DeleteFunc(slices.Clone(r.Records), func(rec Record) bool { return rec.Direct })
	slices.SortStableFunc(api, func(a, b Record) int { return cmp.Compare(b.Dur, a.Dur) })
	fmt.Fprintln(w, "| slowest API requests | fault met | answer | took |")
	fmt.Fprintln(w, "|---|---|---|---:|")
	for _, rec := range api[:min(len(api), 10)] {
		fault := "none"
		if f, ok := r.met(rec); ok {
			fault = fmt.Sprintf("%s %s (sent %s it began)", f.Target, f.Kind, relative(rec.Start.Sub(f.Start)))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", rec.Route, fault, rec.Outcome(), ms(rec.Dur))
	}
	fmt.Fprintln(w)

	fmt.Fprintf(w, "Flows: %d (%d stopped by an answer, %d users' last flow after the faults failed). "+
		"Acknowledged: %d parts or whole files, %d MOCs; %d differ or are missing. "+
		"MOC files checked in S3: %d, missing: %d. Orphan rows: %d. Requests to the API over %s: %d. "+
		"Requests calling only PostgreSQL over %s while S3 was faulty: %d. "+
		"Answers of the API that were a 5xx other than 503 with Retry-After: %d.\n",
		r.Flows, len(r.FlowsFailed), len(r.FinalErrors), r.Acks, r.Mocs, len(r.BytesErrors),
		r.MocFilesChecked, len(r.MissingObjects), countOrphans(r.Orphans), c.Bound, len(r.Slow()),
		c.PostgresOnlyBound, len(r.HeldBack()), len(r.ServerErrors()))
}

// Findings lists, for each check that failed, what failed it, precisely
// enough to reproduce: requests grouped by route, the fault they met and
// their answer, with how many, the longest, and one body.
func (r *Result) Findings() map[string][]string {
	out := map[string][]string{}
	out[CheckNo500] = r.grouped(r.ServerErrors())
	out[CheckDeadline] = r.grouped(r.Slow())
	out[CheckHeldBack] = r.grouped(r.HeldBack())
	out[CheckBytes] = r.BytesErrors[:min(len(r.BytesErrors), 10)]
	for _, name := range slices.Sorted(maps.Keys(r.Orphans)) {
		ids := r.Orphans[name]
		out[CheckOrphans] = append(out[CheckOrphans], fmt.Sprintf("%s: %d (%s)", name, len(ids), strings.Join(ids[:min(3, len(ids))], ", ")))
	}
	for _, m := range r.MissingObjects[:min(len(r.MissingObjects), 10)] {
		out[CheckOrphans] = append(out[CheckOrphans], "MOC file without its object: "+m)
	}
	for _, u := range slices.Sorted(maps.Keys(r.FinalErrors)) {
		out[CheckRecovery] = append(out[CheckRecovery], u+": "+r.FinalErrors[u])
	}
	for k, v := range out {
		if len(v) == 0 {
			delete(out, k)
		}
	}
	return out
}

// grouped summarises recs by route, fault met and answer.
func (r *Result) grouped(recs []Record) []string {
	type group struct {
		n       int
		longest Record
	}
	groups := map[string]*group{}
	for _, rec := range recs {
		fault := "no fault"
		if f, ok := r.met(rec); ok {
			fault = f.Target + " " + string(f.Kind)
		}
		key := fmt.Sprintf("%s during %s: %s", rec.Route, fault, rec.Outcome())
		g := groups[key]
		if g == nil {
			g = &group{}
			groups[key] = g
		}
		g.n++
		if rec.Dur >= g.longest.Dur {
			g.longest = rec
		}
	}
	var out []string
	for _, key := range slices.Sorted(maps.Keys(groups)) {
		g := groups[key]
		line := fmt.Sprintf("%s ×%d, longest %s", key, g.n, ms(g.longest.Dur))
		if f, ok := r.met(g.longest); ok {
			line += fmt.Sprintf(" (sent %s the fault began)", relative(g.longest.Start.Sub(f.Start)))
		}
		if b := strings.TrimSpace(g.longest.Body); b != "" {
			line += "; body " + b
		}
		out = append(out, line)
	}
	return out
}

// relative says d as "N ms after" or "N ms before".
func relative(d time.Duration) string {
	if d < 0 {
		return ms(-d) + " before"
	}
	return ms(d) + " after"
}

// The checks a run makes, by name.
const (
	CheckBytes    = "acknowledged bytes"
	CheckDeadline = "request bound"
	CheckNo500    = "no 500"
	CheckOrphans  = "no orphans"
	CheckRecovery = "recovery"
	CheckHeldBack = "database free while S3 waits"
)

// Checks lists them.
var Checks = []string{CheckBytes, CheckDeadline, CheckHeldBack, CheckNo500, CheckOrphans, CheckRecovery}

func countOrphans(m map[string][]string) int {
	n := 0
	for _, ids := range m {
		n += len(ids)
	}
	return n
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func sortedByCount(m map[string]int) []string {
	keys := slices.Collect(maps.Keys(m))
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}
