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

// Details presigns the MOC's download URLs and its thumbnail URL.
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
	// Until thumbnails are generated, the first image is the thumbnail,
	// as in the old service.
	if m.ThumbnailStatus == ThumbnailNone {
		if img := m.firstImage(); img != nil {
			u := d.DownloadURLs[img.ID]
			d.ThumbnailURL = &u
		}
	}
	return d, nil
}
