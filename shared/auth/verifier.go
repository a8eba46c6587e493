package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/httprc/v3/errsink"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

var (
	// ErrInvalidToken is the class of every refused token (missing,
	// malformed, badly signed, expired, wrong issuer or audience, no sub):
	// the client's fault, 401. The wrapped message says why, for the log;
	// it is never shown to the client.
	ErrInvalidToken = errors.New("auth: invalid token")
	// ErrKeysUnavailable is returned when the issuer's JWKS cannot be
	// fetched: the service's fault, not the token's.
	ErrKeysUnavailable = errors.New("auth: the issuer's keys are unavailable")
)

const (
	// maxTokenBytes bounds what is parsed: a JWT from an identity provider
	// is 1-2 KB; API Gateway limits the whole request line anyway.
	maxTokenBytes = 16 << 10
	// prefetchTimeout bounds the JWKS fetch at cold start (Lambda's init
	// phase has 10 s).
	prefetchTimeout = 5 * time.Second
	// forceBackoff is the least time between two refreshes forced by a
	// token (an unknown kid, or no keys yet).
	forceBackoff = 10 * time.Second
	// maxRefreshInterval is the longest a fetched JWKS is kept without
	// asking the issuer again, whatever its Cache-Control says.
	maxRefreshInterval = 12 * time.Hour
)

// Verifier verifies JWTs against an issuer's JWKS. Build one per process
// (NewVerifier) and share it: it is safe for concurrent use.
type Verifier struct {
	issuer    string
	audiences []string
	jwksURL   string
	leeway    time.Duration
	now       func() time.Time
	cache     *jwk.Cache
	cancel    context.CancelFunc

	mu         sync.Mutex
	lastForced time.Time // the last refresh forced by a token
}

// NewVerifier checks cfg, starts the JWKS cache and fetches the JWKS once
// (best effort: when the issuer cannot be reached now, Verify tries again
// and answers ErrKeysUnavailable meanwhile). Close stops the cache.
func NewVerifier(ctx context.Context, cfg Config) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	v := &Verifier{
		issuer:    cfg.Issuer,
		audiences: slices.Clone(cfg.Audiences),
		jwksURL:   cfg.jwksURL(),
		leeway:    cfg.Leeway,
		now:       cfg.Now,
	}
	if v.leeway == 0 {
		v.leeway = DefaultLeeway
	}
	if v.now == nil {
		v.now = time.Now
	}

	// The cache's goroutines live as long as the Verifier, not ctx. A
	// failed background fetch is logged (the cached keys stay in use) and
	// ends the wait for the first one.
	attempted := make(chan struct{})
	var once sync.Once
	sink := errsink.NewFunc(func(_ context.Context, err error) {
		slog.Warn("auth: fetching the JWKS failed", "jwksUrl", v.jwksURL, "err", err)
		once.Do(func() { close(attempted) })
	})
	cacheCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cache, err := jwk.NewCache(cacheCtx, httprc.NewClient(httprc.WithWorkers(1), httprc.WithErrorSink(sink)))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("auth: start the JWKS cache: %w", err)
	}
	v.cache, v.cancel = cache, cancel

	opts := []jwk.RegisterOption{jwk.WithMaxInterval(maxRefreshInterval), jwk.WithWaitReady(false)}
	if cfg.HTTPClient != nil {
		opts = append(opts, jwk.WithHTTPClient(jwk.WrapHTTPClientDefaults(cfg.HTTPClient)))
	}
	if err := cache.Register(cacheCtx, v.jwksURL, opts...); err != nil {
		v.Close()
		return nil, fmt.Errorf("auth: register the JWKS %s: %w", v.jwksURL, err)
	}
	// The cache fetches the keys now, in the background: wait for that
	// first fetch, or its failure, a little (cold start). Should it fail,
	// a token needing the keys fetches them again.
	pctx, pcancel := context.WithTimeout(ctx, prefetchTimeout)
	defer pcancel()
	if r, err := cache.LookupResource(pctx, v.jwksURL); err == nil {
		ready := make(chan struct{})
		go func() { _ = r.Ready(pctx); close(ready) }()
		select {
		case <-ready:
		case <-attempted:
		case <-pctx.Done():
		}
	}
	return v, nil
}

// JWKSURL is where the Verifier fetches the issuer's keys.
func (v *Verifier) JWKSURL() string { return v.jwksURL }

// Ready reports whether the JWKS has been fetched.
func (v *Verifier) Ready() bool { return v.cachedSet(context.Background()) != nil }

// Close stops the JWKS cache's goroutines.
func (v *Verifier) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = v.cache.Shutdown(ctx)
	v.cancel()
}

// Verify checks token (a compact JWS) and returns its `sub` claim, the
// user id. A refused token's error wraps ErrInvalidToken; keys that cannot
// be fetched give ErrKeysUnavailable.
func (v *Verifier) Verify(ctx context.Context, token string) (string, error) {
	if token == "" {
		return "", fmt.Errorf("%w: no token", ErrInvalidToken)
	}
	if len(token) > maxTokenBytes {
		return "", fmt.Errorf("%w: token of %d bytes", ErrInvalidToken, len(token))
	}
	msg, err := jws.Parse([]byte(token), jws.WithCompact())
	if err != nil {
		return "", fmt.Errorf("%w: not a JWS: %v", ErrInvalidToken, err)
	}
	if n := len(msg.Signatures()); n != 1 {
		return "", fmt.Errorf("%w: %d signatures", ErrInvalidToken, n)
	}
	kid, _ := msg.Signatures()[0].ProtectedHeaders().KeyID()
	if kid == "" {
		return "", fmt.Errorf("%w: no kid in the header", ErrInvalidToken)
	}

	set, err := v.keysFor(ctx, kid)
	if err != nil {
		return "", err
	}
	tok, err := jwt.Parse([]byte(token),
		// The key the kid names, with the algorithm the JWKS gives it
		// (inferred from the key type when the JWKS omits alg, as some
		// providers' do); never "none", never a secret key.
		jwt.WithKeySet(set, jws.WithInferAlgorithmFromKey(true)),
		jwt.WithValidate(true),
		jwt.WithClock(jwt.ClockFunc(v.now)),
		jwt.WithAcceptableSkew(v.leeway),
		jwt.WithIssuer(v.issuer),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithValidator(jwt.ValidatorFunc(v.checkAudience)),
	)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	sub, _ := tok.Subject()
	if sub == "" {
		return "", fmt.Errorf("%w: no sub", ErrInvalidToken)
	}
	return sub, nil
}

// checkAudience accepts a token whose aud has one of the audiences or,
// without aud, whose client_id is one of them (Cognito's access tokens),
// as API Gateway's JWT authorizer does.
func (v *Verifier) checkAudience(_ context.Context, tok jwt.Token) error {
	if aud, ok := tok.Audience(); ok && len(aud) > 0 {
		for _, a := range aud {
			if slices.Contains(v.audiences, a) {
				return nil
			}
		}
		return fmt.Errorf("aud %q is not an accepted audience", aud)
	}
	var clientID string
	if err := tok.Get("client_id", &clientID); err == nil && slices.Contains(v.audiences, clientID) {
		return nil
	}
	return errors.New("no accepted aud or client_id")
}

// keysFor returns the cached JWKS when it has kid; otherwise (the issuer
// rotated its keys, or the keys could not be fetched yet) it refreshes the
// JWKS first, at most once per forceBackoff.
func (v *Verifier) keysFor(ctx context.Context, kid string) (jwk.Set, error) {
	set := v.cachedSet(ctx)
	if set != nil {
		if _, ok := set.LookupKeyID(kid); ok {
			return set, nil
		}
	}
	if v.mayForce() {
		if fresh, err := v.cache.Refresh(ctx, v.jwksURL); err == nil {
			set = fresh
		} else if set == nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrKeysUnavailable, v.jwksURL, err)
		}
	}
	if set == nil {
		return nil, fmt.Errorf("%w: %s not fetched yet", ErrKeysUnavailable, v.jwksURL)
	}
	// jwt.Parse says no when the kid is still unknown.
	return set, nil
}

// cachedSet is the last JWKS fetched, nil before the first.
func (v *Verifier) cachedSet(ctx context.Context) jwk.Set {
	r, err := v.cache.LookupResource(ctx, v.jwksURL)
	if err != nil {
		return nil
	}
	return r.Resource()
}

// mayForce reports whether a token may force a refresh now, and if so
// records that it does.
func (v *Verifier) mayForce() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	if since := now.Sub(v.lastForced); !v.lastForced.IsZero() && since >= 0 && since < forceBackoff {
		return false
	}
	v.lastForced = now
	return true
}
