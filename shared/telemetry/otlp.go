package telemetry

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	hexenc "encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// exporter sends spans to an OTLP/HTTP receiver: one POST of an
// ExportTraceServiceRequest per export, protobuf (application/x-protobuf)
// or OTLP/JSON (application/json), gzipped or not, never retried (see
// "Considerations").
//
// It does what otlptracehttp's exporter does, which this package used
// before: that one encodes through the generated OTLP types, and so links
// the protobuf runtime, gRPC and grpc-gateway (the generated collector
// package imports them) into every function: 2.5 MB of a 21 MB binary,
// and a millisecond of package initialisation at every cold start
// (docs/benchmarks.md "Cold start and binary size"). Here the request is
// written with protowire, the wire format alone; the tests decode what it
// writes with the generated types.
type exporter struct {
	url     string
	headers map[string]string
	timeout time.Duration
	gzip    bool
	json    bool
	client  *http.Client
	stopped atomic.Bool
}

var _ sdktrace.SpanExporter = (*exporter)(nil)

// newExporter is the exporter of cfg. The TLS files (a CA to trust, a
// client certificate and key) are read from the process environment, as
// otlptracehttp read them.
func newExporter(cfg config) (*exporter, error) {
	timeout := cfg.timeout
	if timeout == 0 {
		timeout = defaultExportTimeout
	}
	tlsCfg, err := tlsFromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if tlsCfg != nil {
		transport.TLSClientConfig = tlsCfg
	}
	return &exporter{
		url: cfg.endpoint, headers: cfg.headers, timeout: timeout, gzip: cfg.gzip, json: cfg.json,
		client: &http.Client{Transport: transport},
	}, nil
}

// tlsFromEnv reads OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE (a PEM file of
// the CAs to trust instead of the system's), _CLIENT_CERTIFICATE and
// _CLIENT_KEY (PEM files of a client certificate). None set: nil.
func tlsFromEnv(getenv func(string) string) (*tls.Config, error) {
	file := func(name string) (string, string) {
		if v := getenv("OTEL_EXPORTER_OTLP_TRACES_" + name); v != "" {
			return v, "OTEL_EXPORTER_OTLP_TRACES_" + name
		}
		return getenv("OTEL_EXPORTER_OTLP_" + name), "OTEL_EXPORTER_OTLP_" + name
	}
	ca, caVar := file("CERTIFICATE")
	cert, certVar := file("CLIENT_CERTIFICATE")
	key, keyVar := file("CLIENT_KEY")
	if ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("telemetry: %s: %w", caVar, err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("telemetry: %s: no PEM certificate in %s", caVar, ca)
		}
	}
	if cert != "" || key != "" {
		if cert == "" || key == "" {
			return nil, fmt.Errorf("telemetry: %s and %s go together", certVar, keyVar)
		}
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("telemetry: %s, %s: %w", certVar, keyVar, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// ExportSpans sends spans in one request, within the export timeout.
func (e *exporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if e.stopped.Load() || len(spans) == 0 {
		return nil
	}
	req := requestOf(spans)
	var body []byte
	contentType := "application/x-protobuf"
	if e.json {
		var err error
		if body, err = json.Marshal(req); err != nil {
			return fmt.Errorf("telemetry: encode spans: %w", err)
		}
		contentType = "application/json"
	} else {
		body = req.appendProto(nil)
	}
	if e.gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(body) // a bytes.Buffer does not fail
		if err := zw.Close(); err != nil {
			return fmt.Errorf("telemetry: gzip spans: %w", err)
		}
		body = buf.Bytes()
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("telemetry: export: %w", err)
	}
	for k, v := range e.headers {
		hreq.Header.Set(k, v)
	}
	hreq.Header.Set("Content-Type", contentType)
	if e.gzip {
		hreq.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := e.client.Do(hreq)
	if err != nil {
		return fmt.Errorf("telemetry: export: %w", err)
	}
	defer resp.Body.Close()
	// Read what the receiver says (at most 4 KiB of it), so that the
	// connection is reused, and the reason when it refuses.
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("telemetry: export: %s answered %s: %s", e.url, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// Shutdown stops the exporter: later exports do nothing.
func (e *exporter) Shutdown(ctx context.Context) error {
	e.stopped.Store(true)
	e.client.CloseIdleConnections()
	return ctx.Err()
}

// The OTLP request, as its JSON form names it (OTLP/JSON: ids in hex,
// 64-bit integers as strings, enums as numbers); appendProto writes the
// protobuf form. Field numbers: opentelemetry-proto's
// collector/trace/v1, trace/v1, common/v1 and resource/v1.
type (
	exportRequest struct {
		ResourceSpans []*resourceSpans `json:"resourceSpans,omitempty"`
	}
	resourceSpans struct {
		Resource   *resourceJSON `json:"resource,omitempty"`
		ScopeSpans []*scopeSpans `json:"scopeSpans,omitempty"`
		SchemaURL  string        `json:"schemaUrl,omitempty"`
	}
	resourceJSON struct {
		Attributes []keyValue `json:"attributes,omitempty"`
	}
	scopeSpans struct {
		Scope     *scopeJSON  `json:"scope,omitempty"`
		Spans     []*spanJSON `json:"spans,omitempty"`
		SchemaURL string      `json:"schemaUrl,omitempty"`
	}
	scopeJSON struct {
		Name       string     `json:"name,omitempty"`
		Version    string     `json:"version,omitempty"`
		Attributes []keyValue `json:"attributes,omitempty"`
	}
	spanJSON struct {
		TraceID                hexID      `json:"traceId"`
		SpanID                 hexID      `json:"spanId"`
		TraceState             string     `json:"traceState,omitempty"`
		ParentSpanID           hexID      `json:"parentSpanId,omitempty"`
		Flags                  uint32     `json:"flags,omitempty"`
		Name                   string     `json:"name,omitempty"`
		Kind                   int32      `json:"kind,omitempty"`
		StartTimeUnixNano      uint64s    `json:"startTimeUnixNano,omitempty"`
		EndTimeUnixNano        uint64s    `json:"endTimeUnixNano,omitempty"`
		Attributes             []keyValue `json:"attributes,omitempty"`
		DroppedAttributesCount uint32     `json:"droppedAttributesCount,omitempty"`
		Events                 []event    `json:"events,omitempty"`
		DroppedEventsCount     uint32     `json:"droppedEventsCount,omitempty"`
		Links                  []link     `json:"links,omitempty"`
		DroppedLinksCount      uint32     `json:"droppedLinksCount,omitempty"`
		Status                 *status    `json:"status,omitempty"`
	}
	event struct {
		TimeUnixNano           uint64s    `json:"timeUnixNano,omitempty"`
		Name                   string     `json:"name,omitempty"`
		Attributes             []keyValue `json:"attributes,omitempty"`
		DroppedAttributesCount uint32     `json:"droppedAttributesCount,omitempty"`
	}
	link struct {
		TraceID                hexID      `json:"traceId"`
		SpanID                 hexID      `json:"spanId"`
		Attributes             []keyValue `json:"attributes,omitempty"`
		DroppedAttributesCount uint32     `json:"droppedAttributesCount,omitempty"`
		Flags                  uint32     `json:"flags,omitempty"`
	}
	status struct {
		Message string `json:"message,omitempty"`
		Code    int32  `json:"code,omitempty"`
	}
	keyValue struct {
		Key   string   `json:"key"`
		Value anyValue `json:"value"`
	}
	// anyValue is one of its fields, or none (an empty attribute).
	anyValue struct {
		StringValue *string     `json:"stringValue,omitempty"`
		BoolValue   *bool       `json:"boolValue,omitempty"`
		IntValue    *int64s     `json:"intValue,omitempty"`
		DoubleValue *float64s   `json:"doubleValue,omitempty"`
		ArrayValue  *arrayValue `json:"arrayValue,omitempty"`
		KvlistValue *kvList     `json:"kvlistValue,omitempty"`
		BytesValue  []byte      `json:"bytesValue,omitempty"`
	}
	arrayValue struct {
		Values []anyValue `json:"values,omitempty"`
	}
	kvList struct {
		Values []keyValue `json:"values,omitempty"`
	}
)

// hexID is a trace or span id, in upper-case hex as otlptracehttp wrote
// it (OTLP/JSON reads either case); empty, it is left out.
type hexID []byte

func (h hexID) MarshalJSON() ([]byte, error) {
	return []byte(`"` + strings.ToUpper(hexenc.EncodeToString(h)) + `"`), nil
}

// int64s and uint64s are written as JSON strings, float64s as a number or
// "NaN", "Infinity", "-Infinity" (proto3's JSON mapping).
type (
	int64s   int64
	uint64s  uint64
	float64s float64
)

func (i int64s) MarshalJSON() ([]byte, error) {
	return []byte(`"` + strconv.FormatInt(int64(i), 10) + `"`), nil
}

func (u uint64s) MarshalJSON() ([]byte, error) {
	return []byte(`"` + strconv.FormatUint(uint64(u), 10) + `"`), nil
}

func (f float64s) MarshalJSON() ([]byte, error) {
	switch v := float64(f); {
	case math.IsNaN(v):
		return []byte(`"NaN"`), nil
	case math.IsInf(v, 1):
		return []byte(`"Infinity"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Infinity"`), nil
	default:
		return json.Marshal(v)
	}
}

// OTLP's span flags: the W3C trace flags, and whether the parent (or a
// link's span) is remote, and that the sender knows it.
const (
	flagHasIsRemote = 0x100
	flagIsRemote    = 0x200
)

// requestOf groups spans by resource, then by instrumentation scope, in
// the order they come.
func requestOf(spans []sdktrace.ReadOnlySpan) *exportRequest {
	type scopeKey struct {
		res   attribute.Distinct
		scope instrumentation.Scope
	}
	req := &exportRequest{}
	byRes := map[attribute.Distinct]*resourceSpans{}
	byScope := map[scopeKey]*scopeSpans{}
	for _, s := range spans {
		if s == nil {
			continue
		}
		res := s.Resource()
		rk := res.Equivalent()
		rs := byRes[rk]
		if rs == nil {
			rs = &resourceSpans{Resource: &resourceJSON{Attributes: keyValues(res.Attributes())}, SchemaURL: res.SchemaURL()}
			byRes[rk] = rs
			req.ResourceSpans = append(req.ResourceSpans, rs)
		}
		sk := scopeKey{rk, s.InstrumentationScope()}
		ss := byScope[sk]
		if ss == nil {
			ss = &scopeSpans{SchemaURL: sk.scope.SchemaURL}
			if sk.scope != (instrumentation.Scope{}) {
				ss.Scope = &scopeJSON{Name: sk.scope.Name, Version: sk.scope.Version,
					Attributes: keyValues(sk.scope.Attributes.ToSlice())}
			}
			byScope[sk] = ss
			rs.ScopeSpans = append(rs.ScopeSpans, ss)
		}
		ss.Spans = append(ss.Spans, spanOf(s))
	}
	return req
}

func spanOf(s sdktrace.ReadOnlySpan) *spanJSON {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	out := &spanJSON{
		TraceID:                tid[:],
		SpanID:                 sid[:],
		TraceState:             sc.TraceState().String(),
		Flags:                  flags(sc.TraceFlags(), s.Parent()),
		Name:                   s.Name(),
		Kind:                   int32(s.SpanKind()), // trace.SpanKind's values are OTLP's
		StartTimeUnixNano:      unixNano(s.StartTime()),
		EndTimeUnixNano:        unixNano(s.EndTime()),
		Attributes:             keyValues(s.Attributes()),
		DroppedAttributesCount: count(s.DroppedAttributes()),
		DroppedEventsCount:     count(s.DroppedEvents()),
		DroppedLinksCount:      count(s.DroppedLinks()),
		Status:                 &status{Message: s.Status().Description},
	}
	if psid := s.Parent().SpanID(); psid.IsValid() {
		out.ParentSpanID = psid[:]
	}
	switch s.Status().Code {
	case codes.Ok:
		out.Status.Code = 1 // STATUS_CODE_OK
	case codes.Error:
		out.Status.Code = 2 // STATUS_CODE_ERROR
	}
	for _, e := range s.Events() {
		out.Events = append(out.Events, event{TimeUnixNano: unixNano(e.Time), Name: e.Name,
			Attributes: keyValues(e.Attributes), DroppedAttributesCount: count(e.DroppedAttributeCount)})
	}
	for _, l := range s.Links() {
		ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		// No trace_state: otlptracehttp sent none for links either.
		out.Links = append(out.Links, link{TraceID: ltid[:], SpanID: lsid[:],
			Attributes: keyValues(l.Attributes), DroppedAttributesCount: count(l.DroppedAttributeCount),
			Flags: flags(l.SpanContext.TraceFlags(), l.SpanContext)})
	}
	return out
}

func flags(tf trace.TraceFlags, sc trace.SpanContext) uint32 {
	f := uint32(tf) | flagHasIsRemote
	if sc.IsRemote() {
		f |= flagIsRemote
	}
	return f
}

func unixNano(t time.Time) uint64s { return uint64s(max(0, t.UnixNano())) }

func count(n int) uint32 { return uint32(min(max(n, 0), math.MaxUint32)) }

func keyValues(attrs []attribute.KeyValue) []keyValue {
	if len(attrs) == 0 {
		return nil
	}
	out := make([]keyValue, len(attrs))
	for i, kv := range attrs {
		out[i] = keyValue{Key: string(kv.Key), Value: valueOf(kv.Value)}
	}
	return out
}

func valueOf(v attribute.Value) anyValue {
	ptr := func(s string) *string { return &s }
	switch v.Type() {
	case attribute.BOOL:
		b := v.AsBool()
		return anyValue{BoolValue: &b}
	case attribute.INT64:
		i := int64s(v.AsInt64())
		return anyValue{IntValue: &i}
	case attribute.FLOAT64:
		f := float64s(v.AsFloat64())
		return anyValue{DoubleValue: &f}
	case attribute.STRING:
		return anyValue{StringValue: ptr(v.AsString())}
	case attribute.BYTESLICE:
		b := v.AsByteSlice()
		if b == nil {
			b = []byte{}
		}
		return anyValue{BytesValue: b}
	case attribute.BOOLSLICE:
		return arrayOf(v.AsBoolSlice(), func(b bool) anyValue { return anyValue{BoolValue: &b} })
	case attribute.INT64SLICE:
		return arrayOf(v.AsInt64Slice(), func(i int64) anyValue { j := int64s(i); return anyValue{IntValue: &j} })
	case attribute.FLOAT64SLICE:
		return arrayOf(v.AsFloat64Slice(), func(f float64) anyValue { g := float64s(f); return anyValue{DoubleValue: &g} })
	case attribute.STRINGSLICE:
		return arrayOf(v.AsStringSlice(), func(s string) anyValue { return anyValue{StringValue: &s} })
	case attribute.SLICE:
		return arrayOf(v.AsSlice(), valueOf)
	case attribute.MAP:
		return anyValue{KvlistValue: &kvList{Values: keyValues(v.AsMap())}}
	case attribute.EMPTY:
		return anyValue{}
	default:
		return anyValue{StringValue: ptr("INVALID")}
	}
}

func arrayOf[T any](vs []T, of func(T) anyValue) anyValue {
	a := &arrayValue{Values: make([]anyValue, len(vs))}
	for i, v := range vs {
		a.Values[i] = of(v)
	}
	return anyValue{ArrayValue: a}
}

// The protobuf form. Each message is appended as a length-delimited
// field: written after its tag into the same slice, then its length put
// in front (appendMessage).

func (r *exportRequest) appendProto(b []byte) []byte {
	for _, rs := range r.ResourceSpans {
		b = appendMessage(b, 1, rs.appendProto)
	}
	return b
}

func (rs *resourceSpans) appendProto(b []byte) []byte {
	if rs.Resource != nil {
		b = appendMessage(b, 1, func(b []byte) []byte { return appendKeyValues(b, 1, rs.Resource.Attributes) })
	}
	for _, ss := range rs.ScopeSpans {
		b = appendMessage(b, 2, ss.appendProto)
	}
	return appendString(b, 3, rs.SchemaURL)
}

func (ss *scopeSpans) appendProto(b []byte) []byte {
	if sc := ss.Scope; sc != nil {
		b = appendMessage(b, 1, func(b []byte) []byte {
			b = appendString(b, 1, sc.Name)
			b = appendString(b, 2, sc.Version)
			return appendKeyValues(b, 3, sc.Attributes)
		})
	}
	for _, s := range ss.Spans {
		b = appendMessage(b, 2, s.appendProto)
	}
	return appendString(b, 3, ss.SchemaURL)
}

func (s *spanJSON) appendProto(b []byte) []byte {
	b = appendBytes(b, 1, s.TraceID)
	b = appendBytes(b, 2, s.SpanID)
	b = appendString(b, 3, s.TraceState)
	b = appendBytes(b, 4, s.ParentSpanID)
	b = appendString(b, 5, s.Name)
	b = appendVarint(b, 6, uint64(s.Kind))
	b = appendFixed64(b, 7, uint64(s.StartTimeUnixNano))
	b = appendFixed64(b, 8, uint64(s.EndTimeUnixNano))
	b = appendKeyValues(b, 9, s.Attributes)
	b = appendVarint(b, 10, uint64(s.DroppedAttributesCount))
	for _, e := range s.Events {
		b = appendMessage(b, 11, func(b []byte) []byte {
			b = appendFixed64(b, 1, uint64(e.TimeUnixNano))
			b = appendString(b, 2, e.Name)
			b = appendKeyValues(b, 3, e.Attributes)
			return appendVarint(b, 4, uint64(e.DroppedAttributesCount))
		})
	}
	b = appendVarint(b, 12, uint64(s.DroppedEventsCount))
	for _, l := range s.Links {
		b = appendMessage(b, 13, func(b []byte) []byte {
			b = appendBytes(b, 1, l.TraceID)
			b = appendBytes(b, 2, l.SpanID)
			b = appendKeyValues(b, 4, l.Attributes)
			b = appendVarint(b, 5, uint64(l.DroppedAttributesCount))
			return appendFixed32(b, 6, l.Flags)
		})
	}
	b = appendVarint(b, 14, uint64(s.DroppedLinksCount))
	if st := s.Status; st != nil {
		b = appendMessage(b, 15, func(b []byte) []byte {
			b = appendString(b, 2, st.Message)
			return appendVarint(b, 3, uint64(st.Code))
		})
	}
	return appendFixed32(b, 16, s.Flags)
}

func appendKeyValues(b []byte, num protowire.Number, kvs []keyValue) []byte {
	for _, kv := range kvs {
		b = appendMessage(b, num, kv.appendProto)
	}
	return b
}

func (kv keyValue) appendProto(b []byte) []byte {
	b = appendString(b, 1, kv.Key)
	return appendMessage(b, 2, kv.Value.appendProto)
}

// appendProto writes the value's one field, zero or not: in a oneof, a
// zero value is still a value.
func (v anyValue) appendProto(b []byte) []byte {
	switch {
	case v.StringValue != nil:
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		return protowire.AppendString(b, *v.StringValue)
	case v.BoolValue != nil:
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(*v.BoolValue))
	case v.IntValue != nil:
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(*v.IntValue))
	case v.DoubleValue != nil:
		b = protowire.AppendTag(b, 4, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(float64(*v.DoubleValue)))
	case v.ArrayValue != nil:
		return appendMessage(b, 5, func(b []byte) []byte {
			for _, e := range v.ArrayValue.Values {
				b = appendMessage(b, 1, e.appendProto)
			}
			return b
		})
	case v.KvlistValue != nil:
		return appendMessage(b, 6, func(b []byte) []byte { return appendKeyValues(b, 1, v.KvlistValue.Values) })
	case v.BytesValue != nil:
		b = protowire.AppendTag(b, 7, protowire.BytesType)
		return protowire.AppendBytes(b, v.BytesValue)
	}
	return b
}

// appendMessage appends field num holding the message body writes.
func appendMessage(b []byte, num protowire.Number, body func([]byte) []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	// The length goes before the body, and its size depends on it: write
	// the body after a one-byte placeholder, then make room if needed.
	at := len(b)
	b = append(b, 0)
	b = body(b)
	n := len(b) - at - 1
	size := protowire.SizeVarint(uint64(n))
	if size > 1 {
		b = append(b, make([]byte, size-1)...)
		copy(b[at+size:], b[at+1:at+1+n])
	}
	protowire.AppendVarint(b[:at], uint64(n))
	return b
}

// Proto3 leaves zero scalars out.

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendFixed64(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

func appendFixed32(b []byte, num protowire.Number, v uint32) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, v)
}
