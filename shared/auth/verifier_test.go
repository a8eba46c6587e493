package auth_test

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/shared/auth"
	"github.com/mocbuilders/moc-upload/shared/auth/authtest"
)

const (
	user     = "dev-user-00000000-0000-0000-0000-000000000001"
	audience = "web-client"
)

// clock is a settable clock for the Verifier (token times stay real).
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newVerifier(t *testing.T, cfg auth.Config) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func TestVerify(t *testing.T) {
	iss := authtest.NewIssuer(t)
	other := authtest.NewKey(t, iss.Key.KID) // same kid, another key
	stranger := authtest.NewKey(t, "not-in-the-jwks")
	v := newVerifier(t, auth.Config{Issuer: iss.URL, Audiences: []string{"another-client", audience}})
	now := time.Now()

	withoutAud := iss.Claims(user, audience)
	delete(withoutAud, "aud")
	withoutSub := iss.Claims(user, audience)
	delete(withoutSub, "sub")
	withoutExp := iss.Claims(user, audience)
	delete(withoutExp, "exp")
	withoutIss := iss.Claims(user, audience)
	delete(withoutIss, "iss")
	clientOnly := iss.Claims(user, audience)
	delete(clientOnly, "aud")
	clientOnly["client_id"] = audience
	unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"test-key-1"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"`+user+`","iss":"`+iss.URL+`","aud":"`+audience+`","exp":9999999999}`)) + "."
	good := iss.Token(t, user, audience, nil)
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"someone-else","iss":"`+iss.URL+`","aud":"`+audience+`","exp":9999999999}`)) + "." + parts[2]

	for _, tc := range []struct {
		name, token string
		wantErr     error // nil: accepted as user
	}{
		{"good", good, nil},
		{"second of the audiences", iss.Token(t, user, "another-client", nil), nil},
		{"one of several aud values", iss.Token(t, user, "x", map[string]any{"aud": []string{"x", audience}}), nil},
		{"client_id without aud (Cognito access token)", iss.Key.Sign(t, clientOnly), nil},
		{"expired within the leeway", iss.Token(t, user, audience, map[string]any{"exp": now.Add(-10 * time.Second)}), nil},
		{"expired", iss.Token(t, user, audience, map[string]any{"exp": now.Add(-2 * time.Minute)}), auth.ErrInvalidToken},
		{"not valid yet", iss.Token(t, user, audience, map[string]any{"nbf": now.Add(5 * time.Minute)}), auth.ErrInvalidToken},
		{"issued in the future", iss.Token(t, user, audience, map[string]any{"iat": now.Add(5 * time.Minute)}), auth.ErrInvalidToken},
		{"wrong audience", iss.Token(t, user, "someone-elses-client", nil), auth.ErrInvalidToken},
		{"no audience", iss.Key.Sign(t, withoutAud), auth.ErrInvalidToken},
		{"wrong client_id", iss.Key.Sign(t, map[string]any{"iss": iss.URL, "sub": user, "client_id": "other", "exp": now.Add(time.Hour)}), auth.ErrInvalidToken},
		{"wrong issuer", iss.Token(t, user, audience, map[string]any{"iss": "https://evil.example"}), auth.ErrInvalidToken},
		{"issuer with a trailing slash", iss.Token(t, user, audience, map[string]any{"iss": iss.URL + "/"}), auth.ErrInvalidToken},
		{"signed by another key with the same kid", other.Sign(t, iss.Claims(user, audience)), auth.ErrInvalidToken},
		{"signed by a key not in the JWKS", stranger.Sign(t, iss.Claims(user, audience)), auth.ErrInvalidToken},
		{"tampered payload", tampered, auth.ErrInvalidToken},
		{"alg none", unsigned, auth.ErrInvalidToken},
		{"no sub", iss.Key.Sign(t, withoutSub), auth.ErrInvalidToken},
		{"no exp", iss.Key.Sign(t, withoutExp), auth.ErrInvalidToken},
		{"no iss", iss.Key.Sign(t, withoutIss), auth.ErrInvalidToken},
		{"empty sub", iss.Token(t, "", audience, nil), auth.ErrInvalidToken},
		{"missing", "", auth.ErrInvalidToken},
		{"garbage", "not-a-jwt", auth.ErrInvalidToken},
		{"three parts of garbage", "a.b.c", auth.ErrInvalidToken},
		{"huge", strings.Repeat("a", 20000), auth.ErrInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.Verify(t.Context(), tc.token)
			if tc.wantErr == nil {
				if err != nil || got != user {
					t.Fatalf("Verify = %q, %v; want %q", got, err, user)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || got != "" {
				t.Fatalf("Verify = %q, %v; want error %v", got, err, tc.wantErr)
			}
		})
	}
}

// The JWKS is fetched once, at NewVerifier, and then served from the cache.
func TestJWKSFetchedOnceAndCached(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v := newVerifier(t, auth.Config{Issuer: iss.URL, Audiences: []string{audience}})
	if got := iss.JWKSRequests(); got != 1 {
		t.Fatalf("after NewVerifier: %d JWKS requests, want 1 (fetched at cold start)", got)
	}
	for i := range 20 {
		if _, err := v.Verify(t.Context(), iss.Token(t, user, audience, nil)); err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
		if _, err := v.Verify(t.Context(), iss.Token(t, user, "wrong", nil)); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("bad token %d: %v", i, err)
		}
	}
	if got := iss.JWKSRequests(); got != 1 {
		t.Errorf("after 40 verifications: %d JWKS requests, want 1", got)
	}
}

// A token whose kid is not in the cached JWKS makes the Verifier fetch it
// again (the issuer rotated its keys), but at most once per backoff
// period, whatever the tokens say.
func TestUnknownKeyRefreshesAtMostOncePerBackoff(t *testing.T) {
	iss := authtest.NewIssuer(t)
	clk := newClock()
	v := newVerifier(t, auth.Config{Issuer: iss.URL, Audiences: []string{audience}, Now: clk.Now})
	claims := iss.Claims(user, audience)

	// Made-up key ids: one refresh, then none until the backoff is over.
	for i := range 5 {
		stranger := authtest.NewKey(t, "unknown-"+string(rune('a'+i)))
		if _, err := v.Verify(t.Context(), stranger.Sign(t, claims)); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("unknown kid: %v, want ErrInvalidToken", err)
		}
	}
	if got := iss.JWKSRequests(); got != 2 {
		t.Errorf("after 5 unknown kids: %d JWKS requests, want 2 (cold start + one refresh)", got)
	}

	// The issuer rotates: the new key's tokens are accepted once the
	// backoff allows a refresh.
	rotated := authtest.NewKey(t, "test-key-2")
	iss.SetKeys(iss.Key, rotated)
	if _, err := v.Verify(t.Context(), rotated.Sign(t, claims)); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("new key within the backoff: %v, want ErrInvalidToken (not refreshed yet)", err)
	}
	clk.Advance(11 * time.Second)
	if got, err := v.Verify(t.Context(), rotated.Sign(t, claims)); err != nil || got != user {
		t.Fatalf("new key after the backoff: %q, %v", got, err)
	}
	if got := iss.JWKSRequests(); got != 3 {
		t.Errorf("after the rotation: %d JWKS requests, want 3", got)
	}
	// And both keys are now known: no more fetches.
	for _, k := range []*authtest.Key{iss.Key, rotated} {
		if _, err := v.Verify(t.Context(), k.Sign(t, claims)); err != nil {
			t.Fatalf("%s: %v", k.KID, err)
		}
	}
	if got := iss.JWKSRequests(); got != 3 {
		t.Errorf("%d JWKS requests, want still 3", got)
	}
}

// A JWKS that cannot be fetched is the service's fault, not the token's;
// once it can be, tokens are verified.
func TestKeysUnavailable(t *testing.T) {
	iss := authtest.NewIssuer(t)
	var down sync.Mutex
	failing := true
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		down.Lock()
		f := failing
		down.Unlock()
		if f {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		http.Redirect(w, r, iss.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(proxy.Close)
	clk := newClock()
	v := newVerifier(t, auth.Config{Issuer: iss.URL, JWKSURL: proxy.URL + "/.well-known/jwks.json", Audiences: []string{audience}, Now: clk.Now})
	if v.Ready() {
		t.Fatal("Ready with a JWKS that answers 503")
	}
	_, err := v.Verify(t.Context(), iss.Token(t, user, audience, nil))
	if !errors.Is(err, auth.ErrKeysUnavailable) || errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("Verify = %v, want ErrKeysUnavailable", err)
	}
	// A bad token is still refused as such, without the keys.
	if _, err := v.Verify(t.Context(), "garbage"); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("garbage: %v", err)
	}

	down.Lock()
	failing = false
	down.Unlock()
	clk.Advance(11 * time.Second)
	if got, err := v.Verify(t.Context(), iss.Token(t, user, audience, nil)); err != nil || got != user {
		t.Fatalf("after the JWKS came back: %q, %v", got, err)
	}
}

// JWKS_URL replaces the issuer's well-known location.
func TestJWKSURL(t *testing.T) {
	iss := authtest.NewIssuer(t)
	v := newVerifier(t, auth.Config{Issuer: "https://issuer.example/pool", JWKSURL: iss.URL + "/.well-known/jwks.json", Audiences: []string{audience}})
	if got := v.JWKSURL(); got != iss.URL+"/.well-known/jwks.json" {
		t.Errorf("JWKSURL = %q", got)
	}
	tok := iss.Token(t, user, audience, map[string]any{"iss": "https://issuer.example/pool"})
	if got, err := v.Verify(t.Context(), tok); err != nil || got != user {
		t.Fatalf("Verify = %q, %v", got, err)
	}

	// Without JWKS_URL, the keys are at the issuer's well-known location
	// (a trailing slash on the issuer, as Auth0's has, is not doubled).
	v = newVerifier(t, auth.Config{Issuer: iss.URL + "/", Audiences: []string{audience}})
	if got := v.JWKSURL(); got != iss.URL+"/.well-known/jwks.json" {
		t.Errorf("JWKSURL = %q", got)
	}
	tok = iss.Token(t, user, audience, map[string]any{"iss": iss.URL + "/"})
	if got, err := v.Verify(t.Context(), tok); err != nil || got != user {
		t.Fatalf("Verify = %q, %v", got, err)
	}
}

func TestConfigFrom(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    auth.Config
		wantErr []string // each must be in the error
	}{
		{
			name: "cognito",
			env: map[string]string{
				"JWT_ISSUER":   "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_abc",
				"JWT_AUDIENCE": " client-a, client-b ,,",
			},
			want: auth.Config{Issuer: "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_abc", Audiences: []string{"client-a", "client-b"}},
		},
		{
			name: "own JWKS URL, local issuer",
			env:  map[string]string{"JWT_ISSUER": "http://127.0.0.1:8080", "JWT_AUDIENCE": "a", "JWKS_URL": "http://localhost:8080/keys"},
			want: auth.Config{Issuer: "http://127.0.0.1:8080", Audiences: []string{"a"}, JWKSURL: "http://localhost:8080/keys"},
		},
		{name: "nothing", env: map[string]string{}, wantErr: []string{"JWT_ISSUER is required", "JWT_AUDIENCE is required"}},
		{name: "only commas", env: map[string]string{"JWT_ISSUER": "https://i.example", "JWT_AUDIENCE": " , "}, wantErr: []string{"JWT_AUDIENCE is required"}},
		{name: "http issuer", env: map[string]string{"JWT_ISSUER": "http://issuer.example", "JWT_AUDIENCE": "a"}, wantErr: []string{"JWT_ISSUER", "want https"}},
		{name: "not a URL", env: map[string]string{"JWT_ISSUER": "issuer.example", "JWT_AUDIENCE": "a"}, wantErr: []string{"JWT_ISSUER", "absolute https URL"}},
		{name: "bad JWKS URL", env: map[string]string{"JWT_ISSUER": "https://i.example", "JWT_AUDIENCE": "a", "JWKS_URL": "https://i.example/keys?x=1"}, wantErr: []string{"JWKS_URL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := auth.ConfigFrom(func(k string) string { return tc.env[k] })
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error for %v", tc.env)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Issuer != tc.want.Issuer || got.JWKSURL != tc.want.JWKSURL || strings.Join(got.Audiences, "|") != strings.Join(tc.want.Audiences, "|") {
				t.Errorf("ConfigFrom = %+v, want %+v", got, tc.want)
			}
		})
	}
}
