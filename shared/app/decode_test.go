package app

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

// decodeBody gives the bytes encoding/base64 gives, and leaves alone what
// is not base64 or not marked so.
func TestDecodeBody(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 100, 5<<20 + 7} {
		raw := make([]byte, n)
		_, _ = rand.NewChaCha8([32]byte{byte(n)}).Read(raw)
		ev := decodeBody(events.APIGatewayV2HTTPRequest{Body: base64.StdEncoding.EncodeToString(raw), IsBase64Encoded: true})
		if ev.IsBase64Encoded || !bytes.Equal([]byte(ev.Body), raw) {
			t.Fatalf("%d bytes: decoded %d bytes, base64 flag %v", n, len(ev.Body), ev.IsBase64Encoded)
		}
	}
	for _, in := range []events.APIGatewayV2HTTPRequest{
		{Body: "not base64!", IsBase64Encoded: true},
		{Body: "aGVsbG8=", IsBase64Encoded: false},
		{Body: "", IsBase64Encoded: true},
	} {
		if out := decodeBody(in); out.Body != in.Body || out.IsBase64Encoded != in.IsBase64Encoded {
			t.Errorf("decodeBody(%q, %v) = %q, %v; want it unchanged", in.Body, in.IsBase64Encoded, out.Body, out.IsBase64Encoded)
		}
	}
}
