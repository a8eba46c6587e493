package upload

import (
	"cmp"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

// FinalizeRequest is what a client sends to finalize a session.
type FinalizeRequest struct {
	SessionID   string
	Title       string
	Description *string
	Tags        []string
	Theme       *string
}

// Check applies the field rules (422).
func (r *FinalizeRequest) Check(validID func(string) bool) error {
	errs := map[string]string{}
	switch {
	case r.SessionID == "":
		errs["uploadSessionId"] = "is required"
	case !validID(r.SessionID):
		errs["uploadSessionId"] = "must be a UUID"
	}
	if n := utf8.RuneCountInString(strings.TrimSpace(r.Title)); n < 1 || n > 200 {
		errs["title"] = "must be 1-200 characters"
	}
	if r.Description != nil && utf8.RuneCountInString(*r.Description) > 5000 {
		errs["description"] = "must be at most 5000 characters"
	}
	if len(r.Tags) > 20 {
		errs["tags"] = "must be at most 20 tags"
	}
	for i, t := range r.Tags {
		if n := utf8.RuneCountInString(t); n < 1 || n > 50 {
			errs[fmt.Sprintf("tags[%d]", i)] = "must be 1-50 characters"
		}
	}
	if r.Theme != nil && utf8.RuneCountInString(*r.Theme) > 100 {
		errs["theme"] = "must be at most 100 characters"
	}
	if len(errs) > 0 {
		return ValidationError(errs)
	}
	return nil
}

// Reasons a file fails finalize validation.
const (
	ReasonMissing    = "missing"
	ReasonSize       = "size"
	ReasonType       = "type"
	ReasonMagicBytes = "magic-bytes"
	ReasonChecksum   = "checksum"
	ReasonIncomplete = "incomplete"
)

// FileFailure says why one file failed validation.
type FileFailure struct {
	FileID   string `json:"fileId"`
	Filename string `json:"filename"`
	Reason   string `json:"reason"`
	Message  string `json:"message"`
}

// Finalize turns a session into a MOC: it completes files whose parts are
// all there, validates every file in parallel, and creates the MOC and its
// files and marks the session completed in one transaction. The session row
// stays locked throughout, so a concurrent or repeated finalize waits and
// then gets the MOC this one made, with resumed set.
//
// The same transaction writes the work that follows (the thumbnail, the
// webhook) to the outbox; once it committed, that work is handed to
// FollowUps, which neither fails nor holds up the finalize.
//
// It is traced as the span moc.upload.finalize and its children (see
// trace.go).
func (s *Service) Finalize(ctx context.Context, userID string, req FinalizeRequest) (moc *Moc, resumed bool, err error) {
	ctx, span := startSpan(ctx, spanFinalize, attrSessionID.String(req.SessionID), attrUserID.String(userID))
	defer func() {
		if moc != nil {
			span.SetAttributes(append(mocAttrs(moc), attrResumed.Bool(resumed))...)
		}
		endSpan(span, err)
	}()
	req.Title = strings.TrimSpace(req.Title)
	var refused error
	var news []PartCompleted
	var work []FollowUp
	err = s.Store.InTx(ctx, func(tx Tx) error {
		news, work = nil, nil
		sess, files, existing, err := s.finalizable(ctx, tx, userID, req)
		if err != nil || existing != nil {
			moc, resumed = existing, existing != nil
			return err
		}
		span.SetAttributes(filesAttrs(files)...)
		incomplete, err := s.completeAll(ctx, tx, sess, files, &news)
		if err != nil {
			return err
		}
		bad, err := s.validateFiles(ctx, files, incomplete)
		if err != nil {
			return err
		}
		if failures := append(incomplete, bad...); len(failures) > 0 {
			// Keep what finalize learnt: the uploads it completed stay
			// completed, and files that failed a check are marked failed,
			// so the client sees them in the session and can replace each
			// by registering its name again.
			refused = validationFailed(files, failures)
			return s.markFailed(ctx, tx, files, bad)
		}
		if moc, err = s.insertMoc(ctx, tx, sess, files, req); err != nil {
			return err
		}
		// The work that follows goes into the outbox with the MOC: both
		// commit, or neither. ctx is the finalize's span: the adapter may
		// keep its trace context with the work.
		if work = s.followUps(moc); len(work) > 0 {
			if err := tx.InsertOutbox(ctx, work); err != nil {
				return err
			}
		}
		now := s.now()
		sess.Status, sess.FinalizedAt, sess.MocID, sess.UpdatedAt = SessionCompleted, &now, &moc.ID, now
		return tx.UpdateSession(ctx, sess)
	})
	if err == nil {
		s.announce(ctx, news)
	}
	if err == nil && refused != nil {
		return nil, false, refused
	}
	if errors.Is(err, ErrConflict) {
		// Another session of this user took the title or slug between our
		// check and insert; the failed insert ended that transaction.
		err = s.Store.InTx(ctx, func(tx Tx) error { return s.titleConflict(ctx, tx, userID, req.Title) })
	}
	if err != nil {
		return nil, false, err
	}
	// A repeat finds the work its first run recorded already started, or
	// left to the sweeper; it starts nothing again.
	if !resumed && len(work) > 0 && s.FollowUps != nil {
		s.FollowUps.Dispatch(ctx, work)
	}
	if !resumed && s.Progress != nil {
		s.Progress.SessionFinalized(ctx, SessionFinalized{SessionID: moc.UploadSessionID, MocID: moc.ID})
	}
	return moc, resumed, nil
}

// finalizable is finalize's first step (span validate.session): it locks
// and reads the session and its files, and checks that the session can
// become a MOC of this title. When the session already has a MOC (a
// repeated or concurrent finalize), it returns that MOC and no files.
func (s *Service) finalizable(ctx context.Context, tx Tx, userID string, req FinalizeRequest) (sess *Session, files []File, existing *Moc, err error) {
	ctx, span := startSpan(ctx, spanValidateSession)
	defer func() { endSpan(span, err) }()
	if sess, err = getSession(ctx, tx, userID, req.SessionID, true); err != nil {
		return nil, nil, nil, err
	}
	span.SetAttributes(attrSessionStatus.String(string(sess.StatusAt(s.now()))))
	if existing, err = s.existingMoc(ctx, tx, sess); err != nil || existing != nil {
		span.SetAttributes(attrResumed.Bool(existing != nil))
		return nil, nil, existing, err
	}
	if err := s.checkWritable(sess); err != nil {
		return nil, nil, nil, err
	}
	if files, err = tx.ListFiles(ctx, sess.ID); err != nil {
		return nil, nil, nil, err
	}
	if !hasInstruction(files) {
		return nil, nil, nil, Errorf(CodeBadRequest, "the session has no instruction file")
	}
	if taken, err := tx.MocTitleExists(ctx, userID, req.Title); err != nil {
		return nil, nil, nil, err
	} else if taken {
		return nil, nil, nil, s.titleConflict(ctx, tx, userID, req.Title)
	}
	return sess, files, nil, nil
}

// markFailed sets the status of the files that failed a check to failed.
func (s *Service) markFailed(ctx context.Context, tx Tx, files []File, failures []FileFailure) error {
	failed := make(map[string]bool, len(failures))
	for _, f := range failures {
		failed[f.FileID] = true
	}
	for i := range files {
		if f := &files[i]; failed[f.ID] {
			f.Status, f.UpdatedAt = FileFailed, s.now()
			if err := tx.UpdateFile(ctx, f); err != nil {
				return err
			}
		}
	}
	return nil
}

// existingMoc returns the MOC a session already has, mending the session
// row when an older run crashed between the MOC and the session update.
func (s *Service) existingMoc(ctx context.Context, tx Tx, sess *Session) (*Moc, error) {
	moc, err := tx.GetMocBySession(ctx, sess.ID)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if sess.Status != SessionCompleted || sess.MocID == nil {
		now := s.now()
		sess.Status, sess.MocID, sess.UpdatedAt = SessionCompleted, &moc.ID, now
		if sess.FinalizedAt == nil {
			sess.FinalizedAt = &now
		}
		if err := tx.UpdateSession(ctx, sess); err != nil {
			return nil, err
		}
	}
	return moc, nil
}

func hasInstruction(files []File) bool {
	for _, f := range files {
		if f.Category == CategoryInstruction {
			return true
		}
	}
	return false
}

func (s *Service) titleConflict(ctx context.Context, tx Tx, userID, title string) error {
	slug, err := s.availableSlug(ctx, tx, userID, title)
	if err != nil {
		return err
	}
	return (&Error{Code: CodeConflict, Message: "you already have a MOC with this title"}).
		WithDetails(map[string]any{"title": title, "suggestedSlug": slug})
}

// availableSlug is the title's slug, or its first free numbered variant.
func (s *Service) availableSlug(ctx context.Context, tx Tx, userID, title string) (string, error) {
	base := Slugify(title)
	// Numbered slugs of a long base cut the base to fit the suffix, so ask
	// for everything that starts like the shortest cut can.
	taken, err := tx.SlugsWithPrefix(ctx, userID, base[:min(len(base), MaxSlugLen-8)])
	if err != nil {
		return "", err
	}
	used := make(map[string]bool, len(taken))
	for _, t := range taken {
		used[t] = true
	}
	if !used[base] {
		return base, nil
	}
	for n := 2; ; n++ {
		if slug := NumberedSlug(base, n); !used[slug] {
			return slug, nil
		}
	}
}

// completeAll completes, in parallel, every file whose parts are all
// uploaded, takes files PUT whole as they are, and reports the ones that
// are not complete. S3 says what arrived. Span complete.files.
func (s *Service) completeAll(ctx context.Context, tx Tx, sess *Session, files []File, news *[]PartCompleted) (_ []FileFailure, err error) {
	ctx, span := startSpan(ctx, spanCompleteFiles)
	defer func() { endSpan(span, err) }()
	found, err := s.inspectAll(ctx, files, notCompleted)
	if err != nil {
		return nil, storageError("inspect files", err)
	}
	var failures []FileFailure
	var todo []*File
	whole := 0
	parts := map[string][]Part{}
	for i := range files {
		f := &files[i]
		if f.Status == FileCompleted {
			continue
		}
		recorded, err := tx.ListParts(ctx, f.ID)
		if err != nil {
			return nil, err
		}
		ps, err := s.record(ctx, tx, f, sess.PartSizeBytes, found[i], recorded, news)
		if err != nil {
			return nil, err
		}
		if found[i].whole {
			whole++
			continue
		}
		total := TotalParts(f.Size, sess.PartSizeBytes)
		if missing := missingParts(ps, total); len(missing) > 0 {
			failures = append(failures, FileFailure{FileID: f.ID, Filename: f.Name, Reason: ReasonIncomplete,
				Message: fmt.Sprintf("%d of %d parts are missing", len(missing), total)})
			continue
		}
		todo = append(todo, f)
		parts[f.ID] = ps
	}
	errs := make([]error, len(todo))
	s.parallel(len(todo), func(i int) { errs[i] = s.completeInStorage(ctx, todo[i], parts[todo[i].ID]) })
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// The transaction is one connection: its writes stay sequential.
	for _, f := range todo {
		if err := s.markCompleted(ctx, tx, f); err != nil {
			return nil, err
		}
	}
	span.SetAttributes(attrCompleted.Int(whole+len(todo)), attrIncomplete.Int(len(failures)))
	return failures, nil
}

// parallel runs fn(0) … fn(n-1), at most FinalizeConcurrency at a time.
func (s *Service) parallel(n int, fn func(i int)) {
	sem := make(chan struct{}, max(s.FinalizeConcurrency, 1))
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

// validateFiles checks every completed file against S3, at most
// FinalizeConcurrency at a time, and returns the files that failed a
// check; storage that cannot be read is an error, because finalize must
// not create a MOC it could not check. incomplete are the files
// completeAll could not complete: they are not checked, and not returned
// again. Span validate.files, with a validate.file per file.
func (s *Service) validateFiles(ctx context.Context, files []File, incomplete []FileFailure) (_ []FileFailure, err error) {
	ctx, span := startSpan(ctx, spanValidateFiles, attrFileCount.Int(len(files)))
	defer func() { endSpan(span, err) }()
	known := make(map[string]*FileFailure, len(incomplete))
	for i := range incomplete {
		known[incomplete[i].FileID] = &incomplete[i]
	}
	results := make([]*FileFailure, len(files))
	errs := make([]error, len(files))
	s.parallel(len(files), func(i int) {
		results[i], errs[i] = s.checkFile(ctx, &files[i], known[files[i].ID])
	})
	if err := errors.Join(errs...); err != nil {
		return nil, storageError("validate files", err)
	}
	var failures []FileFailure
	for _, r := range results {
		if r != nil {
			failures = append(failures, *r)
		}
	}
	span.SetAttributes(attrFailed.Int(len(failures) + len(incomplete)))
	return failures, nil
}

// checkFile is one file's span validate.file: it validates a completed
// file, or says why an incomplete one was not.
func (s *Service) checkFile(ctx context.Context, f *File, incomplete *FileFailure) (failure *FileFailure, err error) {
	ctx, span := startSpan(ctx, spanValidateFile, fileAttrs(f)...)
	defer func() {
		if failed := cmp.Or(failure, incomplete); failed != nil {
			failFileSpan(span, failed)
		}
		endSpan(span, err)
	}()
	if incomplete != nil || f.Status != FileCompleted {
		return nil, nil
	}
	return s.validateFile(ctx, f)
}

// validateFile checks one stored file: it exists, has the declared size,
// starts with its type's magic bytes, and matches its declared checksums.
// It returns nil, nil when the file is good.
func (s *Service) validateFile(ctx context.Context, f *File) (*FileFailure, error) {
	fail := func(reason, format string, args ...any) (*FileFailure, error) {
		return &FileFailure{FileID: f.ID, Filename: f.Name, Reason: reason, Message: fmt.Sprintf(format, args...)}, nil
	}
	size, err := s.Blob.Head(ctx, f.S3Key)
	if errors.Is(err, ErrNotFound) {
		return fail(ReasonMissing, "file is not in storage")
	}
	if err != nil {
		return nil, err
	}
	if size != f.Size {
		return fail(ReasonSize, "stored size %d differs from declared size %d", size, f.Size)
	}
	head, err := s.Blob.ReadRange(ctx, f.S3Key, 0, MagicBytesLen)
	if err != nil {
		return nil, err
	}
	if !MatchesType(f.MimeType, head, int64(len(head)) == f.Size) {
		return fail(ReasonMagicBytes, "content does not look like %s", f.MimeType)
	}
	if sums := f.Metadata.Checksums; sums != nil {
		msg, err := s.checkSums(ctx, f.S3Key, sums)
		if err != nil {
			return nil, err
		}
		if msg != "" {
			return fail(ReasonChecksum, "%s", msg)
		}
	}
	return nil, nil
}

// checkSums hashes the stored object and says which declared checksum it
// does not match ("" when all match).
func (s *Service) checkSums(ctx context.Context, key string, sums *Checksums) (string, error) {
	var hashes []io.Writer
	var md5h, shah hash.Hash
	if sums.MD5 != "" {
		md5h = md5.New()
		hashes = append(hashes, md5h)
	}
	if sums.SHA256 != "" {
		shah = sha256.New()
		hashes = append(hashes, shah)
	}
	body, err := s.Blob.Open(ctx, key)
	if err != nil {
		return "", err
	}
	defer body.Close()
	if _, err := io.Copy(io.MultiWriter(hashes...), body); err != nil {
		return "", err
	}
	if md5h != nil && hex.EncodeToString(md5h.Sum(nil)) != strings.ToLower(sums.MD5) {
		return "MD5 does not match the declared checksum", nil
	}
	if shah != nil && hex.EncodeToString(shah.Sum(nil)) != strings.ToLower(sums.SHA256) {
		return "SHA-256 does not match the declared checksum", nil
	}
	return "", nil
}

func validationFailed(files []File, failures []FileFailure) error {
	order := make(map[string]int, len(files))
	for i, f := range files {
		order[f.ID] = i
	}
	sortFailures(failures, order)
	code, msg := CodeFileValidationFailed, "some files failed validation"
	for _, f := range failures {
		if f.Reason == ReasonChecksum {
			code, msg = CodeChecksumMismatch, "some files do not match their checksums"
		}
	}
	return (&Error{Code: code, Message: msg}).WithDetails(map[string]any{"files": failures})
}

func sortFailures(failures []FileFailure, order map[string]int) {
	for i := 1; i < len(failures); i++ {
		for j := i; j > 0 && order[failures[j].FileID] < order[failures[j-1].FileID]; j-- {
			failures[j], failures[j-1] = failures[j-1], failures[j]
		}
	}
}

// insertMoc creates the MOC row and its files. Instruction files come
// first, then parts lists, then images, each in registration order. Span
// create.moc.
func (s *Service) insertMoc(ctx context.Context, tx Tx, sess *Session, files []File, req FinalizeRequest) (_ *Moc, err error) {
	ctx, span := startSpan(ctx, spanCreateMoc)
	defer func() { endSpan(span, err) }()
	slug, err := s.availableSlug(ctx, tx, sess.UserID, req.Title)
	if err != nil {
		return nil, err
	}
	now := s.now()
	tags := req.Tags
	if tags == nil {
		tags = []string{}
	}
	m := &Moc{
		ID: s.NewID(), UserID: sess.UserID, UploadSessionID: sess.ID,
		Title: req.Title, Slug: slug, Description: req.Description, Type: "moc",
		Status: MocPrivate, Tags: tags, Theme: req.Theme,
		ThumbnailStatus: ThumbnailNone, FinalizedAt: &now, CreatedAt: now, UpdatedAt: now,
	}
	for _, c := range []Category{CategoryInstruction, CategoryPartsList, CategoryImage, CategoryThumbnail} {
		for _, f := range files {
			if f.Category != c {
				continue
			}
			m.Files = append(m.Files, MocFile{
				ID: f.ID, MocID: m.ID, FileType: FileTypeOf(f.Category), Category: f.Category,
				FileURL: f.FileURL, S3Key: f.S3Key, OriginalFilename: f.Name,
				MimeType: f.MimeType, Size: f.Size, CreatedAt: now,
			})
		}
	}
	switch img := m.FirstImage(); {
	case img == nil:
	case s.ThumbnailsEnabled:
		// Made after the commit (package followup); no URL until then.
		m.ThumbnailStatus = ThumbnailPending
	default:
		// The old service used the first image as the thumbnail.
		m.ThumbnailURL = &img.FileURL
	}
	span.SetAttributes(append(mocAttrs(m), attrSlug.String(slug))...)
	// One call writes the MOC row, then its files' rows: see trace.go on
	// why there is no create.files span.
	if err := tx.InsertMoc(ctx, m); err != nil {
		return nil, err
	}
	return m, nil
}
