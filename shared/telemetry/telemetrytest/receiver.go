// Package telemetrytest is the other end of package telemetry's exporter
// for tests and local runs: an OTLP/HTTP (protobuf) trace receiver that
// keeps every span it gets, flattened to what a check or a document
// reads.
package telemetrytest

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// Span is what the receiver keeps of an exported span.
type Span struct {
	Name, TraceID, SpanID, ParentID string // the ids in hex; ParentID "" for a root
	Kind                            int32  // OTLP's SpanKind: 1 internal, 2 server, 3 client, …
	Start, End                      time.Time
	Attrs                           map[string]string // each value as text
	Status                          string            // the status code's name, STATUS_CODE_…
}

// Receiver is an http.Handler for POST /v1/traces, where an exporter
// given OTEL_EXPORTER_OTLP_ENDPOINT=<the server's URL> sends its spans.
// Anything else, or a body that is not an export request, is answered 400.
// The zero value is ready.
type Receiver struct {
	mu      sync.Mutex
	spans   []Span
	exports int
}

func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	var msg collectortrace.ExportTraceServiceRequest
	if err != nil || req.Method != http.MethodPost || req.URL.Path != "/v1/traces" || proto.Unmarshal(body, &msg) != nil {
		http.Error(w, "not an OTLP/HTTP protobuf trace export", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	for _, rs := range msg.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				r.spans = append(r.spans, Span{
					Name: s.Name, TraceID: hex.EncodeToString(s.TraceId), SpanID: hex.EncodeToString(s.SpanId),
					ParentID: hex.EncodeToString(s.ParentSpanId), Kind: int32(s.Kind),
					Start: time.Unix(0, int64(s.StartTimeUnixNano)), End: time.Unix(0, int64(s.EndTimeUnixNano)),
					Attrs: attrs(s.Attributes), Status: s.GetStatus().GetCode().String(),
				})
			}
		}
	}
	r.exports++
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
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

// Spans are the spans received so far, in the order they came.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Count is how many spans were received so far (since Forget).
func (r *Receiver) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.spans)
}

// Exports is how many export requests were received.
func (r *Receiver) Exports() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exports
}

// Forget drops the spans received so far (a long benchmark's would pile
// up); Exports still counts their requests.
func (r *Receiver) Forget() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spans = nil
}

// Trace is the trace holding a span named name whose attribute key is
// value (the last such span received, should there be several), its
// spans in start order; nil when none came yet.
func (r *Receiver) Trace(name, key, value string) []Span {
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
	var out []Span
	for _, s := range r.spans {
		if s.TraceID == id {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}
