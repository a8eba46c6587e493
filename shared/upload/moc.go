package upload

import (
	"context"
	"errors"
)

// MocDetails is a MOC with the URLs a client can GET without credentials,
// made when the MOC is read.
type MocDetails struct {
	Moc          *Moc
	DownloadURLs map[string]string // by file id
	ThumbnailURL *string
}

// GetMoc returns one of the user's MOCs.
func (s *Service) GetMoc(ctx context.Context, userID, mocID string) (*MocDetails, error) {
	var m *Moc
	err := s.Store.InTx(ctx, func(tx Tx) error {
		var err error
		m, err = tx.GetMoc(ctx, mocID, userID)
		if errors.Is(err, ErrNotFound) {
			return Errorf(CodeNotFound, "MOC not found")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.Details(ctx, m)
}

// Details presigns the MOC's download URLs and its thumbnail URL: the
// generated thumbnail once it is ready, none while it is pending or
// failed, and the first image when thumbnails are not generated.
func (s *Service) Details(ctx context.Context, m *Moc) (*MocDetails, error) {
	d := &MocDetails{Moc: m, DownloadURLs: make(map[string]string, len(m.Files))}
	for i := range m.Files {
		f := &m.Files[i]
		if f.Category == "" {
			f.Category = CategoryOfFileType(f.FileType)
		}
		u, err := s.Blob.PresignGet(ctx, f.S3Key, s.DownloadURLTTL)
		if err != nil {
			return nil, storageError("presign download", err)
		}
		d.DownloadURLs[f.ID] = u
	}
	switch m.ThumbnailStatus {
	case ThumbnailNone:
		// Without generated thumbnails the first image is the thumbnail,
		// as in the old service.
		if img := m.FirstImage(); img != nil {
			u := d.DownloadURLs[img.ID]
			d.ThumbnailURL = &u
		}
	case ThumbnailReady:
		u, err := s.Blob.PresignGet(ctx, ThumbnailKey(s.Stage, m.UserID, m.ID), s.DownloadURLTTL)
		if err != nil {
			return nil, storageError("presign thumbnail", err)
		}
		d.ThumbnailURL = &u
	default:
		// pending or failed: no thumbnail to show.
	}
	return d, nil
}
