package upload

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Finalize is traced with the global OpenTelemetry API (a no-op until
// package telemetry installs a TracerProvider). Its spans, all of kind
// internal, under the caller's span (the HTTP request's):
//
//	moc.upload.finalize   sessionId, userId; fileCount, totalSizeBytes, mocId, resumed when known
//	├─ validate.session   the session can become this MOC: an existing MOC (resumed),
//	│                     expired, not active, an instruction file, the title free
//	├─ validate.files     fileCount; completed, incomplete (reason missing), failed (all refusals)
//	│  └─ validate.file   one per file: fileId, name, size, mimeType; reason when it fails.
//	│                     Covers what S3 holds of a file not completed yet, completing
//	│                     its multipart upload, and the checks
//	├─ create.moc         mocId, slug, fileCount: the MOC row
//	└─ create.files       mocId, fileCount: its files' rows
//
// followed, after the commit, by package followup's dispatch spans and
// package progress's one progress.send span (the parts finalize learnt,
// then the finalized event).
//
// Outcomes. A span whose work failed (the database, S3) records the error
// and has status Error, and so has every span around it, the root
// included. A refusal — an *Error the client gets with a 4xx, or a unique
// constraint's ErrConflict — is not the service failing: the span that
// refused and the root get the attribute error.code (the contract's code,
// e.g. SESSION_EXPIRED, CONFLICT, FILE_VALIDATION_FAILED) and keep status
// Unset, as OpenTelemetry's HTTP conventions leave a server span answering
// 4xx. The one exception is a file that fails validation: its validate.file
// span has status Error (with reason and message), so a trace shows at once
// which file refused the finalize and why.
const tracerName = "github.com/mocbuilders/moc-upload/shared/upload"

// Span names.
const (
	spanFinalize        = "moc.upload.finalize"
	spanValidateSession = "validate.session"
	spanValidateFiles   = "validate.files"
	spanValidateFile    = "validate.file"
	spanCreateMoc       = "create.moc"
	spanCreateFiles     = "create.files"
)

// Attribute keys.
const (
	attrSessionID      = attribute.Key("sessionId")
	attrUserID         = attribute.Key("userId")
	attrMocID          = attribute.Key("mocId")
	attrFileCount      = attribute.Key("fileCount")
	attrTotalSizeBytes = attribute.Key("totalSizeBytes")
	attrResumed        = attribute.Key("resumed")
	attrSessionStatus  = attribute.Key("sessionStatus")
	attrFileID         = attribute.Key("fileId")
	attrName           = attribute.Key("name")
	attrSize           = attribute.Key("size")
	attrMimeType       = attribute.Key("mimeType")
	attrReason         = attribute.Key("reason")
	attrCompleted      = attribute.Key("completed")
	attrIncomplete     = attribute.Key("incomplete")
	attrFailed         = attribute.Key("failed")
	attrSlug           = attribute.Key("slug")
	attrErrorCode      = attribute.Key("error.code")
)

// startSpan starts an internal span of the package under ctx's span. The
// tracer is asked for on each call, not kept: a kept one would stay bound
// to the first TracerProvider installed.
func startSpan(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return otel.Tracer(tracerName).Start(ctx, name, trace.WithAttributes(attrs...))
}

// endSpan ends span with the outcome of its work (see the outcomes above).
func endSpan(span trace.Span, err error) {
	if err != nil {
		code, refused := refusal(err)
		if code != "" {
			span.SetAttributes(attrErrorCode.String(code))
		}
		if !refused {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
	}
	span.End()
}

// refusal returns err's contract code, if it has one, and whether it is a
// refusal (a 4xx) rather than a failure.
func refusal(err error) (code string, refused bool) {
	if e, ok := AsError(err); ok {
		return e.Code, e.Code != CodeS3Unavailable && e.Code != CodeDatabaseUnavailable && e.Code != CodeInternal
	}
	if errors.Is(err, ErrConflict) {
		return CodeConflict, true
	}
	return "", false
}

// filesAttrs are the fileCount and totalSizeBytes of a session's files.
func filesAttrs(files []File) []attribute.KeyValue {
	var total int64
	for _, f := range files {
		total += f.Size
	}
	return []attribute.KeyValue{attrFileCount.Int(len(files)), attrTotalSizeBytes.Int64(total)}
}

// mocAttrs are the mocId, fileCount and totalSizeBytes of a MOC.
func mocAttrs(m *Moc) []attribute.KeyValue {
	var total int64
	for _, f := range m.Files {
		total += f.Size
	}
	return []attribute.KeyValue{attrMocID.String(m.ID), attrFileCount.Int(len(m.Files)), attrTotalSizeBytes.Int64(total)}
}

// fileAttrs are a validate.file span's attributes.
func fileAttrs(f *File) []attribute.KeyValue {
	return []attribute.KeyValue{attrFileID.String(f.ID), attrName.String(f.Name),
		attrSize.Int64(f.Size), attrMimeType.String(f.MimeType)}
}

// failFileSpan marks a validate.file span with why its file failed.
func failFileSpan(span trace.Span, f *FileFailure) {
	span.SetAttributes(attrReason.String(f.Reason))
	span.SetStatus(codes.Error, f.Message)
}
