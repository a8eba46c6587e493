package telemetry

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Defaults of the configuration.
const (
	// DefaultServiceName is service.name without OTEL_SERVICE_NAME.
	DefaultServiceName = "moc-upload"
	// DefaultFlushTimeout bounds a flush without TRACE_FLUSH_TIMEOUT_MS.
	DefaultFlushTimeout = 500 * time.Millisecond
)

// config is what Setup reads from the environment.
type config struct {
	// endpoint is the URL spans are POSTed to; "" turns tracing off.
	endpoint     string
	headers      map[string]string
	timeout      time.Duration // 0: the exporter's default
	gzip         bool
	json         bool
	serviceName  string
	attributes   []attribute.KeyValue // OTEL_RESOURCE_ATTRIBUTES
	sampler      sdktrace.Sampler
	flushTimeout time.Duration
}

// configFrom reads the configuration through getenv; the error names every
// variable that is malformed.
func configFrom(getenv func(string) string) (config, error) {
	var problems []string
	str := func(name string) string { return strings.TrimSpace(getenv(name)) }
	// signal returns OTEL_EXPORTER_OTLP_TRACES_<name> when set, else
	// OTEL_EXPORTER_OTLP_<name>, and the variable's name.
	signal := func(name string) (string, string) {
		if v := str("OTEL_EXPORTER_OTLP_TRACES_" + name); v != "" {
			return v, "OTEL_EXPORTER_OTLP_TRACES_" + name
		}
		return str("OTEL_EXPORTER_OTLP_" + name), "OTEL_EXPORTER_OTLP_" + name
	}

	c := config{serviceName: DefaultServiceName, flushTimeout: DefaultFlushTimeout}

	switch v := strings.ToLower(str("OTEL_SDK_DISABLED")); v {
	case "", "false":
	case "true":
		return c, nil
	default:
		problems = append(problems, fmt.Sprintf("OTEL_SDK_DISABLED must be true or false, got %q", v))
	}
	off := false
	for _, e := range strings.Split(strings.ToLower(str("OTEL_TRACES_EXPORTER")), ",") {
		switch strings.TrimSpace(e) {
		case "", "otlp":
		case "none":
			off = true
		default:
			problems = append(problems, fmt.Sprintf("OTEL_TRACES_EXPORTER %q is not supported (otlp or none)", e))
		}
	}

	if v := str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); v != "" {
		u, err := httpURL(v)
		if err != nil {
			problems = append(problems, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "+err.Error())
		} else {
			if u.Path == "" {
				u.Path = "/"
			}
			c.endpoint = u.String()
		}
	} else if v := str("OTEL_EXPORTER_OTLP_ENDPOINT"); v != "" {
		u, err := httpURL(v)
		if err != nil {
			problems = append(problems, "OTEL_EXPORTER_OTLP_ENDPOINT: "+err.Error())
		} else {
			// A base URL: the signal's path goes after it.
			u.Path = path.Join("/", u.Path, "v1/traces")
			u.RawPath = ""
			c.endpoint = u.String()
		}
	}
	if v, name := signal("HEADERS"); v != "" {
		h, err := parseHeaders(v)
		if err != nil {
			problems = append(problems, name+": "+err.Error())
		}
		c.headers = h
	}
	if v, name := signal("TIMEOUT"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms < 1 {
			problems = append(problems, fmt.Sprintf("%s must be a whole number of milliseconds ≥ 1, got %q", name, v))
		}
		c.timeout = time.Duration(ms) * time.Millisecond
	}
	if v, name := signal("COMPRESSION"); v != "" {
		switch strings.ToLower(v) {
		case "gzip":
			c.gzip = true
		case "none":
		default:
			problems = append(problems, fmt.Sprintf("%s must be gzip or none, got %q", name, v))
		}
	}
	if v, name := signal("PROTOCOL"); v != "" {
		switch strings.ToLower(v) {
		case "http/protobuf":
		case "http/json":
			c.json = true
		case "grpc":
			problems = append(problems, name+" grpc is not supported: set OTEL_EXPORTER_OTLP_ENDPOINT to the collector's OTLP/HTTP port (4318)")
		default:
			problems = append(problems, fmt.Sprintf("%s must be http/protobuf or http/json, got %q", name, v))
		}
	}

	if v := str("OTEL_RESOURCE_ATTRIBUTES"); v != "" {
		attrs, err := parseResourceAttributes(v)
		if err != nil {
			problems = append(problems, "OTEL_RESOURCE_ATTRIBUTES: "+err.Error())
		}
		c.attributes = attrs
		for _, kv := range attrs {
			if kv.Key == "service.name" {
				c.serviceName = kv.Value.AsString()
			}
		}
	}
	if v := str("OTEL_SERVICE_NAME"); v != "" {
		c.serviceName = v
	}
	s, err := samplerFrom(str("OTEL_TRACES_SAMPLER"), str("OTEL_TRACES_SAMPLER_ARG"))
	if err != nil {
		problems = append(problems, err.Error())
	}
	c.sampler = s
	if v := str("TRACE_FLUSH_TIMEOUT_MS"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms < 1 {
			problems = append(problems, fmt.Sprintf("TRACE_FLUSH_TIMEOUT_MS must be a whole number of milliseconds ≥ 1, got %q", v))
		} else {
			c.flushTimeout = time.Duration(ms) * time.Millisecond
		}
	}

	if len(problems) > 0 {
		return config{}, errors.New("telemetry: " + strings.Join(problems, "; "))
	}
	if off {
		c.endpoint = ""
	}
	return c, nil
}

// httpURL parses an http:// or https:// URL with a host.
func httpURL(v string) (*url.URL, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q must be an http:// or https:// URL", v)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q must not have a query or fragment", v)
	}
	return u, nil
}

// parseHeaders reads OTEL_EXPORTER_OTLP_HEADERS: "k1=v1,k2=v2", values
// percent-encoded, keys HTTP header names.
func parseHeaders(v string) (map[string]string, error) {
	h := map[string]string{}
	err := parseKeyValues(v, validHeaderKey, func(k, val string) { h[k] = val })
	return h, err
}

func validHeaderKey(k string) bool {
	for _, r := range k {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

// parseResourceAttributes reads OTEL_RESOURCE_ATTRIBUTES: "k1=v1,k2=v2",
// values percent-encoded.
func parseResourceAttributes(v string) ([]attribute.KeyValue, error) {
	var attrs []attribute.KeyValue
	err := parseKeyValues(v, func(string) bool { return true }, func(k, val string) {
		attrs = append(attrs, attribute.String(k, val))
	})
	return attrs, err
}

// parseKeyValues reads the OTEL_* list format "k1=v1,k2=v2" (values
// percent-encoded, blanks around keys and values dropped, empty entries
// skipped) and hands each entry to add. The error names the malformed
// entries by key, never a value (an API key, often); the good entries are
// added all the same.
func parseKeyValues(v string, validKey func(string) bool, add func(k, val string)) error {
	var bad []string
	for _, pair := range strings.Split(v, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, val, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		dec, err := url.PathUnescape(strings.TrimSpace(val))
		if !ok || k == "" || !validKey(k) || err != nil {
			bad = append(bad, strconv.Quote(k))
			continue
		}
		add(k, dec)
	}
	if len(bad) > 0 {
		return fmt.Errorf("malformed entries %s (want key=percent-encoded value, comma-separated)", strings.Join(bad, ", "))
	}
	return nil
}

// samplerFrom is the sampler OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
// name, as the specification defines them; parentbased_always_on when
// name is empty.
func samplerFrom(name, arg string) (sdktrace.Sampler, error) {
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG must be a ratio between 0 and 1, got %q", arg)
		}
		return r, nil
	}
	switch strings.ToLower(name) {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio":
		r, err := ratio()
		return sdktrace.TraceIDRatioBased(r), err
	case "parentbased_traceidratio":
		r, err := ratio()
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), err
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER %q is not supported (always_on, always_off, traceidratio, "+
		"parentbased_always_on, parentbased_always_off, parentbased_traceidratio)", name)
}
