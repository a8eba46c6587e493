package upload

import (
	"context"
	"fmt"
)

// Kinds of follow-up work (the outbox's kind column; the same strings as
// package followup's KindThumbnail and KindWebhook).
const (
	FollowUpThumbnail = "thumbnail"
	FollowUpWebhook   = "webhook"
)

// FollowUp is work that follows a finalize — the MOC's thumbnail or the
// moc.finalized webhook — recorded as a row of the outbox in the
// transaction that creates the MOC and done afterwards, elsewhere (package
// followup). Its ID is the row's id, which the work keeps on every retry
// (the webhook's webhook-id).
type FollowUp struct {
	ID    string
	MocID string
	Kind  string // FollowUpThumbnail or FollowUpWebhook
}

// FollowUps starts the work a committed finalize recorded. Like Progress it
// is told after the commit and is best effort: it must return promptly and
// never fail the finalize, so it has no error to return. Work it could not
// start stays in the outbox, where a sweeper finds it.
type FollowUps interface {
	Dispatch(ctx context.Context, work []FollowUp)
}

// ThumbnailKey is where a MOC's generated thumbnail lives:
// {stage}/moc-instructions/{userId}/{mocId}/thumbnail.jpg. It depends on
// nothing but the MOC, so making the thumbnail again writes the same object.
func ThumbnailKey(stage, userID, mocID string) string {
	return fmt.Sprintf("%s/moc-instructions/%s/%s/thumbnail.jpg", stage, userID, mocID)
}

// FirstImage is the MOC's first image or thumbnail file in the MOC's file
// order (images after instructions and parts lists, each in registration
// order), or nil: the image its thumbnail is made from.
func (m *Moc) FirstImage() *MocFile {
	for i := range m.Files {
		if c := m.Files[i].Category; c == CategoryImage || c == CategoryThumbnail {
			return &m.Files[i]
		}
	}
	return nil
}

// followUps is the work a new MOC leaves: its thumbnail when thumbnails
// are generated and it has an image (insertMoc then set its status
// pending), the webhook when one is configured.
func (s *Service) followUps(m *Moc) []FollowUp {
	var work []FollowUp
	if m.ThumbnailStatus == ThumbnailPending {
		work = append(work, FollowUp{ID: s.NewID(), MocID: m.ID, Kind: FollowUpThumbnail})
	}
	if s.WebhookEnabled {
		work = append(work, FollowUp{ID: s.NewID(), MocID: m.ID, Kind: FollowUpWebhook})
	}
	return work
}
