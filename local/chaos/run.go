package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mocbuilders/moc-upload/local/devstack"
	"github.com/mocbuilders/moc-upload/local/gateway"
)

// Services are the real PostgreSQL database and S3 bucket the stack under
// test uses, each reached by the stack through a fault-injecting proxy
// and by the checks directly.
type Services struct {
	DatabaseURL string // an empty database; the run migrates it
	S3Endpoint  string // http://host:port, path-style
	AccessKey   string
	SecretKey   string
	Region      string
	Bucket      string // an existing bucket
}

// Config is one run.
type Config struct {
	Services
	Users int
	Plan  Plan
	// FunctionTimeout is each invocation's deadline, as Lambda gives it
	// to the handler's context (template.yaml's Timeout): the local
	// gateway's FunctionTimeout.
	FunctionTimeout time.Duration
	// NoInvocationDeadline leaves the requests' contexts without it: the
	// handlers then fall back on their own default, and the run shows
	// what the invocation's deadline is worth.
	NoInvocationDeadline bool
	// Bound is the longest any request to the API may take, faults or
	// not: the stack's own deadlines must answer (a retryable 503 at
	// worst) before it. Requests over it fail the run. Default
	// FunctionTimeout: past it, API Gateway would have cut the request.
	Bound time.Duration
	// PostgresOnlyBound is the longest a request whose handler never
	// calls S3 may take while S3 is faulty (default 5 s, half the S3
	// operation timeout): longer, and a request waiting on S3 held what
	// it needed, such as one of the pool's few database connections.
	PostgresOnlyBound time.Duration
	// ProbeEvery is how often a prober reads one MOC, a request that calls
	// only PostgreSQL, through the whole run (default 250 ms).
	ProbeEvery time.Duration
	// Settle is how long, after the last fault, the users get to finish
	// their last flow.
	Settle time.Duration
	// ClientTimeout cuts a request the stack never answers (default the
	// bound plus 10 s, so that a request over the bound is measured).
	ClientTimeout time.Duration
	// Seed makes the bytes the users send (and so the run) repeatable.
	Seed uint64
	// Env is added to the stack's environment.
	Env map[string]string
}

// Result is what a run did and found.
type Result struct {
	Config  Config
	Elapsed time.Duration
	Records []Record
	Faults  []Injected

	Flows       int
	FlowsFailed []FlowFailure
	// FinalErrors are the users whose flow after the faults failed.
	FinalErrors map[string]string

	Acks, Mocs  int      // acknowledged parts and whole files; MOCs
	BytesErrors []string // acknowledged parts or MOCs S3 does not hold as sent

	Orphans         map[string][]string
	MissingObjects  []string // MOC files whose object is not in S3 with its size
	MocFilesChecked int
}

// Slow are the requests to the API that took longer than the bound.
func (r *Result) Slow() []Record {
	var out []Record
	for _, rec := range r.Records {
		if !rec.Direct && rec.Dur > r.Config.Bound {
			out = append(out, rec)
		}
	}
	return out
}

// HeldBack are the requests that call only PostgreSQL, met a fault of S3
// and took longer than PostgresOnlyBound.
func (r *Result) HeldBack() []Record {
	var out []Record
	for _, rec := range r.Records {
		if f, ok := r.met(rec); ok && f.Target == TargetS3 && postgresOnly[rec.Route] && rec.Dur > r.Config.PostgresOnlyBound {
			out = append(out, rec)
		}
	}
	return out
}

// ServerErrors are the API's answers that break "no 500": any 5xx but a
// 503 that says when to retry (Retry-After).
func (r *Result) ServerErrors() []Record {
	var out []Record
	for _, rec := range r.Records {
		if !rec.Direct && rec.Status >= 500 && (rec.Status != http.StatusServiceUnavailable || rec.RetryAfter == "") {
			out = append(out, rec)
		}
	}
	return out
}

// Run starts the stack (the same handlers as `make local`) with its
// PostgreSQL and S3 behind toxiproxy, runs cfg.Users users through the
// whole flow while cfg.Plan's faults are injected, then, with every fault
// undone, checks S3 and the database directly. It returns an error only
// when the run itself could not be made; what the checks found is in the
// Result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.FunctionTimeout == 0 {
		cfg.FunctionTimeout = 30 * time.Second
	}
	if cfg.Bound == 0 {
		cfg.Bound = cfg.FunctionTimeout
	}
	if cfg.PostgresOnlyBound == 0 {
		cfg.PostgresOnlyBound = 5 * time.Second
	}
	if cfg.ProbeEvery == 0 {
		cfg.ProbeEvery = 250 * time.Millisecond
	}
	if cfg.ClientTimeout == 0 {
		cfg.ClientTimeout = cfg.Bound + 10*time.Second
	}
	pgURL, err := url.Parse(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	s3URL, err := url.Parse(cfg.S3Endpoint)
	if err != nil {
		return nil, fmt.Errorf("S3 endpoint: %w", err)
	}
	pgProxy, err := StartProxy(TargetPostgres, pgURL.Host)
	if err != nil {
		return nil, err
	}
	defer pgProxy.Close()
	s3Proxy, err := StartProxy(TargetS3, s3URL.Host)
	if err != nil {
		return nil, err
	}
	defer s3Proxy.Close()

	proxiedPG := *pgURL
	proxiedPG.Host = pgProxy.Addr()
	env := map[string]string{
		"DATABASE_URL":              proxiedPG.String(),
		"S3_ENDPOINT":               "http://" + s3Proxy.Addr(),
		"AWS_ACCESS_KEY_ID":         cfg.AccessKey,
		"AWS_SECRET_ACCESS_KEY":     cfg.SecretKey,
		"AWS_REGION":                cfg.Region,
		"S3_BUCKET":                 cfg.Bucket,
		"STAGE":                     "chaos",
		"UPLOAD_RATE_LIMIT_PER_DAY": "1000000",
	}
	for k, v := range cfg.Env {
		env[k] = v
	}
	st, err := devstack.Start(ctx, devstack.Options{Getenv: func(k string) string { return env[k] }})
	if err != nil {
		return nil, fmt.Errorf("start the stack: %w", err)
	}
	defer st.Close()
	timeout := cfg.FunctionTimeout
	if cfg.NoInvocationDeadline {
		timeout = -1
	}
	gw, err := st.Gateway(gateway.Options{PayloadLimits: true, FunctionTimeout: timeout})
	if err != nil {
		return nil, err
	}
	api := httptest.NewServer(gw)
	defer api.Close()

	db, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	s3c := s3.New(s3.Options{
		BaseEndpoint: aws.String(cfg.S3Endpoint), Region: cfg.Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, ""),
	})

	rec := &recorder{}
	snd := &sender{rec: rec, hc: &http.Client{
		Timeout:   cfg.ClientTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 4 * cfg.Users, IdleConnTimeout: 30 * time.Second},
	}}
	users := make([]*user, cfg.Users)
	for i := range users {
		users[i] = &user{
			id: fmt.Sprintf("chaos-u%02d", i+1), api: api.URL, s: snd,
			rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i))),
		}
	}

	started := time.Now()
	runCtx, cancel := context.WithTimeout(ctx, cfg.Plan.Duration()+cfg.Settle)
	defer cancel()
	stop := make(chan struct{})
	var faults []Injected
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(stop)
		faults = cfg.Plan.run(runCtx, map[string]*Proxy{TargetPostgres: pgProxy, TargetS3: s3Proxy})
	}()
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u.run(runCtx, stop)
		}()
	}
	prober := &user{id: "chaos-probe", api: api.URL, s: snd, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(len(users))))}
	wg.Add(1)
	go func() {
		defer wg.Done()
		prober.probe(runCtx, stop, cfg.ProbeEvery)
	}()
	wg.Wait()

	users = append(users, prober) // its flows and MOC are checked like the others'
	res := &Result{Config: cfg, Elapsed: time.Since(started), Records: rec.all(), Faults: faults, FinalErrors: map[string]string{}}
	slices.SortFunc(res.Records, func(a, b Record) int { return a.Start.Compare(b.Start) })
	for _, u := range users {
		res.Flows += u.flows
		res.FlowsFailed = append(res.FlowsFailed, u.failed...)
		if u.finalErr != nil && u != prober {
			res.FinalErrors[u.id] = u.finalErr.Error()
		}
	}
	return res, verify(ctx, res, users, db, s3c, cfg.Bucket)
}

// verify fills the result's checks of S3 and the database, read directly.
func verify(ctx context.Context, res *Result, users []*user, db *pgxpool.Pool, s3c *s3.Client, bucket string) error {
	for _, u := range users {
		res.Acks += len(u.acks)
		for i := 0; i < len(u.acks); {
			j := i + 1
			for j < len(u.acks) && u.acks[j].File == u.acks[i].File {
				j++
			}
			for _, err := range checkFileAcks(ctx, db, s3c, bucket, u.acks[i:j]) {
				res.BytesErrors = append(res.BytesErrors, err.Error())
			}
			i = j
		}
		for _, m := range u.mocs {
			res.Mocs++
			if err := checkMoc(ctx, db, s3c, bucket, m); err != nil {
				res.BytesErrors = append(res.BytesErrors, err.Error())
			}
		}
	}
	var err error
	if res.Orphans, err = Orphans(ctx, db); err != nil {
		return err
	}
	res.MissingObjects, res.MocFilesChecked, err = missingObjects(ctx, db, s3c, bucket)
	return err
}
