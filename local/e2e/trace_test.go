package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// traces is the package's OTLP/HTTP receiver: the stack exports its spans
// to it (OTEL_EXPORTER_OTLP_ENDPOINT).
var traces *traceReceiver

// span is what the tests look at of an exported span.
type span struct {
	name, traceID, spanID, parentID string
	attrs                           map[string]string
}

type traceReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []span
}

func newTraceReceiver() *traceReceiver {
	r := &traceReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		var msg collectortrace.ExportTraceServiceRequest
		if err != nil || req.URL.Path != "/v1/traces" || proto.Unmarshal(body, &msg) != nil {
			http.Error(w, "not an OTLP/HTTP protobuf trace export", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range msg.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					r.spans = append(r.spans, span{
						name: s.Name, traceID: hex.EncodeToString(s.TraceId),
						spanID: hex.EncodeToString(s.SpanId), parentID: hex.EncodeToString(s.ParentSpanId),
						attrs: attrs(s.Attributes),
					})
				}
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(nil)
	}))
	return r
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		v := kv.GetValue()
		switch {
		case v.GetStringValue() != "":
			m[kv.Key] = v.GetStringValue()
		default:
			m[kv.Key] = v.String()
		}
	}
	return m
}

// trace returns the spans of the trace that has a span named name with
// attribute key = value, flushing the stack's exporter first.
func (r *traceReceiver) trace(t *testing.T, name, key, value string) []span {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.Telemetry.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	traceID := ""
	for _, s := range r.spans {
		if s.name == name && s.attrs[key] == value {
			traceID = s.traceID
		}
	}
	var out []span
	for _, s := range r.spans {
		if traceID != "" && s.traceID == traceID {
			out = append(out, s)
		}
	}
	return out
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
	byName := map[string][]span{}
	byID := map[string]span{}
	for _, s := range spans {
		byName[s.name] = append(byName[s.name], s)
		byID[s.spanID] = s
	}
	root := byName["moc.upload.finalize"]
	if len(root) != 1 {
		t.Fatalf("%d finalize spans in the trace; spans: %v", len(root), names(spans))
	}
	f := root[0]
	if f.attrs["userId"] != c.user || f.attrs["fileCount"] == "" || f.attrs["totalSizeBytes"] == "" || f.attrs["sessionId"] == "" {
		t.Fatalf("finalize span attributes %v", f.attrs)
	}
	if parent := byID[f.parentID]; parent.name != "POST /api/mocs/uploads/finalize" {
		t.Fatalf("finalize span's parent is %q, want the HTTP server span", parent.name)
	}
	for _, child := range []string{"validate.session", "validate.files", "create.moc"} {
		if s := byName[child]; len(s) != 1 || s[0].parentID != f.spanID {
			t.Errorf("%s: %d spans, want 1 under the finalize span", child, len(s))
		}
	}
	if files := byName["validate.file"]; len(files) != 2 || byID[files[0].parentID].name != "validate.files" {
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
			dispatch = dispatch || x.parentID == f.spanID
			done = done || byID[x.parentID].name == work
		}
		if !dispatch || !done {
			t.Errorf("%s: dispatch under finalize %v, function's span under the dispatch %v", work, dispatch, done)
		}
	}
	if len(byName["Thumbnail"]) == 0 || len(byName["Webhook"]) == 0 {
		t.Errorf("no span of the Thumbnail or Webhook invocation in the trace: %v", names(spans))
	}
}

func names(spans []span) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.name
	}
	return out
}
