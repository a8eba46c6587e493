package functions_test

// The routing table (httpapi.Routes) is the single source of truth: this test
// checks that template.yaml deploys exactly its routes, each as its own
// function built from functions/<Function>, and that every route has a sample
// event in events/ that API Gateway could have sent.

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/cloudformation/global"
	"github.com/awslabs/goformation/v7/cloudformation/serverless"
	"github.com/awslabs/goformation/v7/intrinsics"

	"github.com/mocbuilders/moc-upload/shared/httpapi"
)

const (
	templatePath = "../template.yaml"
	eventsDir    = "../events"
	// httpAPIID is the logical id of the AWS::Serverless::HttpApi every
	// route's event must attach to (not SAM's implicit API).
	httpAPIID = "HttpApi"
)

// requiredEnv is what every function must be given in AWS: DATABASE_URL and
// S3_BUCKET are required (shared/app/config.go), and the others must follow
// the stack's parameters rather than the code's defaults. Each must be set on
// the function itself (goformation does not apply Globals).
var requiredEnv = []string{
	"DATABASE_URL",
	"S3_BUCKET",
	"STAGE",
	"UPLOAD_RATE_LIMIT_PER_DAY",
	"UPLOAD_SESSION_TTL_MINUTES",
}

// nonRouteFunctions are the template's functions that serve no HTTP route
// (async jobs, WebSocket handlers). None yet; add them here by logical id.
var nonRouteFunctions = map[string]bool{}

func logicalID(rt httpapi.Route) string { return rt.Function + "Function" }

// loadTemplate parses template.yaml. goformation resolves intrinsics to ""
// by default; here `!Ref X` becomes the logical id "X" (a one-element list
// for list-typed parameters, so list properties still parse), which lets
// the test see which API and bucket a property points at.
func loadTemplate(t *testing.T) *cloudformation.Template {
	t.Helper()
	ref := func(_ string, input, template any) any {
		name, ok := input.(string)
		if !ok {
			return nil
		}
		if params, ok := template.(map[string]any)["Parameters"].(map[string]any); ok {
			if p, ok := params[name].(map[string]any); ok {
				if typ, _ := p["Type"].(string); typ == "CommaDelimitedList" || strings.HasPrefix(typ, "List<") {
					return []any{name}
				}
			}
		}
		return name
	}
	tmpl, err := goformation.OpenWithOptions(templatePath, &intrinsics.ProcessorOptions{
		IntrinsicHandlerOverrides: map[string]intrinsics.IntrinsicHandler{"Ref": ref},
	})
	if err != nil {
		t.Fatalf("parse %s: %v", templatePath, err)
	}
	return tmpl
}

// httpAPIEvents returns a function's events of type HttpApi by name. (An Api
// event fills HttpApiEvent too, so the type decides, not the field.)
func httpAPIEvents(fn *serverless.Function) map[string]*serverless.Function_HttpApiEvent {
	out := map[string]*serverless.Function_HttpApiEvent{}
	for name, ev := range fn.Events {
		if ev.Type == "HttpApi" && ev.Properties != nil {
			out[name] = ev.Properties.HttpApiEvent
		}
	}
	return out
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func TestTemplateServesEveryRoute(t *testing.T) {
	tmpl := loadTemplate(t)
	if _, ok := tmpl.GetAllServerlessHttpApiResources()[httpAPIID]; !ok {
		t.Fatalf("template has no AWS::Serverless::HttpApi %q", httpAPIID)
	}
	for _, rt := range httpapi.Routes {
		t.Run(rt.Function, func(t *testing.T) {
			id := logicalID(rt)
			fn, err := tmpl.GetServerlessFunctionWithName(id)
			if err != nil {
				t.Fatalf("route %q: no AWS::Serverless::Function %s in the template", rt.RouteKey(), id)
			}

			if got := fn.AWSCloudFormationMetadata["BuildMethod"]; got != "makefile" {
				t.Errorf("%s: Metadata.BuildMethod = %v, want makefile (the Makefile's build-%s target)", id, got, id)
			}
			if fn.CodeUri == nil || str(fn.CodeUri.String) != "." {
				t.Errorf("%s: CodeUri must be \".\" (the repository root, where the Makefile is)", id)
			}

			evs := httpAPIEvents(fn)
			if len(evs) != 1 {
				t.Errorf("%s: %d HttpApi events, want exactly one for %q", id, len(evs), rt.RouteKey())
			}
			for name, ev := range evs {
				if ev == nil {
					t.Errorf("%s: HttpApi event %s has no properties", id, name)
					continue
				}
				if got := str(ev.Method); got != rt.Method {
					t.Errorf("%s: event %s Method = %q, want %q", id, name, got, rt.Method)
				}
				if got := str(ev.Path); got != rt.Path {
					t.Errorf("%s: event %s Path = %q, want %q", id, name, got, rt.Path)
				}
				if got := str(ev.ApiId); got != httpAPIID {
					t.Errorf("%s: event %s ApiId = %q, want !Ref %s", id, name, got, httpAPIID)
				}
			}

			var vars map[string]string
			if fn.Environment != nil {
				vars = fn.Environment.Variables
			}
			for _, name := range requiredEnv {
				if v, ok := vars[name]; !ok || v == "" {
					t.Errorf("%s: Environment.Variables lacks %s (Globals are not checked: set it on the function)", id, name)
				}
			}
			if got := vars["S3_BUCKET"]; got != "" && got != "UploadBucket" {
				t.Errorf("%s: S3_BUCKET = %q, want !Ref UploadBucket", id, got)
			}
		})
	}
}

func TestTemplateServesNothingElse(t *testing.T) {
	tmpl := loadTemplate(t)
	byID := map[string]httpapi.Route{}
	for _, rt := range httpapi.Routes {
		byID[logicalID(rt)] = rt
	}
	var ids []string
	for id := range tmpl.GetAllServerlessFunctionResources() {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		fn := tmpl.GetAllServerlessFunctionResources()[id]
		rt, isRoute := byID[id]
		if !isRoute && !nonRouteFunctions[id] {
			t.Errorf("function %s is in the template but no route of httpapi.Routes names it", id)
		}
		for name, ev := range fn.Events {
			if ev.Type == "Api" {
				t.Errorf("%s: event %s is a REST API (Api) event; routes are HttpApi events", id, name)
			}
		}
		for name, ev := range httpAPIEvents(fn) {
			if ev == nil {
				continue
			}
			key := str(ev.Method) + " " + str(ev.Path)
			if !isRoute || key != rt.RouteKey() {
				t.Errorf("%s: HttpApi event %s (%q) is not this function's route in httpapi.Routes", id, name, key)
			}
		}
	}
}

// Every function the template builds runs the same way: the Makefile builds
// a linux/arm64 binary named bootstrap for the OS-only runtime. The values
// may come from Globals.Function (which goformation parses but does not
// apply) or from the function itself.
func TestTemplateRuntime(t *testing.T) {
	tmpl := loadTemplate(t)
	g, _ := tmpl.Globals["Function"].(*global.Function)
	if g == nil {
		g = &global.Function{}
	}
	orGlobal := func(own, glob string) string {
		if own != "" {
			return own
		}
		return glob
	}
	var globalArch string
	if g.Architectures != nil {
		globalArch = strings.Join(*g.Architectures, ",")
	}
	for _, rt := range httpapi.Routes {
		id := logicalID(rt)
		fn, err := tmpl.GetServerlessFunctionWithName(id)
		if err != nil {
			continue // reported by TestTemplateServesEveryRoute
		}
		got := map[string]string{
			"Runtime":       orGlobal(str(fn.Runtime), str(g.Runtime)),
			"Handler":       orGlobal(str(fn.Handler), str(g.Handler)),
			"Architectures": orGlobal(strings.Join(fn.Architectures, ","), globalArch),
		}
		want := map[string]string{"Runtime": "provided.al2023", "Handler": "bootstrap", "Architectures": "arm64"}
		for _, k := range []string{"Runtime", "Handler", "Architectures"} {
			if got[k] != want[k] {
				t.Errorf("%s: %s = %q (on the function or in Globals), want %q", id, k, got[k], want[k])
			}
		}
	}
}

func TestEveryRouteHasMainAndEvent(t *testing.T) {
	for _, rt := range httpapi.Routes {
		t.Run(rt.Function, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(rt.Function, "main.go")); err != nil {
				t.Errorf("route %q: functions/%s/main.go: %v", rt.RouteKey(), rt.Function, err)
			}
			checkEvent(t, rt, filepath.Join(eventsDir, rt.Function+".json"))
		})
	}
}

// routePattern turns /a/{x}/b into ^/a/(?P<x>[^/]+)/b$ and lists the params.
func routePattern(path string) (*regexp.Regexp, []string) {
	var params []string
	var b strings.Builder
	b.WriteString("^")
	for _, seg := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		b.WriteString("/")
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			name := strings.TrimSuffix(strings.TrimPrefix(seg, "{"), "}")
			params = append(params, name)
			b.WriteString("(?P<" + name + ">[^/]+)")
		} else {
			b.WriteString(regexp.QuoteMeta(seg))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String()), params
}

func checkEvent(t *testing.T, rt httpapi.Route, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("route %q: sample event: %v", rt.RouteKey(), err)
		return
	}
	var ev events.APIGatewayV2HTTPRequest
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		t.Errorf("%s: not an API Gateway HTTP API (payload 2.0) event: %v", path, err)
		return
	}
	if ev.Version != "2.0" {
		t.Errorf("%s: version = %q, want 2.0", path, ev.Version)
	}
	if ev.RouteKey != rt.RouteKey() {
		t.Errorf("%s: routeKey = %q, want %q", path, ev.RouteKey, rt.RouteKey())
	}
	if ev.RequestContext.RouteKey != rt.RouteKey() {
		t.Errorf("%s: requestContext.routeKey = %q, want %q", path, ev.RequestContext.RouteKey, rt.RouteKey())
	}
	if ev.RequestContext.HTTP.Method != rt.Method {
		t.Errorf("%s: requestContext.http.method = %q, want %q", path, ev.RequestContext.HTTP.Method, rt.Method)
	}
	if ev.RequestContext.HTTP.Path != ev.RawPath {
		t.Errorf("%s: requestContext.http.path = %q, want rawPath %q", path, ev.RequestContext.HTTP.Path, ev.RawPath)
	}

	re, params := routePattern(rt.Path)
	m := re.FindStringSubmatch(ev.RawPath)
	if m == nil {
		t.Errorf("%s: rawPath %q does not match the route %q", path, ev.RawPath, rt.Path)
	}
	var got []string
	for k := range ev.PathParameters {
		got = append(got, k)
	}
	sort.Strings(got)
	want := slices.Clone(params)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: pathParameters name %v, want %v", path, got, want)
	} else if m != nil {
		for _, name := range params {
			if v := m[re.SubexpIndex(name)]; ev.PathParameters[name] != v {
				t.Errorf("%s: pathParameters.%s = %q, but rawPath has %q", path, name, ev.PathParameters[name], v)
			}
		}
	}

	if a := ev.RequestContext.Authorizer; a == nil || a.JWT == nil || a.JWT.Claims["sub"] == "" {
		t.Errorf("%s: requestContext.authorizer.jwt.claims.sub is empty (the functions trust only it)", path)
	}

	if ev.IsBase64Encoded {
		if _, err := base64.StdEncoding.DecodeString(ev.Body); err != nil {
			t.Errorf("%s: isBase64Encoded but the body is not base64: %v", path, err)
		}
	} else if ev.Body != "" && strings.HasPrefix(ev.Headers["content-type"], "application/json") && !json.Valid([]byte(ev.Body)) {
		t.Errorf("%s: content-type is JSON but the body is not valid JSON", path)
	}
	for k := range ev.Headers {
		if k != strings.ToLower(k) {
			t.Errorf("%s: header %q: HTTP API sends header names in lower case", path, k)
		}
	}
}
