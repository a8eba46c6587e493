package upload

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
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

// Check applies the field rules (422). Every text must be storable
// (CheckText: valid UTF-8, no NUL) before its length is checked, and all
// of this before any row is locked or any S3 call is made.
func (r *FinalizeRequest) Check(validID func(string) bool) error {
	errs := map[string]string{}
	switch {
	case r.SessionID == "":
		errs["uploadSessionId"] = "is required"
	case !validID(r.SessionID):
		errs["uploadSessionId"] = "must be a UUID"
	}
	text := func(field, s string, minRunes, maxRunes int, rule string) {
		if msg := CheckText(s); msg != "" {
			errs[field] = msg
		} else if n := utf8.RuneCountInString(s); n < minRunes || n > maxRunes {
			errs[field] = rule
		}
	}
	text("title", strings.TrimSpace(r.Title), 1, 200, "must be 1-200 characters")
	if r.Description != nil {
		text("description", *r.Description, 0, 5000, "must be at most 5000 characters")
	}
	if len(r.Tags) > 20 {
		errs["tags"] = "must be at most 20 tags"
	}
	for i, t := range r.Tags {
		text(fmt.Sprintf("tags[%d]", i), t, 1, 50, "must be 1-50 characters")
	}
	if r.Theme != nil {
		text("theme", *r.Theme, 0, 100, "must be at most 100 characters")
	}
	if len(errs) > 0 {
		return ValidationError(errs)
	}
	return nil
}

// Reasons a file fails finalize validation. A file whose bytes have not
// all arrived is missing: the old web client shows only these reasons.
const (
	ReasonMissing    = "missing"
	ReasonSize       = "size"
	ReasonType       = "type"
	ReasonMagicBytes = "magic-bytes"
	ReasonChecksum   = "checksum"
)

// FileFailure says why one file failed validation.
type FileFailure struct {
	FileID   string `json:"fileId"`
	Filename string `json:"filename"`
	Reason   string `json:"reason"`
	Message  string `json:"message"`
}

// DefaultFinalizeConcurrency bounds the files one finalize checks at once:
// every file of a session of ordinary size at once, and a bound on the S3
// connections one finalize opens.
const DefaultFinalizeConcurrency = 32

// maxFinalizeAttempts bounds how often finalize starts over when the
// session changed while its files were being checked.
const maxFinalizeAttempts = 3

// errFilesChanged: the session's files changed between finalize's read
// and its commit, or a file's upload vanished while it was checked (see
// fileCheck.vanished); finalize starts over.
var errFilesChanged = errors.New("the session changed while it was being finalized")

// Finalize turns a session into a MOC in three steps, so that no database
// transaction (and no pooled connection) waits on S3:
//
//  1. validate.session, a short transaction: the session can become a MOC
//     of this title, and which files it has; a session that already has a
//     MOC (a repeated or concurrent finalize) returns it, resumed.
//  2. validate.files, no transaction: every file at once (up to
//     FinalizeConcurrency) asks S3 what it holds, completes its multipart
//     upload when all parts are there, and is checked (one ranged GET for
//     size and magic bytes; the whole object when checksums were declared).
//  3. a short transaction that locks the session, checks it did not change
//     meanwhile (else finalize starts over), records what S3 told, and
//     creates the MOC (create.moc, create.files), the work that follows in
//     the outbox, and marks the session completed. A finalize that lost a
//     race finds the winner's MOC here and returns it, resumed.
//
// Once the MOC committed, the outbox's work is handed to FollowUps, which
// neither fails nor holds up the finalize. It is traced as the span
// moc.upload.finalize and its children (see trace.go).
func (s *Service) Finalize(ctx context.Context, userID string, req FinalizeRequest) (moc *Moc, resumed bool, err error) {
	ctx, span := startSpan(ctx, spanFinalize, attrSessionID.String(req.SessionID), attrUserID.String(userID))
	defer func() {
		if moc != nil {
			span.SetAttributes(append(mocAttrs(moc), attrResumed.Bool(resumed))...)
		}
		endSpan(span, err)
	}()
	req.Title = strings.TrimSpace(req.Title)
	var run *finalizeRun
	for attempt := 1; ; attempt++ {
		run = &finalizeRun{s: s, userID: userID, req: req, last: attempt == maxFinalizeAttempts}
		err = run.do(ctx)
		if !errors.Is(err, errFilesChanged) || attempt == maxFinalizeAttempts {
			break
		}
	}
	if run.files != nil {
		span.SetAttributes(filesAttrs(run.files)...)
	}
	if errors.Is(err, errFilesChanged) {
		return nil, false, (&Error{Code: CodeConflict, Message: "the session kept changing while it was being finalized; finalize again"}).
			WithDetails(map[string]any{"retryable": true})
	}
	if err == nil && run.refused != nil {
		// The parts learnt from S3 committed although the files failed
		// validation.
		s.announce(ctx, run.news)
		return nil, false, run.refused
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
	if !run.resumed && len(run.work) > 0 && s.FollowUps != nil {
		s.FollowUps.Dispatch(ctx, run.work)
	}
	// One call for the request: the parts learnt from S3 first, then the
	// session's finalized event (a repeat announces no second one).
	ev := Events{Parts: run.news}
	if !run.resumed {
		ev.Finalized = &SessionFinalized{SessionID: run.moc.UploadSessionID, MocID: run.moc.ID}
	}
	s.tell(ctx, ev)
	return run.moc, run.resumed, nil
}

// finalizeRun is one attempt of Finalize.
type finalizeRun struct {
	s      *Service
	userID string
	req    FinalizeRequest

	last bool // the last attempt: see fileCheck.vanished

	sess   *Session
	files  []File      // as read by step 1
	checks []fileCheck // by index in files, from step 2

	moc     *Moc
	resumed bool
	refused error // files failed validation: what the client is told
	news    []PartCompleted
	work    []FollowUp
}

// fileCheck is what step 2 learnt about one file.
type fileCheck struct {
	// found is what S3 held of a file that was not completed at step 1.
	found inStorage
	// completed: this run completed the file's multipart upload in S3.
	completed bool
	// failure says why the file cannot be part of the MOC.
	failure *FileFailure
	// uploadGone: S3 no longer knows the file's multipart upload.
	uploadGone bool
	// vanished: the object is not there although the upload is gone or
	// this run completed it. A concurrent finalize or complete may be
	// completing the upload at this moment (S3 drops the upload before the
	// object appears, and a second completion of one upload may replace
	// the object), so finalize starts over rather than call the file
	// missing, unless this is its last attempt.
	vanished bool
}

func (r *finalizeRun) do(ctx context.Context) error {
	s := r.s
	if err := s.Store.InTx(ctx, func(tx Tx) error { return r.read(ctx, tx) }); err != nil || r.moc != nil {
		return err
	}
	if err := r.checkFiles(ctx); err != nil {
		return err
	}
	return s.Store.InTx(ctx, func(tx Tx) error {
		r.news, r.work, r.refused = nil, nil, nil
		return r.commit(ctx, tx)
	})
}

// read is step 1 (span validate.session): it reads the session and its
// files and checks that the session can become a MOC of this title. When
// the session already has a MOC, it sets r.moc and reads no files.
func (r *finalizeRun) read(ctx context.Context, tx Tx) (err error) {
	s := r.s
	ctx, span := startSpan(ctx, spanValidateSession)
	defer func() { endSpan(span, err) }()
	sess, files, err := r.open(ctx, tx, false)
	if sess != nil {
		span.SetAttributes(attrSessionStatus.String(string(sess.StatusAt(s.now()))))
	}
	if err != nil || r.moc != nil {
		span.SetAttributes(attrResumed.Bool(r.moc != nil))
		return err
	}
	if !hasInstruction(files) {
		return Errorf(CodeBadRequest, "the session has no instruction file")
	}
	if taken, err := tx.MocTitleExists(ctx, r.userID, r.req.Title); err != nil {
		return err
	} else if taken {
		// The MOC that has the title may be this session's, made by a
		// concurrent finalize that committed since the session was read
		// (this transaction takes no lock, and each statement sees what
		// committed before it).
		if r.moc, err = s.existingMoc(ctx, tx, sess); err != nil || r.moc != nil {
			r.resumed = r.moc != nil
			span.SetAttributes(attrResumed.Bool(r.resumed))
			return err
		}
		return s.titleConflict(ctx, tx, r.userID, r.req.Title)
	}
	r.sess, r.files = sess, files
	return nil
}

// open reads the session (locking its row when lock is set) and its files,
// once it checked the session takes writes. When the session already has
// a MOC (a repeated or concurrent finalize), it sets r.moc and r.resumed
// and reads no files.
func (r *finalizeRun) open(ctx context.Context, tx Tx, lock bool) (*Session, []File, error) {
	sess, err := getSession(ctx, tx, r.userID, r.req.SessionID, lock)
	if err != nil {
		return nil, nil, err
	}
	if r.moc, err = r.s.existingMoc(ctx, tx, sess); err != nil || r.moc != nil {
		r.resumed = r.moc != nil
		return sess, nil, err
	}
	if err := r.s.checkWritable(sess); err != nil {
		return sess, nil, err
	}
	files, err := tx.ListFiles(ctx, sess.ID)
	return sess, files, err
}

// commit is step 3: under the session's lock it records what step 2
// learnt and creates the MOC, or finds the MOC a concurrent finalize made.
func (r *finalizeRun) commit(ctx context.Context, tx Tx) error {
	s := r.s
	sess, files, err := r.open(ctx, tx, true)
	if err != nil || r.moc != nil {
		return err
	}
	if !sameFiles(r.files, files) {
		return errFilesChanged
	}
	recorded, err := tx.ListSessionParts(ctx, sess.ID)
	if err != nil {
		return err
	}
	// Keep what finalize learnt, even when it refuses the session: the
	// parts S3 holds are recorded, the uploads it completed stay
	// completed, and files that failed a check are marked failed, so the
	// client sees them in the session and can replace each by registering
	// its name again. The files' new statuses are written in one call.
	var missing, bad []FileFailure
	var changed []File
	for i := range files {
		f, c := &files[i], r.checks[i]
		if f.Status != FileCompleted && len(c.found.parts) > 0 {
			if _, err := s.record(ctx, tx, f, sess.PartSizeBytes, c.found, recorded[f.ID], &r.news); err != nil {
				return err
			}
		}
		status := f.Status
		if c.completed || c.found.whole {
			s.setCompleted(f)
		}
		switch {
		case c.failure == nil:
		case c.failure.Reason == ReasonMissing && status != FileCompleted:
			// Bytes still to come: the file keeps taking them.
			missing = append(missing, *c.failure)
		default:
			// A bad file, or a completed one whose object is gone: failed,
			// so that registering its name again replaces it.
			bad = append(bad, *c.failure)
			f.Status, f.UpdatedAt = FileFailed, s.now()
		}
		if f.Status != status {
			changed = append(changed, *f)
		}
	}
	if err := tx.UpdateFileStatuses(ctx, sess.ID, changed); err != nil {
		return err
	}
	if failures := append(missing, bad...); len(failures) > 0 {
		r.refused = validationFailed(files, failures)
		return nil
	}
	if r.moc, err = s.insertMoc(ctx, tx, sess, files, r.req); err != nil {
		return err
	}
	// The work that follows goes into the outbox with the MOC: both
	// commit, or neither. ctx is the finalize's span: the adapter may keep
	// its trace context with the work.
	if r.work = s.followUps(r.moc); len(r.work) > 0 {
		if err := tx.InsertOutbox(ctx, r.work); err != nil {
			return err
		}
	}
	now := s.now()
	sess.Status, sess.FinalizedAt, sess.MocID, sess.UpdatedAt = SessionCompleted, &now, &r.moc.ID, now
	return tx.UpdateSession(ctx, sess)
}

// sameFiles says whether the session's files are as step 1 read them: the
// same files, none changed since.
func sameFiles(read, now []File) bool {
	if len(read) != len(now) {
		return false
	}
	for i := range read {
		if read[i].ID != now[i].ID || read[i].Status != now[i].Status || !read[i].UpdatedAt.Equal(now[i].UpdatedAt) {
			return false
		}
	}
	return true
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

// finalizeConcurrency is how many files finalize checks at once.
func (s *Service) finalizeConcurrency() int {
	if s.FinalizeConcurrency > 0 {
		return s.FinalizeConcurrency
	}
	return DefaultFinalizeConcurrency
}

// parallel runs fn(0) … fn(n-1), at most FinalizeConcurrency at a time.
func (s *Service) parallel(n int, fn func(i int)) {
	sem := make(chan struct{}, s.finalizeConcurrency())
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

// checkFiles is step 2 (span validate.files, a validate.file per file):
// each file, in parallel, is completed when its parts are all in S3 and
// checked against what S3 holds. Storage that cannot be read is an error,
// because finalize must not create a MOC it could not check. No
// transaction is open.
func (r *finalizeRun) checkFiles(ctx context.Context) (err error) {
	s := r.s
	ctx, span := startSpan(ctx, spanValidateFiles, attrFileCount.Int(len(r.files)))
	defer func() { endSpan(span, err) }()
	start := time.Now()
	r.checks = make([]fileCheck, len(r.files))
	errs := make([]error, len(r.files))
	s.parallel(len(r.files), func(i int) {
		r.checks[i], errs[i] = s.checkFile(ctx, &r.files[i], r.sess.PartSizeBytes)
	})
	mode := "parallel"
	if s.finalizeConcurrency() == 1 {
		mode = "sequential"
	}
	completed, missing, failed := 0, 0, 0
	for _, c := range r.checks {
		switch {
		case c.failure != nil && c.failure.Reason == ReasonMissing:
			missing++
		case c.failure != nil:
			failed++
		}
		if c.completed || c.found.whole {
			completed++
		}
	}
	span.SetAttributes(attrCompleted.Int(completed), attrIncomplete.Int(missing), attrFailed.Int(missing+failed))
	slog.InfoContext(ctx, "finalize checked the session's files", "sessionId", r.sess.ID,
		"fileCount", len(r.files), "mode", mode, "concurrency", s.finalizeConcurrency(),
		"durationMs", float64(time.Since(start).Microseconds())/1000, "failed", missing+failed)
	if err := errors.Join(errs...); err != nil {
		return storageError("validate files", err)
	}
	for _, c := range r.checks {
		if c.vanished && !r.last {
			return errFilesChanged
		}
	}
	return nil
}

// checkFile is one file's span validate.file. A file not completed yet is
// first looked up in S3: its parts (ListParts), or, when there are none,
// the object PUT whole. A multipart upload whose parts are all there is
// completed with the parts S3 holds. Then the object is checked: it
// exists, has the declared size, starts with its type's magic bytes (one
// ranged GET answers all three), and matches its declared checksums.
func (s *Service) checkFile(ctx context.Context, f *File, partSize int64) (c fileCheck, err error) {
	ctx, span := startSpan(ctx, spanValidateFile, fileAttrs(f)...)
	defer func() {
		if c.failure != nil {
			failFileSpan(span, c.failure)
		}
		endSpan(span, err)
	}()
	fail := func(reason, format string, args ...any) (fileCheck, error) {
		c.failure = &FileFailure{FileID: f.ID, Filename: f.Name, Reason: reason, Message: fmt.Sprintf(format, args...)}
		return c, nil
	}
	if f.Status != FileCompleted {
		stored, err := s.Blob.ListParts(ctx, f.S3Key, f.UploadID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return c, err
		}
		c.uploadGone = errors.Is(err, ErrNotFound)
		if len(stored) > 0 {
			c.found.parts = stored
			total := TotalParts(f.Size, partSize)
			parts := completeParts(f, partSize, stored)
			if missing := missingParts(parts, total); len(missing) > 0 {
				return fail(ReasonMissing, "%d of %d parts are missing", len(missing), total)
			}
			if err := s.completeInStorage(ctx, f, parts); err != nil {
				return c, err
			}
			c.completed = true
		}
	}
	head, size, err := s.Blob.ReadHead(ctx, f.S3Key, MagicBytesLen)
	switch {
	case errors.Is(err, ErrNotFound) && f.Status == FileCompleted:
		return fail(ReasonMissing, "file is not in storage")
	case errors.Is(err, ErrNotFound):
		c.vanished = c.uploadGone || c.completed
		return fail(ReasonMissing, "file has not been uploaded")
	case err != nil:
		return c, err
	}
	if f.Status != FileCompleted && !c.completed && size == f.Size {
		// PUT whole to its uploadUrl: the multipart upload made for its
		// parts is not needed.
		c.found.whole = true
		s.abortUnused(ctx, f)
	}
	if size != f.Size {
		return fail(ReasonSize, "stored size %d differs from declared size %d", size, f.Size)
	}
	if !MatchesType(f.MimeType, head, int64(len(head)) == f.Size) {
		return fail(ReasonMagicBytes, "content does not look like %s", f.MimeType)
	}
	if sums := f.Metadata.Checksums; sums != nil {
		msg, err := s.checkSums(ctx, f.S3Key, sums)
		if err != nil {
			return c, err
		}
		if msg != "" {
			return fail(ReasonChecksum, "%s", msg)
		}
	}
	return c, nil
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

// insertMoc creates the MOC row (span create.moc) and its files' rows
// (span create.files). Instruction files come first, then parts lists,
// then images, each in registration order.
func (s *Service) insertMoc(ctx context.Context, tx Tx, sess *Session, files []File, req FinalizeRequest) (_ *Moc, err error) {
	mocCtx, span := startSpan(ctx, spanCreateMoc)
	defer func() { endSpan(span, err) }()
	slug, err := s.availableSlug(mocCtx, tx, sess.UserID, req.Title)
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
	if err := tx.InsertMoc(mocCtx, m); err != nil {
		return nil, err
	}
	// create.files is create.moc's sibling, as the seed's span tree has it.
	filesCtx, filesSpan := startSpan(ctx, spanCreateFiles, attrMocID.String(m.ID), attrFileCount.Int(len(m.Files)))
	err = tx.InsertMocFiles(filesCtx, m)
	endSpan(filesSpan, err)
	if err != nil {
		return nil, err
	}
	return m, nil
}
