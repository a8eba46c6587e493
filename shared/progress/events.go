package progress

import "github.com/mocbuilders/moc-upload/shared/upload"

// Event types, the "type" of every message.
const (
	TypePartCompleted    = "upload.part.completed"
	TypeSessionFinalized = "upload.session.finalized"
)

// StatusSuccess is the status of a SessionFinalizedEvent.
const StatusSuccess = "success"

// PartCompletedEvent is the message sent when the server recorded a part.
type PartCompletedEvent struct {
	Type       string `json:"type"` // TypePartCompleted
	SessionID  string `json:"sessionId"`
	FileID     string `json:"fileId"`
	PartNumber int    `json:"partNumber"`
	ETag       string `json:"etag"`
	TotalParts int    `json:"totalParts"`
	// CompletedParts counts the file's distinct recorded parts, this one included.
	CompletedParts int `json:"completedParts"`
	// PercentComplete is CompletedParts*100/TotalParts rounded down (0-100).
	PercentComplete int `json:"percentComplete"`
}

// SessionFinalizedEvent is the message sent when a session became a MOC.
type SessionFinalizedEvent struct {
	Type      string `json:"type"` // TypeSessionFinalized
	SessionID string `json:"sessionId"`
	MocID     string `json:"mocId"`
	Status    string `json:"status"` // StatusSuccess
}

// NewPartCompletedEvent is p's message.
func NewPartCompletedEvent(p upload.PartCompleted) PartCompletedEvent {
	return PartCompletedEvent{
		Type:            TypePartCompleted,
		SessionID:       p.SessionID,
		FileID:          p.FileID,
		PartNumber:      p.PartNumber,
		ETag:            p.ETag,
		TotalParts:      p.TotalParts,
		CompletedParts:  p.CompletedParts,
		PercentComplete: PercentComplete(p.CompletedParts, p.TotalParts),
	}
}

// NewSessionFinalizedEvent is ev's message.
func NewSessionFinalizedEvent(ev upload.SessionFinalized) SessionFinalizedEvent {
	return SessionFinalizedEvent{Type: TypeSessionFinalized, SessionID: ev.SessionID, MocID: ev.MocID, Status: StatusSuccess}
}

// PercentComplete is completed*100/total rounded down, within 0-100: 100
// only when every part is there. A file without parts is 0.
func PercentComplete(completed, total int) int {
	if total <= 0 || completed <= 0 {
		return 0
	}
	if completed >= total {
		return 100
	}
	return int(int64(completed) * 100 / int64(total))
}
