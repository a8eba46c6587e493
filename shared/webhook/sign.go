package webhook

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The Standard Webhooks headers.
const (
	HeaderID        = standardwebhooks.HeaderWebhookID        // "webhook-id"
	HeaderTimestamp = standardwebhooks.HeaderWebhookTimestamp // "webhook-timestamp"
	HeaderSignature = standardwebhooks.HeaderWebhookSignature // "webhook-signature"
)

// SecretPrefix starts every secret: "whsec_" then the key in standard
// base64.
const SecretPrefix = "whsec_"

// Key lengths the spec allows for a symmetric secret: 24 to 64 bytes
// (192 to 512 bits).
const (
	MinKeyBytes = 24
	MaxKeyBytes = 64
)

// Tolerance is how far from the receiver's clock Verify accepts a
// webhook-timestamp (the library's fixed 5 minutes).
const Tolerance = 5 * time.Minute

var (
	// ErrConfig is a malformed URL or secret.
	ErrConfig = errors.New("webhook: bad configuration")
	// ErrVerification is a request that Verify does not accept: a header
	// missing, a timestamp out of tolerance, or no matching signature.
	ErrVerification = errors.New("webhook: verification failed")
)

// CheckSecret reports whether secret is a Standard Webhooks symmetric
// secret: "whsec_" and the standard base64 (with padding) of 24 to 64
// bytes. The error wraps ErrConfig and never contains the secret.
func CheckSecret(secret string) error {
	_, err := secretKey(secret)
	return err
}

func secretKey(secret string) ([]byte, error) {
	const want = `want "whsec_" followed by the standard base64 of 24-64 random bytes, e.g. "whsec_$(openssl rand -base64 32)"`
	enc, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: the secret does not start with %q; %s", ErrConfig, SecretPrefix, want)
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: the secret after %q is not standard base64; %s", ErrConfig, SecretPrefix, want)
	}
	if len(key) < MinKeyBytes || len(key) > MaxKeyBytes {
		return nil, fmt.Errorf("%w: the secret's key is %d bytes; %s", ErrConfig, len(key), want)
	}
	return key, nil
}

func newSigner(secret string) (*standardwebhooks.Webhook, error) {
	key, err := secretKey(secret)
	if err != nil {
		return nil, err
	}
	return standardwebhooks.NewWebhookRaw(key)
}

// Sign returns the webhook-signature value ("v1,<base64>") of a message
// with webhook-id id, webhook-timestamp ts (Unix seconds) and body body,
// under secret.
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	wh, err := newSigner(secret)
	if err != nil {
		return "", err
	}
	return wh.Sign(id, ts, body)
}

// Verify checks a received webhook: header must carry webhook-id,
// webhook-timestamp within Tolerance of now, and a webhook-signature with a
// v1 signature of body under secret (the header may list several, space
// separated, as during a secret rotation). body must be the raw bytes
// received, not re-encoded JSON. A bad secret is ErrConfig; any other
// failure wraps ErrVerification.
func Verify(secret string, header http.Header, body []byte) error {
	wh, err := newSigner(secret)
	if err != nil {
		return err
	}
	if err := wh.Verify(body, header); err != nil {
		return fmt.Errorf("%w: %w", ErrVerification, err)
	}
	return nil
}
