package upload

import "context"

// SessionToWatch returns the user's session for a client that wants to
// follow its progress (the WebSocket API's $connect). It only reads the
// database: no S3 call, no lock, whatever the session's status. A session
// that does not exist or belongs to someone else is the contract's
// NOT_FOUND, so a caller cannot tell the two apart.
func (s *Service) SessionToWatch(ctx context.Context, userID, sessionID string) (*Session, error) {
	var sess *Session
	err := s.Store.InTx(ctx, func(tx Tx) error {
		var err error
		sess, err = getSession(ctx, tx, userID, sessionID, false)
		return err
	})
	if err != nil {
		return nil, err
	}
	return sess, nil
}
