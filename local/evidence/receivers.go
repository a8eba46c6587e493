package evidence

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"

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

	mu         sync.Mutex
	deliveries []delivery
	spans      []span
}

type delivery struct {
	At       time.Time
	Path     string
	Header   http.Header
	Body     []byte
	Verified error
}

type span struct {
	Name, TraceID, SpanID, ParentID string
	Kind                            int32
	Start, End                      time.Time
	Attrs                           map[string]string
	Status                          string
}

func newReceiver(secret string) *receiver {
	r := &receiver{secret: secret}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil || req.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusBadRequest)
		return
	}
	if req.URL.Path == "/v1/traces" {
		var msg collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &msg); err != nil {
			http.Error(w, "not an OTLP/HTTP protobuf trace export", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range msg.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					r.spans = append(r.spans, span{
						Name: s.Name, TraceID: hex.EncodeToString(s.TraceId), SpanID: hex.EncodeToString(s.SpanId),
						ParentID: hex.EncodeToString(s.ParentSpanId), Kind: int32(s.Kind),
						Start: time.Unix(0, int64(s.StartTimeUnixNano)), End: time.Unix(0, int64(s.EndTimeUnixNano)),
						Attrs: attrs(s.Attributes), Status: s.GetStatus().GetCode().String(),
					})
				}
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		return
	}
	d := delivery{At: time.Now().UTC(), Path: req.URL.Path, Header: req.Header.Clone(), Body: body}
	d.Verified = webhook.Verify(r.secret, req.Header, body)
	r.mu.Lock()
	r.deliveries = append(r.deliveries, d)
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.Key] = x.StringValue
		case *commonpb.AnyValue_IntValue:
			m[kv.Key] = fmt.Sprint(x.IntValue)
		case *commonpb.AnyValue_BoolValue:
			m[kv.Key] = fmt.Sprint(x.BoolValue)
		case *commonpb.AnyValue_DoubleValue:
			m[kv.Key] = fmt.Sprint(x.DoubleValue)
		default:
			m[kv.Key] = v.String()
		}
	}
	return m
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

// trace is the trace holding a span named name whose attribute key is
// value, its spans in start order; nil when none came yet.
func (r *receiver) trace(name, key, value string) []span {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := ""
	for _, s := range r.spans {
		if s.Name == name && s.Attrs[key] == value {
			id = s.TraceID
		}
	}
	if id == "" {
		return nil
	}
	var out []span
	for _, s := range r.spans {
		if s.TraceID == id {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// spanTree renders spans as an indented tree (children under their
// parent, in start order) with each span's duration, offset from the
// root's start, kind and the attributes worth reading.
func spanTree(spans []span) string {
	byParent := map[string][]span{}
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.SpanID] = true
	}
	var roots []span
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
	var walk func(s span, depth int)
	walk = func(s span, depth int) {
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
