package webhook

import (
	"encoding/json"
	"time"
)

// EventMocFinalized is the event of the webhook sent after a finalize.
const EventMocFinalized = "moc.finalized"

// Payload is the webhook's JSON body:
//
//	{"event":"moc.finalized","mocId":"…","sessionId":"…","userId":"…","timestamp":"2026-11-25T10:00:00Z"}
type Payload struct {
	// Event is the event type; empty means EventMocFinalized.
	Event string `json:"event"`
	// MocID is the finalized MOC's id (required).
	MocID string `json:"mocId"`
	// SessionID is the upload session the MOC was finalized from.
	SessionID string `json:"sessionId"`
	// UserID is the MOC's owner (an opaque string).
	UserID string `json:"userId"`
	// Timestamp is when the event happened (the MOC's creation), not when
	// it is delivered (required). It is sent in RFC 3339 in UTC, with
	// fractional seconds when it has them.
	Timestamp time.Time `json:"timestamp"`
}

// MarshalJSON writes p with Event defaulted and Timestamp in UTC.
func (p Payload) MarshalJSON() ([]byte, error) {
	type wire Payload // without the method
	w := wire(p)
	if w.Event == "" {
		w.Event = EventMocFinalized
	}
	w.Timestamp = w.Timestamp.UTC()
	return json.Marshal(w)
}
