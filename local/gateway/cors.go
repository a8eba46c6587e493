package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// CORSConfig is an HTTP API's CorsConfiguration (see the package
// documentation for how the gateway applies it).
type CORSConfig struct {
	AllowOrigins  []string // "*", "https://*", "http://*" or exact origins
	AllowMethods  []string // "*" allows any
	AllowHeaders  []string // "*" allows any; matched case-insensitively
	ExposeHeaders []string
	MaxAge        int // seconds; 0 sends no Access-Control-Max-Age
}

// TemplateCORS is template.yaml's HttpApi CorsConfiguration for origins,
// with X-Request-Id exposed as well (the old web client reads it).
func TemplateCORS(origins []string) CORSConfig {
	return CORSConfig{
		AllowOrigins: origins,
		AllowMethods: []string{"GET", "POST", "PUT", "DELETE", "OPTIONS"},
		// X-CSRF-Token: the old web client sends it when it has one; the
		// service ignores it, but a preflight must allow it.
		AllowHeaders:  []string{"Authorization", "Content-Type", "Content-MD5", "X-Correlation-Id", "X-CSRF-Token"},
		ExposeHeaders: []string{"X-Correlation-Id", "X-Request-Id", "Retry-After"},
		MaxAge:        600,
	}
}

// ParseCORSOrigins reads LOCAL_CORS_ORIGINS: comma-separated origins,
// "" meaning "*" (any origin), "off" meaning no CORS at all (nil).
func ParseCORSOrigins(s string) []string {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return []string{"*"}
	case strings.EqualFold(s, "off"):
		return nil
	}
	var origins []string
	for _, o := range strings.Split(s, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	return origins
}

// Handler wraps next with the CORS behaviour of an HTTP API configured
// with c. It fails on an origin that API Gateway would never match.
func (c CORSConfig) Handler(next http.Handler) (http.Handler, error) {
	if err := CheckCORSOrigins(c.AllowOrigins); err != nil {
		return nil, err
	}
	return &corsHandler{cfg: c, next: next}, nil
}

// CheckCORSOrigins fails on an origin API Gateway would never match.
func CheckCORSOrigins(origins []string) error {
	for _, o := range origins {
		if err := checkOrigin(o); err != nil {
			return err
		}
	}
	return nil
}

func checkOrigin(o string) error {
	if o == "*" || o == "http://*" || o == "https://*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("gateway: CORS origin %q is not \"*\", \"https://*\", \"http://*\" or scheme://host[:port] (no path, not even a trailing slash)", o)
	}
	return nil
}

type corsHandler struct {
	cfg  CORSConfig
	next http.Handler
}

func (h *corsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	allowOrigin := h.cfg.allowOrigin(origin)
	if r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != "" {
		h.preflight(w, r, allowOrigin)
		return
	}
	h.next.ServeHTTP(&corsWriter{ResponseWriter: w, cfg: &h.cfg, allowOrigin: allowOrigin}, r)
}

// preflight answers a preflight request as API Gateway does: 204, with the
// allow headers only when the origin, method and headers are allowed.
func (h *corsHandler) preflight(w http.ResponseWriter, r *http.Request, allowOrigin string) {
	c := h.cfg
	if allowOrigin != "" && c.allowsMethod(r.Header.Get("Access-Control-Request-Method")) &&
		c.allowsHeaders(r.Header.Values("Access-Control-Request-Headers")) {
		hd := w.Header()
		setAllowOrigin(hd, allowOrigin)
		hd.Set("Access-Control-Allow-Methods", strings.Join(c.AllowMethods, ","))
		if len(c.AllowHeaders) > 0 {
			hd.Set("Access-Control-Allow-Headers", strings.Join(lower(c.AllowHeaders), ","))
		}
		if c.MaxAge > 0 {
			hd.Set("Access-Control-Max-Age", fmt.Sprint(c.MaxAge))
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// allowOrigin is the Access-Control-Allow-Origin value for a request from
// origin, "" when origin is not allowed.
func (c CORSConfig) allowOrigin(origin string) string {
	if origin == "" {
		return ""
	}
	lo := strings.ToLower(origin)
	matched := false
	for _, o := range c.AllowOrigins {
		if o == "*" {
			return "*"
		}
		switch lower := strings.ToLower(o); {
		case lower == "https://*" || lower == "http://*":
			matched = matched || (strings.HasPrefix(lo, strings.TrimSuffix(lower, "*")) && len(lo) > len(lower)-1)
		default:
			matched = matched || lo == lower
		}
	}
	if matched {
		return origin
	}
	return ""
}

func (c CORSConfig) allowsMethod(method string) bool {
	for _, m := range c.AllowMethods {
		if m == "*" || strings.EqualFold(m, strings.TrimSpace(method)) {
			return true
		}
	}
	return false
}

func (c CORSConfig) allowsHeaders(values []string) bool {
	allowed := map[string]bool{}
	for _, h := range c.AllowHeaders {
		allowed[strings.ToLower(h)] = true
	}
	for _, v := range values {
		for _, h := range strings.Split(v, ",") {
			h = strings.ToLower(strings.TrimSpace(h))
			if h != "" && !allowed[h] && !allowed["*"] {
				return false
			}
		}
	}
	return true
}

func setAllowOrigin(h http.Header, allowOrigin string) {
	h.Set("Access-Control-Allow-Origin", allowOrigin)
	if allowOrigin != "*" {
		h.Add("Vary", "Origin")
	}
}

func lower(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}

// corsWriter drops the function's Access-Control-* headers and, for an
// allowed origin, adds the configured ones, just before the status goes
// out.
type corsWriter struct {
	http.ResponseWriter
	cfg         *CORSConfig
	allowOrigin string
	wrote       bool
}

func (w *corsWriter) WriteHeader(status int) {
	if !w.wrote {
		w.wrote = true
		h := w.Header()
		for k := range h {
			if strings.HasPrefix(http.CanonicalHeaderKey(k), "Access-Control-") {
				delete(h, k)
			}
		}
		if w.allowOrigin != "" {
			setAllowOrigin(h, w.allowOrigin)
			if len(w.cfg.ExposeHeaders) > 0 {
				h.Set("Access-Control-Expose-Headers", strings.Join(w.cfg.ExposeHeaders, ","))
			}
		}
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *corsWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *corsWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
