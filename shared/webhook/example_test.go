package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/mocbuilders/moc-upload/shared/webhook"
)

// A receiver verifies the signature over the raw body before it trusts
// anything, then decodes the payload.
func ExampleVerify() {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "cannot read the body", http.StatusBadRequest)
			return
		}
		if err := webhook.Verify(secret, r.Header, body); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var p webhook.Payload
		if err := json.Unmarshal(body, &p); err != nil {
			http.Error(w, "bad payload", http.StatusBadRequest)
			return
		}
		fmt.Println(p.Event, p.MocID, p.Timestamp.Format(time.RFC3339))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()

	s, err := webhook.New(receiver.URL, secret)
	if err != nil {
		log.Fatal(err)
	}
	err = s.Deliver(context.Background(), "0b9e3d52-6a55-4c4e-9f39-0d6c1c7f5a10", webhook.Payload{
		MocID:     "7c4a5e0e-3c1b-4b8e-bb0b-2b1f7d9f6a01",
		SessionID: "5f0c9a3e-1d2b-4c5d-8e7f-9a0b1c2d3e4f",
		UserID:    "user-1",
		Timestamp: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
	})
	fmt.Println(err)
	// Output:
	// moc.finalized 7c4a5e0e-3c1b-4b8e-bb0b-2b1f7d9f6a01 2026-11-25T10:00:00Z
	// <nil>
}
