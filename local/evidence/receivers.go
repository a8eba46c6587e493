package evidence

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/mocbuilders/moc-upload/shared/telemetry/telemetrytest"
	"github.com/mocbuilders/moc-upload/shared/webhook"
)

// receiver is the run's webhook receiver and OTLP/HTTP trace receiver, on
// one loopback port, as __http__/hook-receiver.mjs is for `make http`:
// POST /v1/traces takes the stack's span exports (protobuf), any other
// POST is a webhook delivery, answered 204 and kept with whether its
// signature verified.
type receiver struct {
	*httptest.Server
	secret string
	traces telemetrytest.Receiver

	mu         sync.Mutex
	deliveries []delivery
}

type delivery struct {
	At       time.Time
	Path     string
	Header   http.Header
	Body     []byte
	Verified error
}

func newReceiver(secret string) *receiver {
	r := &receiver{secret: secret}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == "/v1/traces" {
		r.traces.ServeHTTP(w, req)
		return
	}
	body, err := io.ReadAll(req.Body)
	if err != nil || req.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusBadRequest)
		return
	}
	d := delivery{At: time.Now().UTC(), Path: req.URL.Path, Header: req.Header.Clone(), Body: body}
	d.Verified = webhook.Verify(r.secret, req.Header, body)
	r.mu.Lock()
	r.deliveries = append(r.deliveries, d)
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// deliveriesFor are the deliveries whose payload names mocID.
func (r *receiver) deliveriesFor(mocID string) []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivery
	for _, d := range r.deliveries {
		var p struct {
			MocID string `json:"mocId"`
		}
		if json.Unmarshal(d.Body, &p) == nil && p.MocID == mocID {
			out = append(out, d)
		}
	}
	return out
}

func (r *receiver) allDeliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.deliveries...)
}

// spanTree renders spans as an indented tree (children under their
// parent, in start order) with each span's duration, offset from the
// root's start, kind and the attributes worth reading.
func spanTree(spans []telemetrytest.Span) string {
	byParent := map[string][]telemetrytest.Span{}
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.SpanID] = true
	}
	var roots []telemetrytest.Span
	for _, s := range spans {
		if s.ParentID == "" || !ids[s.ParentID] {
			roots = append(roots, s)
			continue
		}
		byParent[s.ParentID] = append(byParent[s.ParentID], s)
	}
	if len(roots) == 0 {
		return ""
	}
	t0 := roots[0].Start
	var b strings.Builder
	var walk func(s telemetrytest.Span, depth int)
	walk = func(s telemetrytest.Span, depth int) {
		fmt.Fprintf(&b, "%s%s  [%s, +%s … +%s, %s, status %s]%s\n", strings.Repeat("  ", depth), s.Name, kindName(s.Kind),
			ms(s.Start.Sub(t0)), ms(s.End.Sub(t0)), ms(s.End.Sub(s.Start)), strings.TrimPrefix(s.Status, "STATUS_CODE_"), attrList(s.Attrs))
		for _, c := range byParent[s.SpanID] {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	return b.String()
}

func kindName(k int32) string {
	switch k {
	case 1:
		return "internal"
	case 2:
		return "server"
	case 3:
		return "client"
	case 4:
		return "producer"
	case 5:
		return "consumer"
	}
	return "unspecified"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// attrList shows a span's own attributes, not the semantic-convention
// noise of HTTP and database clients.
func attrList(m map[string]string) string {
	keep := []string{"sessionId", "userId", "mocId", "fileId", "name", "size", "mimeType", "fileCount", "totalSizeBytes",
		"resumed", "reason", "completed", "incomplete", "failed", "slug", "error.code", "http.route",
		"http.response.status_code", "kind", "outboxId", "rpc.method", "aws.s3.key", "db.operation.name"}
	var parts []string
	for _, k := range keep {
		if v, ok := m[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, " ")
}
