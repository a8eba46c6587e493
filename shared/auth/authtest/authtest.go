// Package authtest is a stand-in identity provider for tests: an HTTP
// server with its JWKS at /.well-known/jwks.json, and the keys to sign
// tokens for it. Its URL is the issuer, so auth.Config{Issuer: iss.URL}
// finds the keys where a real provider's would be.
package authtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// Key is an RSA signing key with its key id, as a provider has (RS256).
type Key struct {
	KID     string
	private jwk.Key
	public  jwk.Key
}

// NewKey makes a 2048-bit RSA key named kid.
func NewKey(t testing.TB, kid string) *Key {
	t.Helper()
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	must(t, priv.Set(jwk.KeyIDKey, kid))
	must(t, priv.Set(jwk.AlgorithmKey, jwa.RS256()))
	must(t, priv.Set(jwk.KeyUsageKey, jwk.ForSignature))
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &Key{KID: kid, private: priv, public: pub}
}

// Sign makes a compact RS256 JWT of claims with this key's kid in its
// header. Times may be time.Time values.
func (k *Key) Sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	tok := jwt.New()
	for name, v := range claims {
		must(t, tok.Set(name, v))
	}
	b, err := jwt.Sign(tok, jwt.WithKey(jwa.RS256(), k.private))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Issuer is a running identity provider: its URL is the issuer (`iss`)
// and serves the JWKS of its keys.
type Issuer struct {
	URL string
	Key *Key // the key Token signs with; in the JWKS

	srv      *httptest.Server
	keys     atomic.Pointer[[]*Key]
	requests atomic.Int64
}

// NewIssuer starts an issuer with one key ("test-key-1"), stopped when t
// ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	iss := &Issuer{Key: NewKey(t, "test-key-1")}
	iss.SetKeys(iss.Key)
	iss.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/jwks.json" {
			http.NotFound(w, r)
			return
		}
		iss.requests.Add(1)
		set := jwk.NewSet()
		for _, k := range *iss.keys.Load() {
			if err := set.AddKey(k.public); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=3600")
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(iss.srv.Close)
	iss.URL = iss.srv.URL
	return iss
}

// SetKeys replaces the keys the JWKS serves (a key rotation).
func (iss *Issuer) SetKeys(keys ...*Key) { iss.keys.Store(&keys) }

// JWKSRequests is how many times the JWKS has been fetched.
func (iss *Issuer) JWKSRequests() int { return int(iss.requests.Load()) }

// Claims are a valid token's claims for sub and audience: this issuer,
// issued now, expiring in an hour. Change them before signing.
func (iss *Issuer) Claims(sub, audience string) map[string]any {
	now := time.Now()
	return map[string]any{
		jwt.IssuerKey:     iss.URL,
		jwt.SubjectKey:    sub,
		jwt.AudienceKey:   []string{audience},
		jwt.IssuedAtKey:   now,
		jwt.ExpirationKey: now.Add(time.Hour),
		"token_use":       "id",
	}
}

// Token signs a valid token for sub and audience with the issuer's key,
// with extra claims set or replaced.
func (iss *Issuer) Token(t testing.TB, sub, audience string, extra map[string]any) string {
	t.Helper()
	c := iss.Claims(sub, audience)
	maps.Copy(c, extra)
	return iss.Key.Sign(t, c)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
