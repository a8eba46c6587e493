package functions_test

// The routing table (httpapi.Routes) is the single source of truth: this test
// checks that template.yaml deploys exactly its routes, each as its own
// function built from functions/<Function> with its configuration and only
// the S3 access it needs, and that every route has a sample event in events/
// that API Gateway could have sent.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/cloudformation/global"
	"github.com/awslabs/goformation/v7/cloudformation/serverless"
	"github.com/awslabs/goformation/v7/intrinsics"

	"github.com/mocbuilders/moc-upload/local/gateway"
	"github.com/mocbuilders/moc-upload/local/stack"
	"github.com/mocbuilders/moc-upload/shared/httpapi"
)

const (
	templatePath = "../template.yaml"
	eventsDir    = "../events"
	// httpAPIID is the logical id of the AWS::Serverless::HttpApi every
	// route's event must attach to (not SAM's implicit API).
	httpAPIID = "HttpApi"
)

// requiredEnv is what every function must be given in AWS, and the
// parameter (or, for S3_BUCKET, the resource) each must be `!Ref` of:
// DATABASE_URL and S3_BUCKET are required (shared/app/config.go), and the
// others must follow the stack's parameters rather than the code's defaults.
// Each must be set on the function itself (goformation does not apply
// Globals).
var requiredEnv = map[string]string{
	"DATABASE_URL":               "DatabaseUrl",
	"S3_BUCKET":                  "UploadBucket",
	"STAGE":                      "Stage",
	"UPLOAD_RATE_LIMIT_PER_DAY":  "UploadRateLimitPerDay",
	"UPLOAD_SESSION_TTL_MINUTES": "UploadSessionTtlMinutes",
	"UPLOAD_URL_TTL_MINUTES":     "UploadUrlTtlMinutes",
}

// functionEnv is what only some functions read, by function, as requiredEnv.
var functionEnv = map[string]map[string]string{
	"UploadPartsBatch": {"MAX_BATCH_BYTES": "MaxBatchBytes"},
}

// The resources of the functions' S3 statements, as loadTemplate shows them:
// the stage's object keys, and the bucket itself.
const (
	objectsResource = "${UploadBucket.Arn}/${Stage}/moc-instructions/*"
	bucketResource  = "UploadBucket.Arn"
)

// s3Access is the S3 access each route's function needs, and so must be
// granted, no more (least privilege): actions on the stage's object keys and
// on the bucket. A presigned URL carries its signer's permission, so the
// functions that presign PUTs need s3:PutObject; s3:ListBucket on the bucket
// makes HeadObject of a missing key a 404 rather than a 403.
var s3Access = map[string]struct{ objects, bucket []string }{
	"CreateSession": {},
	"GetSession": {
		objects: []string{"s3:ListMultipartUploadParts", "s3:GetObject", "s3:AbortMultipartUpload"},
		bucket:  []string{"s3:ListBucket"},
	},
	"AbortSession":     {objects: []string{"s3:AbortMultipartUpload"}},
	"RegisterFile":     {objects: []string{"s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"}},
	"UploadPart":       {objects: []string{"s3:PutObject"}},
	"UploadPartsBatch": {objects: []string{"s3:PutObject"}},
	"PresignPart":      {objects: []string{"s3:PutObject"}},
	"PresignParts":     {objects: []string{"s3:PutObject", "s3:ListMultipartUploadParts"}},
	"CompleteFile": {
		objects: []string{"s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"},
		bucket:  []string{"s3:ListBucket"},
	},
	"Finalize": {
		objects: []string{"s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"},
		bucket:  []string{"s3:ListBucket"},
	},
	"GetMoc": {objects: []string{"s3:GetObject"}},
}

// nonRouteFunctions are the template's functions that serve no HTTP route
// (async jobs, WebSocket handlers). None yet; add them here by logical id.
var nonRouteFunctions = map[string]bool{}

func logicalID(rt httpapi.Route) string { return rt.Function + "Function" }

// loadTemplate parses template.yaml. goformation resolves intrinsics to ""
// by default; here `!Ref X` becomes the logical id "X" (a one-element list
// for list-typed parameters, so list properties still parse), `!GetAtt X.Y`
// becomes "X.Y" and `!Sub "s"` stays "s", which lets the test see which API,
// parameter and bucket a property points at.
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
	getAtt := func(_ string, input, _ any) any {
		var parts []string
		switch v := input.(type) {
		case string: // !GetAtt X.Y
			return v
		case []any: // Fn::GetAtt: [X, Y]
			for _, p := range v {
				s, ok := p.(string)
				if !ok {
					return nil
				}
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, ".")
	}
	sub := func(_ string, input, _ any) any {
		if s, ok := input.(string); ok {
			return s
		}
		return nil // the two-argument form is not used
	}
	tmpl, err := goformation.OpenWithOptions(templatePath, &intrinsics.ProcessorOptions{
		IntrinsicHandlerOverrides: map[string]intrinsics.IntrinsicHandler{"Ref": ref, "Fn::GetAtt": getAtt, "Fn::Sub": sub},
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
			want := maps.Clone(requiredEnv)
			maps.Copy(want, functionEnv[rt.Function])
			for _, name := range slices.Sorted(maps.Keys(want)) {
				ref := want[name]
				if _, isParam := tmpl.Parameters[ref]; !isParam && ref != "UploadBucket" {
					t.Errorf("%s: %s should follow the parameter %s, which the template does not declare", id, name, ref)
				}
				switch v, ok := vars[name]; {
				case !ok || v == "":
					t.Errorf("%s: Environment.Variables lacks %s (Globals are not checked: set it on the function)", id, name)
				case v != ref:
					t.Errorf("%s: %s = %q, want !Ref %s", id, name, v, ref)
				}
			}

			checkS3Access(t, id, fn, rt.Function)
		})
	}
}

// checkS3Access checks that fn's policies grant exactly s3Access[function]:
// inline statements that allow actions on the stage's object keys or on
// the bucket, nothing else.
func checkS3Access(t *testing.T, id string, fn *serverless.Function, function string) {
	t.Helper()
	want, ok := s3Access[function]
	if !ok {
		t.Errorf("%s: s3Access does not say what %s may do in S3: add it", id, function)
		return
	}
	// goformation fills every form a list of policies parses as (a list of
	// names, of documents, of SAM policy templates); an entry that is not an
	// inline document has no Statement as a document.
	var docs []serverless.Function_IAMPolicyDocument
	if p := fn.Policies; p != nil {
		if p.String != nil {
			t.Errorf("%s: Policies names the managed policy %q; grant S3 actions as inline statements", id, *p.String)
		}
		if p.IAMPolicyDocument != nil {
			docs = append(docs, *p.IAMPolicyDocument)
		}
		if p.IAMPolicyDocumentArray != nil {
			docs = append(docs, *p.IAMPolicyDocumentArray...)
		}
	}
	for i, doc := range docs {
		if len(doc.Statement) == 0 {
			t.Errorf("%s: Policies entry %d is not an inline policy document (a managed policy or SAM policy template?); grant S3 actions as inline statements", id, i)
		}
	}
	got := map[string][]string{} // resource → actions
	for _, doc := range docs {
		for i, raw := range doc.Statement {
			st, ok := raw.(map[string]any)
			if !ok {
				t.Errorf("%s: policy statement %d is not a map: %v", id, i, raw)
				continue
			}
			if st["Effect"] != "Allow" {
				t.Errorf("%s: policy statement %d: Effect %v, want Allow", id, i, st["Effect"])
			}
			actions, resources := stringList(st["Action"]), stringList(st["Resource"])
			if len(actions) == 0 || len(resources) == 0 {
				t.Errorf("%s: policy statement %d needs Action and Resource (got %v and %v)", id, i, st["Action"], st["Resource"])
			}
			for _, r := range resources {
				if r != objectsResource && r != bucketResource {
					t.Errorf("%s: policy statement %d: Resource %q, want %q (object keys) or !GetAtt %s (the bucket)", id, i, r, objectsResource, bucketResource)
					continue
				}
				got[r] = append(got[r], actions...)
			}
		}
	}
	for _, c := range []struct {
		resource string
		want     []string
	}{{objectsResource, want.objects}, {bucketResource, want.bucket}} {
		g, w := slices.Sorted(slices.Values(got[c.resource])), slices.Sorted(slices.Values(c.want))
		g = slices.Compact(g)
		if !slices.Equal(g, w) {
			t.Errorf("%s: S3 actions on %s = %v, want %v", id, c.resource, g, w)
		}
	}
}

// stringList reads a policy's Action or Resource: a string or a list of them.
func stringList(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			} else {
				out = append(out, fmt.Sprint(e))
			}
		}
		return out
	}
	return nil
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

// The local stack answers browsers as the deployed one does: the local
// gateway's CORS (gateway.TemplateCORS) and the local bucket's CORS rule
// (stack.BucketCORSRule) are the template's. (allowCredentials follows the
// CorsOriginsListed condition, which goformation does not evaluate here;
// cfn-lint checks it.)
func TestTemplateCORSMatchesLocal(t *testing.T) {
	tmpl := loadTemplate(t)
	origins := []string{"CorsAllowOrigins"} // !Ref CorsAllowOrigins, as loadTemplate shows it

	api, ok := tmpl.GetAllServerlessHttpApiResources()[httpAPIID]
	if !ok {
		t.Fatalf("template has no AWS::Serverless::HttpApi %q", httpAPIID)
	}
	body, _ := api.DefinitionBody.(map[string]any)
	cors, _ := body["x-amazon-apigateway-cors"].(map[string]any)
	if cors == nil {
		t.Fatalf("%s: DefinitionBody has no x-amazon-apigateway-cors", httpAPIID)
	}
	gw := gateway.TemplateCORS(origins)
	for _, c := range []struct {
		field string
		want  []string
	}{
		{"allowOrigins", gw.AllowOrigins},
		{"allowMethods", gw.AllowMethods},
		{"allowHeaders", gw.AllowHeaders},
		{"exposeHeaders", gw.ExposeHeaders},
	} {
		if got := stringList(cors[c.field]); !slices.Equal(got, c.want) {
			t.Errorf("%s CORS %s = %v; the local gateway's (gateway.TemplateCORS) is %v", httpAPIID, c.field, got, c.want)
		}
	}
	if got, _ := cors["maxAge"].(float64); int(got) != gw.MaxAge {
		t.Errorf("%s CORS maxAge = %v; the local gateway's is %d", httpAPIID, cors["maxAge"], gw.MaxAge)
	}

	bucket, err := tmpl.GetS3BucketWithName("UploadBucket")
	if err != nil {
		t.Fatal(err)
	}
	if bucket.CorsConfiguration == nil || len(bucket.CorsConfiguration.CorsRules) != 1 {
		t.Fatalf("UploadBucket: want one CORS rule, got %+v", bucket.CorsConfiguration)
	}
	got, want := bucket.CorsConfiguration.CorsRules[0], stack.BucketCORSRule(origins)
	for _, c := range []struct {
		field     string
		got, want []string
	}{
		{"AllowedOrigins", got.AllowedOrigins, want.AllowedOrigins},
		{"AllowedMethods", got.AllowedMethods, want.AllowedMethods},
		{"AllowedHeaders", got.AllowedHeaders, want.AllowedHeaders},
		{"ExposedHeaders", got.ExposedHeaders, want.ExposeHeaders},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("UploadBucket CORS %s = %v; the local bucket's (stack.BucketCORSRule) is %v", c.field, c.got, c.want)
		}
	}
	var gotAge, wantAge int64 = -1, -1
	if got.MaxAge != nil {
		gotAge = int64(*got.MaxAge)
	}
	if want.MaxAgeSeconds != nil {
		wantAge = int64(*want.MaxAgeSeconds)
	}
	if gotAge != wantAge {
		t.Errorf("UploadBucket CORS MaxAge = %d; the local bucket's is %d (-1: unset)", gotAge, wantAge)
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

	// API Gateway gives the query both raw and decoded (repeated names
	// joined with commas).
	query, err := url.ParseQuery(ev.RawQueryString)
	if err != nil {
		t.Errorf("%s: rawQueryString %q: %v", path, ev.RawQueryString, err)
	}
	wantQuery := map[string]string{}
	for k, vs := range query {
		wantQuery[k] = strings.Join(vs, ",")
	}
	if !maps.Equal(ev.QueryStringParameters, wantQuery) && len(ev.QueryStringParameters)+len(wantQuery) > 0 {
		t.Errorf("%s: queryStringParameters = %v, but rawQueryString %q has %v", path, ev.QueryStringParameters, ev.RawQueryString, wantQuery)
	}

	body := []byte(ev.Body)
	if ev.IsBase64Encoded {
		if body, err = base64.StdEncoding.DecodeString(ev.Body); err != nil {
			t.Errorf("%s: isBase64Encoded but the body is not base64: %v", path, err)
		}
	} else if ev.Body != "" && strings.HasPrefix(ev.Headers["content-type"], "application/json") && !json.Valid([]byte(ev.Body)) {
		t.Errorf("%s: content-type is JSON but the body is not valid JSON", path)
	}
	if cl, ok := ev.Headers["content-length"]; ok && cl != strconv.Itoa(len(body)) {
		t.Errorf("%s: content-length is %s but the body has %d bytes", path, cl, len(body))
	}
	if mt, params, err := mime.ParseMediaType(ev.Headers["content-type"]); err == nil && mt == "multipart/form-data" {
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err == nil {
				_, err = io.Copy(io.Discard, part)
			}
			if err != nil {
				t.Errorf("%s: content-type is multipart/form-data but the body is not: %v", path, err)
				break
			}
		}
	}
	for k := range ev.Headers {
		if k != strings.ToLower(k) {
			t.Errorf("%s: header %q: HTTP API sends header names in lower case", path, k)
		}
	}
}
