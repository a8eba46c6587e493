package webhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/shared/webhook"
)

// The test vector of the Standard Webhooks reference libraries (the same in
// each language's tests, e.g. libraries/go/webhook_test.go TestWebhookSign).
const (
	vecSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vecID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vecTS     = 1614265330
	vecBody   = `{"test": 2432232314}`
	vecSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignSpecVector(t *testing.T) {
	got, err := webhook.Sign(vecSecret, vecID, time.Unix(vecTS, 0), []byte(vecBody))
	if err != nil {
		t.Fatal(err)
	}
	if got != vecSig {
		t.Errorf("Sign = %s, want %s", got, vecSig)
	}

	// The spec's algorithm in a few lines, as a receiver without this
	// package would write it: HMAC-SHA256 keyed with the base64-decoded
	// secret after "whsec_", over "{id}.{timestamp}.{body}".
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(vecSecret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(vecID + "." + strconv.Itoa(vecTS) + "." + vecBody))
	if plain := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)); plain != vecSig {
		t.Errorf("plain HMAC = %s, want %s", plain, vecSig)
	}
}

func signedHeader(t *testing.T, secret, id string, ts time.Time, body string) http.Header {
	t.Helper()
	sig, err := webhook.Sign(secret, id, ts, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set(webhook.HeaderID, id)
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(webhook.HeaderSignature, sig)
	return h
}

func TestVerify(t *testing.T) {
	const otherSecret = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	now := time.Now()
	tests := []struct {
		name   string
		header func() http.Header
		body   string
		want   error
	}{
		{"valid", func() http.Header { return signedHeader(t, vecSecret, vecID, now, vecBody) }, vecBody, nil},
		{"tampered body", func() http.Header { return signedHeader(t, vecSecret, vecID, now, vecBody) }, `{"test": 2432232315}`, webhook.ErrVerification},
		{"re-encoded body", func() http.Header { return signedHeader(t, vecSecret, vecID, now, vecBody) }, `{"test":2432232314}`, webhook.ErrVerification},
		{"other secret", func() http.Header { return signedHeader(t, otherSecret, vecID, now, vecBody) }, vecBody, webhook.ErrVerification},
		{"other id", func() http.Header {
			h := signedHeader(t, vecSecret, vecID, now, vecBody)
			h.Set(webhook.HeaderID, "msg_other")
			return h
		}, vecBody, webhook.ErrVerification},
		{"other timestamp", func() http.Header {
			h := signedHeader(t, vecSecret, vecID, now, vecBody)
			h.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix()+1, 10))
			return h
		}, vecBody, webhook.ErrVerification},
		{"the spec vector: too old", func() http.Header { return signedHeader(t, vecSecret, vecID, time.Unix(vecTS, 0), vecBody) }, vecBody, webhook.ErrVerification},
		{"too new", func() http.Header {
			return signedHeader(t, vecSecret, vecID, now.Add(webhook.Tolerance+time.Minute), vecBody)
		}, vecBody, webhook.ErrVerification},
		{"no signature", func() http.Header {
			h := signedHeader(t, vecSecret, vecID, now, vecBody)
			h.Del(webhook.HeaderSignature)
			return h
		}, vecBody, webhook.ErrVerification},
		{"rotation: several signatures, one good", func() http.Header {
			h := signedHeader(t, vecSecret, vecID, now, vecBody)
			old := signedHeader(t, otherSecret, vecID, now, vecBody).Get(webhook.HeaderSignature)
			h.Set(webhook.HeaderSignature, old+" v1a,bm90IGEgc2lnbmF0dXJl "+h.Get(webhook.HeaderSignature))
			return h
		}, vecBody, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := webhook.Verify(vecSecret, tt.header(), []byte(tt.body))
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheckSecret(t *testing.T) {
	tests := []struct {
		secret string
		ok     bool
	}{
		{vecSecret, true}, // 24 bytes
		{"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 32)), true},
		{"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 64)), true},
		{"", false},
		{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", false}, // no prefix
		{"whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", false},
		{"whsec_", false},
		{"whsec_not base64!", false},
		{"whsec_" + base64.RawStdEncoding.EncodeToString(make([]byte, 32)), false}, // no padding
		{"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 23)), false},
		{"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 65)), false},
	}
	for _, tt := range tests {
		err := webhook.CheckSecret(tt.secret)
		if tt.ok != (err == nil) {
			t.Errorf("CheckSecret(%q) = %v, want ok %v", tt.secret, err, tt.ok)
		}
		if err != nil {
			if !errors.Is(err, webhook.ErrConfig) {
				t.Errorf("CheckSecret(%q) = %v, want ErrConfig", tt.secret, err)
			}
			if len(tt.secret) > len("whsec_") && strings.Contains(err.Error(), strings.TrimPrefix(tt.secret, "whsec_")) {
				t.Errorf("CheckSecret(%q): the error shows the secret: %v", tt.secret, err)
			}
		}
	}
	if err := webhook.Verify("whsec_short", http.Header{}, nil); !errors.Is(err, webhook.ErrConfig) {
		t.Errorf("Verify with a bad secret = %v, want ErrConfig", err)
	}
}
