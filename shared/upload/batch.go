package upload

import "context"

// PartPlan is how a file is cut into parts: what a batch upload needs to
// know before it reads any part's bytes.
type PartPlan struct {
	FileSize      int64
	PartSizeBytes int64
	TotalParts    int
}

// PartSize is the exact size part n must have: partSizeBytes for every
// part but the last, the remainder for the last; 0 when n is out of range.
func (p PartPlan) PartSize(n int) int64 {
	if n < 1 || n > p.TotalParts {
		return 0
	}
	return expectedPartSize(p.FileSize, p.PartSizeBytes, n)
}

// PlanParts makes the checks UploadPart makes about the whole request
// before it stores a byte — the user's session exists and takes writes
// (404, 410, 400 SESSION_NOT_ACTIVE), the file exists and still takes parts
// (404, 409 FILE_ALREADY_COMPLETED) — with the same errors, and returns how
// the file is cut into parts. It stores nothing; UploadPart checks again,
// so a change in between is still caught, part by part.
func (s *Service) PlanParts(ctx context.Context, userID, sessionID, fileID string) (*PartPlan, error) {
	sess, file, err := s.fileForParts(ctx, userID, sessionID, fileID)
	if err != nil {
		return nil, err
	}
	return &PartPlan{FileSize: file.Size, PartSizeBytes: sess.PartSizeBytes,
		TotalParts: TotalParts(file.Size, sess.PartSizeBytes)}, nil
}
