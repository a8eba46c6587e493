package e2e

import (
	"bytes"
	"context"
	"image/png"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/shared/telemetry/telemetrytest"
)

// traces is the package's OTLP/HTTP receiver: the stack exports its spans
// to it (OTEL_EXPORTER_OTLP_ENDPOINT).
var traces *traceReceiver

type traceReceiver struct {
	*httptest.Server
	*telemetrytest.Receiver
}

func newTraceReceiver() *traceReceiver {
	rcv := &telemetrytest.Receiver{}
	return &traceReceiver{Server: httptest.NewServer(rcv), Receiver: rcv}
}

// trace returns the spans of the trace that has a span named name with
// attribute key = value, flushing the stack's exporter first.
func (r *traceReceiver) trace(t *testing.T, name, key, value string) []telemetrytest.Span {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.Telemetry.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	return r.Trace(name, key, value)
}

// OT-HP-001: one finalize is one trace, received over OTLP/HTTP: the HTTP
// function's server span, the finalize span with its attributes and
// children, and the Thumbnail and Webhook functions' spans in the same
// trace.
func TestFinalizeTrace(t *testing.T) {
	withThumbnails(t)
	var buf bytes.Buffer
	if err := png.Encode(&buf, pattern(64, 64)); err != nil {
		t.Fatal(err)
	}
	moc, c := finalizeSession(t, buf.Bytes(), "image/png")
	finished(t)
	mocID := moc["id"].(string)
	spans := traces.trace(t, "moc.upload.finalize", "mocId", mocID)
	byName := map[string][]telemetrytest.Span{}
	byID := map[string]telemetrytest.Span{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
		byID[s.SpanID] = s
	}
	root := byName["moc.upload.finalize"]
	if len(root) != 1 {
		t.Fatalf("%d finalize spans in the trace; spans: %v", len(root), names(spans))
	}
	f := root[0]
	if f.Attrs["userId"] != c.user || f.Attrs["fileCount"] == "" || f.Attrs["totalSizeBytes"] == "" || f.Attrs["sessionId"] == "" {
		t.Fatalf("finalize span attributes %v", f.Attrs)
	}
	if parent := byID[f.ParentID]; parent.Name != "POST /api/mocs/uploads/finalize" {
		t.Fatalf("finalize span's parent is %q, want the HTTP server span", parent.Name)
	}
	for _, child := range []string{"validate.session", "validate.files", "create.moc"} {
		if s := byName[child]; len(s) != 1 || s[0].ParentID != f.SpanID {
			t.Errorf("%s: %d spans, want 1 under the finalize span", child, len(s))
		}
	}
	if files := byName["validate.file"]; len(files) != 2 || byID[files[0].ParentID].Name != "validate.files" {
		t.Errorf("%d validate.file spans, want 2 under validate.files", len(files))
	}
	// The async work: the invoke under finalize, the function's own span
	// continuing the trace.
	for _, work := range []string{"generate.thumbnail", "send.webhook"} {
		s := byName[work]
		if len(s) < 2 {
			t.Errorf("%s: %d spans, want the dispatch and the function's: %v", work, len(s), names(spans))
			continue
		}
		var dispatch, done bool
		for _, x := range s {
			dispatch = dispatch || x.ParentID == f.SpanID
			done = done || byID[x.ParentID].Name == work
		}
		if !dispatch || !done {
			t.Errorf("%s: dispatch under finalize %v, function's span under the dispatch %v", work, dispatch, done)
		}
	}
	if len(byName["Thumbnail"]) == 0 || len(byName["Webhook"]) == 0 {
		t.Errorf("no span of the Thumbnail or Webhook invocation in the trace: %v", names(spans))
	}
}

func names(spans []telemetrytest.Span) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name
	}
	return out
}
