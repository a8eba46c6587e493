package functions_test

// The routing tables (httpapi.Routes, wsapi.Routes) and the follow-up
// functions (followup.Functions) are the single source of truth: this test
// checks that template.yaml deploys exactly their routes and functions,
// each as its own function built from functions/<Function> with its
// configuration and only the access it needs, that the WebSocket API's
// $connect is behind the JWT authorizer (WsAuthorizer), that the async
// functions retry, give up and run on a schedule as intended, and that
// every function has a sample event in events/ that its invoker (API
// Gateway, Lambda's async queue, EventBridge) could have sent.

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
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/cloudformation/global"
	"github.com/awslabs/goformation/v7/cloudformation/serverless"
	"github.com/awslabs/goformation/v7/intrinsics"
	"github.com/google/uuid"

	"github.com/mocbuilders/moc-upload/local/devstack"
	"github.com/mocbuilders/moc-upload/local/gateway"
	"github.com/mocbuilders/moc-upload/local/stack"
	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/httpapi"
	"github.com/mocbuilders/moc-upload/shared/upload"
	"github.com/mocbuilders/moc-upload/shared/webhook"
	"github.com/mocbuilders/moc-upload/shared/wsapi"
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
// the database (databaseEnv) and S3_BUCKET are required
// (shared/app/config.go), and the others must follow the stack's
// parameters rather than the code's defaults. Each must be set on the
// function itself (goformation does not apply Globals).
var requiredEnv = withDatabaseEnv(map[string]string{
	"S3_BUCKET":                  "UploadBucket",
	"STAGE":                      "Stage",
	"UPLOAD_RATE_LIMIT_PER_DAY":  "UploadRateLimitPerDay",
	"UPLOAD_SESSION_TTL_MINUTES": "UploadSessionTtlMinutes",
	"UPLOAD_URL_TTL_MINUTES":     "UploadUrlTtlMinutes",
})

// databaseEnv is how every function that touches PostgreSQL finds it, as
// loadTemplate shows the values: the ARN of the credentials' secret (read
// at cold start by shared/secrets; never the credentials themselves), the
// host (DatabaseMode create: the RDS Proxy endpoint), port, database name
// and pool size. secretsOf's resources must match DATABASE_SECRET_ARN.
var databaseEnv = map[string]string{
	"DATABASE_SECRET_ARN":     ifString(createDatabase, databaseSecretAttr, "DatabaseSecretArn"),
	"DATABASE_HOST":           ifString(createDatabase, "DatabaseProxy.Endpoint", "DatabaseHost"),
	"DATABASE_PORT":           ifString(createDatabase, "5432", "DatabasePort"),
	"DATABASE_NAME":           "DatabaseName",
	"DATABASE_POOL_MAX_CONNS": "DatabasePoolMaxConns",
}

const (
	createDatabase     = "CreateDatabase"
	databaseSecretAttr = "DatabaseCluster.MasterUserSecret.SecretArn"
)

func withDatabaseEnv(m map[string]string) map[string]string {
	maps.Copy(m, databaseEnv)
	return m
}

// functionEnv is what only some functions read, by function, as requiredEnv
// (a value may also name a function of the template: `!Ref XFunction` is
// its name). The functions that invoke others (invokes) also get each
// one's name, functionNameEnv.
var functionEnv = map[string]map[string]string{
	"UploadPartsBatch": {"MAX_BATCH_BYTES": "MaxBatchBytes"},
	// Finalize decides whether to queue a thumbnail and a webhook; only
	// the Webhook function, which signs, gets the webhook's secret.
	"Finalize": {
		"ENABLE_THUMBNAIL_GENERATION": "EnableThumbnailGeneration",
		"MOC_FINALIZE_WEBHOOK_URL":    "MocFinalizeWebhookUrl",
	},
	"Webhook": {
		"MOC_FINALIZE_WEBHOOK_URL":        "MocFinalizeWebhookUrl",
		"MOC_FINALIZE_WEBHOOK_SECRET_ARN": "MocFinalizeWebhookSecretArn",
	},
}

// tracingEnv is the OpenTelemetry configuration every function must be
// given, as requiredEnv: where it exports its spans (OTLP/HTTP; empty, the
// default, means no tracing). checkEnv adds it to every function's want,
// with OTEL_SERVICE_NAME (serviceName), and, for the functions that read
// secrets at cold start (all but the authorizers), tracingSecretEnv.
var tracingEnv = map[string]string{
	"OTEL_EXPORTER_OTLP_ENDPOINT": "OtelExporterOtlpEndpoint",
}

// tracingSecretEnv names the secret of the export's headers (credentials,
// so not a parameter value): shared/secrets reads it at cold start.
var tracingSecretEnv = map[string]string{
	"OTEL_EXPORTER_OTLP_HEADERS_SECRET_ARN": "OtelExporterOtlpHeadersSecretArn",
}

// serviceName is every function's OTEL_SERVICE_NAME, as loadTemplate shows
// the !Sub: one service per stage, so a trace crosses functions within it.
const serviceName = "moc-upload-${Stage}"

// followUpEnv is what every follow-up function must be given, as
// requiredEnv: the database and the bucket (required by the shared
// configuration), and the stage of the object keys. The upload limits are
// not theirs.
var followUpEnv = withDatabaseEnv(map[string]string{
	"S3_BUCKET": "UploadBucket",
	"STAGE":     "Stage",
})

// invokes lists, by function, the follow-up functions it invokes
// (InvocationType Event): it must be allowed lambda:InvokeFunction on
// exactly those and be given their names (functionNameEnv). No other
// function may invoke any.
var invokes = map[string][]string{
	"Finalize":               {followup.ThumbnailFunction, followup.WebhookFunction},
	followup.SweeperFunction: {followup.ThumbnailFunction, followup.WebhookFunction},
}

// functionNameEnv is the variable that names the function f to the
// functions that invoke it: THUMBNAIL_FUNCTION_NAME, WEBHOOK_FUNCTION_NAME.
func functionNameEnv(f string) string { return strings.ToUpper(f) + "_FUNCTION_NAME" }

// envWant is all a function's environment must be, as checkEnv takes it
// (WEBSOCKET_ENDPOINT aside, which checkWebSocketEndpoint checks): base,
// then functionEnv's and the names of the functions it invokes.
func envWant(base map[string]string, function string) map[string]string {
	want := maps.Clone(base)
	maps.Copy(want, functionEnv[function])
	for _, f := range invokes[function] {
		want[functionNameEnv(f)] = f + "Function"
	}
	return want
}

// The resources of the functions' S3 statements, as loadTemplate shows them:
// the stage's object keys, the thumbnails' keys among them
// ({STAGE}/moc-instructions/{userId}/{mocId}/thumbnail.jpg, for the one
// function that writes them), and the bucket itself.
const (
	objectsResource    = "${UploadBucket.Arn}/${Stage}/moc-instructions/*"
	thumbnailsResource = "${UploadBucket.Arn}/${Stage}/moc-instructions/*/thumbnail.jpg"
	bucketResource     = "UploadBucket.Arn"
)

// s3Access is the S3 access each function needs, and so must be granted,
// no more (least privilege): actions on the stage's object keys, on the
// thumbnails' keys only, and on the bucket. A presigned URL carries its
// signer's permission, so the functions that presign PUTs need
// s3:PutObject (GetMoc's presigned GETs, the thumbnail's included, need
// s3:GetObject); s3:ListBucket on the bucket makes HeadObject of a missing
// key a 404 rather than a 403.
var s3Access = map[string]struct{ objects, thumbnails, bucket []string }{
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
	// The WebSocket functions keep rows only; the authorizer fetches a
	// public JWKS.
	"WsConnect":    {},
	"WsDisconnect": {},
	"WsDefault":    {},
	"WsAuthorizer": {},
	// The HTTP API's cookie authorizer, as the WebSocket one; the
	// migration needs the database only.
	httpAuthorizer:  {},
	migrateFunction: {},
	// The follow-up functions: the thumbnail reads the MOC's first image
	// (HeadObject, GetObject) and writes only thumbnails; the webhook and
	// the sweeper need the database only.
	followup.ThumbnailFunction: {
		objects:    []string{"s3:GetObject"},
		thumbnails: []string{"s3:PutObject"},
		bucket:     []string{"s3:ListBucket"},
	},
	followup.WebhookFunction: {},
	followup.SweeperFunction: {},
}

// The WebSocket API: its logical id, its authorizer's function, and how the
// functions that announce progress reach it (as loadTemplate shows the
// !Subs).
const (
	webSocketAPIID        = "WebSocketApi"
	wsAuthorizer          = "WsAuthorizer"
	httpAuthorizer        = "HttpAuthorizer"
	migrateFunction       = "Migrate"
	tokenIdentitySource   = "route.request.querystring.token"
	webSocketEndpoint     = "https://${WebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}"
	manageConnectionsARN  = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/${Stage}/POST/@connections/*"
	webSocketURLOutput    = "wss://${WebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}"
	lambdaInvokeURIFormat = "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${%s.Arn}/invocations"
)

// progressFunctions are the functions that record parts or finalize, and so
// post progress events to the session's WebSocket connections: they, and
// only they, get WEBSOCKET_ENDPOINT and execute-api:ManageConnections (POST
// only: a connection that is gone is deleted from the database, not from
// API Gateway).
var progressFunctions = map[string]bool{
	"GetSession":       true,
	"UploadPart":       true,
	"UploadPartsBatch": true,
	"CompleteFile":     true,
	"Finalize":         true,
}

// authorizerEnv is the WebSocket authorizer's whole environment, as
// loadTemplate shows it: the issuer and audiences of the HTTP API's JWT
// authorizer (JWT_AUDIENCE is !Join [",", !Ref JwtAudience]) and the
// optional JWKS URL. No database URL, no bucket: it needs neither.
var authorizerEnv = map[string]string{
	"JWT_ISSUER":   "JwtIssuer",
	"JWT_AUDIENCE": "JwtAudience",
	"JWKS_URL":     "JwksUrl",
}

// nonRouteFunctions are the template's functions that serve no HTTP route
// (async jobs, WebSocket handlers), by logical id.
func nonRouteFunctions() map[string]bool {
	ids := map[string]bool{wsAuthorizer + "Function": true, httpAuthorizer + "Function": true, migrateFunction + "Function": true}
	for _, rt := range wsapi.Routes {
		ids[rt.Function+"Function"] = true
	}
	for _, f := range followup.Functions {
		ids[f+"Function"] = true
	}
	return ids
}

func logicalID(rt httpapi.Route) string { return rt.Function + "Function" }

// loadTemplate parses template.yaml. goformation resolves intrinsics to ""
// by default; here `!Ref X` becomes the logical id "X" (a one-element list
// for list-typed parameters, so list properties still parse), `!GetAtt X.Y`
// becomes "X.Y", `!Sub "s"` stays "s" and `!If [C, a, b]` of two strings
// becomes "C ? a : b" (ifString), which lets the test see which API,
// parameter and bucket a property points at, and on what condition. (An
// !If of anything else stays unresolved: nil, as goformation leaves it
// without evaluating conditions.)
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
	fnIf := func(_ string, input, _ any) any {
		args, ok := input.([]any)
		if !ok || len(args) != 3 {
			return nil
		}
		cond, okC := args[0].(string)
		a, okA := args[1].(string)
		b, okB := args[2].(string)
		if !okC || !okA || !okB {
			return nil
		}
		return ifString(cond, a, b)
	}
	raw, err := os.ReadFile(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := goformation.ParseJSONWithOptions(goformationReadable(t, raw), &intrinsics.ProcessorOptions{
		IntrinsicHandlerOverrides: map[string]intrinsics.IntrinsicHandler{"Ref": ref, "Fn::GetAtt": getAtt, "Fn::Sub": sub, "Fn::If": fnIf},
	})
	if err != nil {
		t.Fatalf("parse %s: %v", templatePath, err)
	}
	return tmpl
}

// goformationReadable is the template, as JSON, without what goformation
// v7 cannot read and the template needs: properties its types lack
// (a function's LoggingConfig, an HTTP API's AccessLogSettings), and
// numbers given as an !If (a function's ReservedConcurrentExecutions).
// Outside the functions (whose environment's !Refs the tests read as
// names), a !Ref of a Number parameter becomes the parameter's default,
// which goformation reads as a number. The rendered template
// (template_render_test.go) checks those parts instead.
func goformationReadable(t *testing.T, raw []byte) []byte {
	t.Helper()
	j, err := intrinsics.ProcessYAML(raw, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		t.Fatalf("parse %s: %v", templatePath, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(j, &doc); err != nil {
		t.Fatal(err)
	}
	numbers := map[string]any{}
	params, _ := doc["Parameters"].(map[string]any)
	for name, p := range params {
		if p, _ := p.(map[string]any); p["Type"] == "Number" {
			numbers[name] = p["Default"]
		}
	}
	var walk func(v any) any
	walk = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["Ref"].(string); ok && len(v) == 1 {
				if n, ok := numbers[ref]; ok {
					return n
				}
			}
			for k, x := range v {
				v[k] = walk(x)
			}
		case []any:
			for i, x := range v {
				v[i] = walk(x)
			}
		}
		return v
	}
	unreadable := map[string][]string{
		"AWS::Serverless::Function": {"LoggingConfig", "ReservedConcurrentExecutions"},
		"AWS::Serverless::HttpApi":  {"AccessLogSettings"},
	}
	resources, _ := doc["Resources"].(map[string]any)
	for _, r := range resources {
		r, _ := r.(map[string]any)
		props, _ := r["Properties"].(map[string]any)
		typ, _ := r["Type"].(string)
		for _, k := range unreadable[typ] {
			delete(props, k)
		}
		if typ != "AWS::Serverless::Function" { // its environment's !Refs stay names
			walk(props)
		}
	}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// secretARNPatterns is what a parameter naming a Secrets Manager secret
// must accept (value → accepted): empty (none), or a secret's ARN.
var secretARNPatterns = map[string]bool{
	"": true,
	"arn:aws:secretsmanager:us-east-1:123456789012:secret:moc-upload/webhook-AbCdEf": true,
	"arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:x-1":                   true,
	"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw":                                         false, // the secret itself
	"authorization=Bearer%20abc":                                                     false,
	"arn:aws:ssm:us-east-1:123456789012:parameter/x":                                 false,
}

// ifString is how loadTemplate shows `!If [cond, a, b]` of two strings.
func ifString(cond, a, b string) string { return cond + " ? " + a + " : " + b }

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

			checkBuild(t, id, fn)

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

			checkEnv(t, tmpl, id, fn, envWant(requiredEnv, rt.Function))
			checkWebSocketEndpoint(t, id, fn, progressFunctions[rt.Function])

			checkAccess(t, id, fn, rt.Function)
		})
	}
}

// checkEnv checks that fn's environment is want and tracingEnv,
// WEBSOCKET_ENDPOINT aside (checkWebSocketEndpoint's): each variable of
// them, each !Ref of the parameter or resource (S3_BUCKET's bucket, a
// function's name) they give, OTEL_SERVICE_NAME serviceName, and no other
// variable — a function gets only what it reads, and secrets only the
// functions that use them.
func checkEnv(t *testing.T, tmpl *cloudformation.Template, id string, fn *serverless.Function, want map[string]string) {
	t.Helper()
	want = maps.Clone(want)
	maps.Copy(want, tracingEnv)
	if _, ok := want["DATABASE_SECRET_ARN"]; ok {
		maps.Copy(want, tracingSecretEnv)
	}
	vars := envOf(fn)
	if got := vars["OTEL_SERVICE_NAME"]; got != serviceName {
		t.Errorf("%s: OTEL_SERVICE_NAME = %q, want !Sub %q (Globals are not checked: set it on the function)", id, got, serviceName)
	}
	for _, name := range slices.Sorted(maps.Keys(vars)) {
		if _, ok := want[name]; !ok && name != "WEBSOCKET_ENDPOINT" && name != "OTEL_SERVICE_NAME" {
			t.Errorf("%s: Environment.Variables has %s, which the function is not meant to read (add it to the test's tables if it does)", id, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		ref := want[name]
		_, isParam := tmpl.Parameters[ref]
		_, isResource := tmpl.Resources[ref]
		if !isParam && !isResource && !strings.Contains(ref, " ? ") {
			t.Errorf("%s: %s should follow the parameter or resource %s, which the template does not declare", id, name, ref)
		}
		switch v, ok := vars[name]; {
		case !ok || v == "":
			t.Errorf("%s: Environment.Variables lacks %s (Globals are not checked: set it on the function)", id, name)
		case v != ref:
			t.Errorf("%s: %s = %q, want !Ref %s", id, name, v, ref)
		}
	}
}

func envOf(fn *serverless.Function) map[string]string {
	if fn.Environment == nil {
		return nil
	}
	return fn.Environment.Variables
}

// checkWebSocketEndpoint checks that fn has WEBSOCKET_ENDPOINT, the
// WebSocket API's stage URL for the management API, when it announces
// progress, and does not otherwise.
func checkWebSocketEndpoint(t *testing.T, id string, fn *serverless.Function, want bool) {
	t.Helper()
	got, ok := envOf(fn)["WEBSOCKET_ENDPOINT"]
	switch {
	case want && got != webSocketEndpoint:
		t.Errorf("%s: WEBSOCKET_ENDPOINT = %q, want !Sub %q (it posts progress events)", id, got, webSocketEndpoint)
	case !want && ok:
		t.Errorf("%s: WEBSOCKET_ENDPOINT is set, but the function posts no progress events (progressFunctions)", id)
	}
}

// policyStatements returns fn's inline policy statements.
func policyStatements(t *testing.T, id string, fn *serverless.Function) []map[string]any {
	t.Helper()
	// goformation fills every form a list of policies parses as (a list of
	// names, of documents, of SAM policy templates); an entry that is not an
	// inline document has no Statement as a document.
	var docs []serverless.Function_IAMPolicyDocument
	if p := fn.Policies; p != nil {
		if p.String != nil {
			t.Errorf("%s: Policies names the managed policy %q; grant actions as inline statements", id, *p.String)
		}
		if p.IAMPolicyDocument != nil {
			docs = append(docs, *p.IAMPolicyDocument)
		}
		if p.IAMPolicyDocumentArray != nil {
			docs = append(docs, *p.IAMPolicyDocumentArray...)
		}
	}
	var out []map[string]any
	for i, doc := range docs {
		if len(doc.Statement) == 0 {
			t.Errorf("%s: Policies entry %d is not an inline policy document (a managed policy or SAM policy template?); grant actions as inline statements", id, i)
		}
		for j, raw := range doc.Statement {
			st, ok := raw.(map[string]any)
			if !ok {
				t.Errorf("%s: policy statement %d is not a map: %v", id, j, raw)
				continue
			}
			if st["Effect"] != "Allow" {
				t.Errorf("%s: policy statement %d: Effect %v, want Allow", id, j, st["Effect"])
			}
			if len(stringList(st["Action"])) == 0 || len(stringList(st["Resource"])) == 0 {
				t.Errorf("%s: policy statement %d needs Action and Resource (got %v and %v)", id, j, st["Action"], st["Resource"])
			}
			out = append(out, st)
		}
	}
	return out
}

// statementService is the service whose actions a policy statement
// grants ("s3", "execute-api", "lambda", …); a statement that mixes
// services is reported, so that each check below sees all of its own.
func statementService(t *testing.T, id string, i int, st map[string]any) string {
	t.Helper()
	var svc string
	for _, a := range stringList(st["Action"]) {
		s, _, _ := strings.Cut(a, ":")
		if svc != "" && s != svc {
			t.Errorf("%s: policy statement %d mixes services (%v): one statement per service", id, i, st["Action"])
		}
		svc = s
	}
	return svc
}

// statementsOf returns fn's policy statements by service.
func statementsOf(t *testing.T, id string, fn *serverless.Function) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	for i, st := range policyStatements(t, id, fn) {
		svc := statementService(t, id, i, st)
		out[svc] = append(out[svc], st)
	}
	return out
}

// checkAccess checks everything fn's policies grant, against the tables
// of function: S3 (s3Access), the WebSocket API's connections
// (progressFunctions), invoking follow-up functions (invokes); any other
// service is reported. (The sqs:SendMessage an async function's
// on-failure destination needs is added by SAM to the role it generates,
// not written here: checkAsyncConfig.)
func checkAccess(t *testing.T, id string, fn *serverless.Function, function string) {
	t.Helper()
	sts := statementsOf(t, id, fn)
	for _, svc := range slices.Sorted(maps.Keys(sts)) {
		if svc != "s3" && svc != "execute-api" && svc != "lambda" && svc != "secretsmanager" {
			for _, st := range sts[svc] {
				t.Errorf("%s: grants %v on %v; no check here covers %s: grant it only with a check", id, st["Action"], st["Resource"], svc)
			}
		}
	}
	checkS3Access(t, id, sts["s3"], function)
	checkManageConnections(t, id, sts["execute-api"], progressFunctions[function])
	checkInvokeAccess(t, id, sts["lambda"], invokes[function])
	checkSecretAccess(t, id, sts["secretsmanager"], function)
}

// secretResources is what each function may read from Secrets Manager, as
// loadTemplate shows the !Ifs: the database's secret (the one its
// DATABASE_SECRET_ARN names), the OTLP headers' when set, and, for the
// Webhook function only, the webhook's signing secret. The authorizers
// read none.
func secretResources(function string) []string {
	switch function {
	case wsAuthorizer, httpAuthorizer:
		return nil
	case migrateFunction:
		return []string{databaseEnv["DATABASE_SECRET_ARN"]}
	}
	r := []string{databaseEnv["DATABASE_SECRET_ARN"], ifString("HasOtelHeadersSecret", "OtelExporterOtlpHeadersSecretArn", "AWS::NoValue")}
	if function == followup.WebhookFunction {
		r = append(r, ifString("HasWebhookSecret", "MocFinalizeWebhookSecretArn", "AWS::NoValue"))
	}
	return r
}

// checkSecretAccess checks that the Secrets Manager statements sts allow
// secretsmanager:GetSecretValue on exactly secretResources(function).
func checkSecretAccess(t *testing.T, id string, sts []map[string]any, function string) {
	t.Helper()
	var got []string
	for _, st := range sts {
		if actions := stringList(st["Action"]); !slices.Equal(actions, []string{"secretsmanager:GetSecretValue"}) {
			t.Errorf("%s: grants %v, want only secretsmanager:GetSecretValue", id, actions)
		}
		got = append(got, stringList(st["Resource"])...)
	}
	if want := secretResources(function); !slices.Equal(got, want) {
		t.Errorf("%s: secretsmanager:GetSecretValue on %q, want %q", id, got, want)
	}
}

// checkManageConnections checks that the API Gateway statements sts let
// the function post to the WebSocket API's connections
// (execute-api:ManageConnections on POST @connections of the stage,
// nothing more) when it announces progress, and that there are none
// otherwise.
func checkManageConnections(t *testing.T, id string, sts []map[string]any, want bool) {
	t.Helper()
	for _, st := range sts {
		actions, resources := stringList(st["Action"]), stringList(st["Resource"])
		if !want {
			t.Errorf("%s: grants %v on %v, but the function posts no progress events (progressFunctions)", id, actions, resources)
			continue
		}
		if !slices.Equal(actions, []string{"execute-api:ManageConnections"}) || !slices.Equal(resources, []string{manageConnectionsARN}) {
			t.Errorf("%s: grants %v on %v, want exactly execute-api:ManageConnections on %s", id, actions, resources, manageConnectionsARN)
		}
	}
	if want && len(sts) == 0 {
		t.Errorf("%s: no execute-api:ManageConnections on %s: it could not post progress events", id, manageConnectionsARN)
	}
}

// checkInvokeAccess checks that the Lambda statements sts allow
// lambda:InvokeFunction on exactly the functions targets (!GetAtt
// <Target>Function.Arn: unqualified invokes of $LATEST), and nothing else.
func checkInvokeAccess(t *testing.T, id string, sts []map[string]any, targets []string) {
	t.Helper()
	var got []string
	for _, st := range sts {
		if actions := stringList(st["Action"]); !slices.Equal(actions, []string{"lambda:InvokeFunction"}) {
			t.Errorf("%s: grants %v, want only lambda:InvokeFunction", id, actions)
		}
		got = append(got, stringList(st["Resource"])...)
	}
	var want []string
	for _, f := range targets {
		want = append(want, f+"Function.Arn")
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: lambda:InvokeFunction on %v, want %v (invokes)", id, got, want)
	}
}

// checkS3Access checks that the S3 statements sts grant exactly
// s3Access[function]: actions on the stage's object keys, on the
// thumbnails' keys or on the bucket, nothing else.
func checkS3Access(t *testing.T, id string, sts []map[string]any, function string) {
	t.Helper()
	want, ok := s3Access[function]
	if !ok {
		t.Errorf("%s: s3Access does not say what %s may do in S3: add it", id, function)
		return
	}
	got := map[string][]string{} // resource → actions
	for i, st := range sts {
		actions := stringList(st["Action"])
		for _, r := range stringList(st["Resource"]) {
			if r != objectsResource && r != thumbnailsResource && r != bucketResource {
				t.Errorf("%s: S3 statement %d: Resource %q, want %q (object keys), %q (thumbnails) or !GetAtt %s (the bucket)", id, i, r, objectsResource, thumbnailsResource, bucketResource)
				continue
			}
			got[r] = append(got[r], actions...)
		}
	}
	for _, c := range []struct {
		resource string
		want     []string
	}{{objectsResource, want.objects}, {thumbnailsResource, want.thumbnails}, {bucketResource, want.bucket}} {
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

// checkBuild checks that fn is built by the Makefile's build-<id> target
// from the repository root.
func checkBuild(t *testing.T, id string, fn *serverless.Function) {
	t.Helper()
	if got := fn.AWSCloudFormationMetadata["BuildMethod"]; got != "makefile" {
		t.Errorf("%s: Metadata.BuildMethod = %v, want makefile (the Makefile's build-%s target)", id, got, id)
	}
	if fn.CodeUri == nil || str(fn.CodeUri.String) != "." {
		t.Errorf("%s: CodeUri must be \".\" (the repository root, where the Makefile is)", id)
	}
}

// subRef reads the logical id out of a !Sub "${X}" (as loadTemplate leaves
// a !Sub) or a !Ref X.
func subRef(s string) string {
	if inner, ok := strings.CutPrefix(s, "${"); ok {
		return strings.TrimSuffix(inner, "}")
	}
	return s
}

// checkInvokePermission checks that an AWS::Lambda::Permission lets API
// Gateway invoke the function fnID from the execute-api ARN ending in
// sourceSuffix (after the account: "${WebSocketApi}/...").
func checkInvokePermission(t *testing.T, tmpl *cloudformation.Template, fnID, sourceSuffix string) {
	t.Helper()
	wantARN := "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:" + sourceSuffix
	var arns []string
	for _, p := range tmpl.GetAllLambdaPermissionResources() {
		if p.FunctionName != fnID && p.FunctionName != fnID+".Arn" {
			continue
		}
		if p.Principal != "apigateway.amazonaws.com" || p.Action != "lambda:InvokeFunction" {
			continue
		}
		if str(p.SourceArn) == wantARN {
			return
		}
		arns = append(arns, str(p.SourceArn))
	}
	t.Errorf("%s: no AWS::Lambda::Permission lets apigateway.amazonaws.com invoke it from %s (found %q)", fnID, wantARN, arns)
}

// Every HTTP function has the timeout the local gateway gives each
// invocation's context (gateway.DefaultFunctionTimeout), from Globals or
// its own.
func TestTemplateHTTPFunctionTimeout(t *testing.T) {
	tmpl := loadTemplate(t)
	g := globalFunction(tmpl)
	want := int(gateway.DefaultFunctionTimeout / time.Second)
	for _, rt := range httpapi.Routes {
		id := logicalID(rt)
		fn, err := tmpl.GetServerlessFunctionWithName(id)
		if err != nil {
			t.Fatalf("no AWS::Serverless::Function %s", id)
		}
		got := intOr(g.Timeout, 0)
		if fn.Timeout != nil {
			got = *fn.Timeout
		}
		if got != want {
			t.Errorf("%s: Timeout %d s; the local gateway gives %d s (gateway.DefaultFunctionTimeout)", id, got, want)
		}
	}
}

// TestTemplateServesWebSocketRoutes checks that the WebSocket API deploys
// exactly wsapi.Routes, each a Lambda proxy integration of its own function
// that API Gateway may invoke for that route, with $connect behind the
// REQUEST authorizer and $default answering its messages. goformation
// parses the AWS::ApiGatewayV2 resources used here (Api, Route,
// RouteResponse, Integration, Authorizer, Stage), so no part of the YAML is
// read another way.
func TestTemplateServesWebSocketRoutes(t *testing.T) {
	tmpl := loadTemplate(t)
	api, ok := tmpl.GetAllApiGatewayV2ApiResources()[webSocketAPIID]
	if !ok {
		t.Fatalf("template has no AWS::ApiGatewayV2::Api %q", webSocketAPIID)
	}
	if got := str(api.ProtocolType); got != "WEBSOCKET" {
		t.Errorf("%s: ProtocolType = %q, want WEBSOCKET", webSocketAPIID, got)
	}
	if got := str(api.RouteSelectionExpression); got != "$request.body.action" {
		t.Errorf("%s: RouteSelectionExpression = %q, want $request.body.action", webSocketAPIID, got)
	}

	allRoutes := tmpl.GetAllApiGatewayV2RouteResources()
	routes := map[string]string{} // route key → logical id
	for _, id := range slices.Sorted(maps.Keys(allRoutes)) {
		r := allRoutes[id]
		if r.ApiId != webSocketAPIID {
			t.Errorf("route %s is on %q, not !Ref %s", id, r.ApiId, webSocketAPIID)
			continue
		}
		if prev, dup := routes[r.RouteKey]; dup {
			t.Errorf("routes %s and %s both have the key %q", prev, id, r.RouteKey)
		}
		routes[r.RouteKey] = id
	}
	var wantKeys []string
	for _, rt := range wsapi.Routes {
		wantKeys = append(wantKeys, rt.Key)
	}
	if got := slices.Sorted(maps.Keys(routes)); !slices.Equal(got, slices.Sorted(slices.Values(wantKeys))) {
		t.Errorf("%s has the routes %v; wsapi.Routes has %v", webSocketAPIID, got, wantKeys)
	}

	for _, rt := range wsapi.Routes {
		t.Run(rt.Function, func(t *testing.T) {
			fnID := rt.Function + "Function"
			fn, err := tmpl.GetServerlessFunctionWithName(fnID)
			if err != nil {
				t.Fatalf("route %q: no AWS::Serverless::Function %s in the template", rt.Key, fnID)
			}
			checkBuild(t, fnID, fn)
			if len(fn.Events) > 0 {
				t.Errorf("%s: has SAM Events; the WebSocket API's integration invokes it", fnID)
			}
			checkEnv(t, tmpl, fnID, fn, envWant(requiredEnv, rt.Function))
			checkWebSocketEndpoint(t, fnID, fn, false)
			checkAccess(t, fnID, fn, rt.Function)

			routeID, ok := routes[rt.Key]
			if !ok {
				return // reported above
			}
			route := allRoutes[routeID]
			integID, ok := strings.CutPrefix(str(route.Target), "integrations/")
			integ := tmpl.GetAllApiGatewayV2IntegrationResources()[subRef(integID)]
			if !ok || integ == nil {
				t.Fatalf("route %s: Target = %q, want !Sub \"integrations/${<an AWS::ApiGatewayV2::Integration>}\"", routeID, str(route.Target))
			}
			if integ.ApiId != webSocketAPIID || integ.IntegrationType != "AWS_PROXY" {
				t.Errorf("integration %s: ApiId %q, IntegrationType %q; want !Ref %s, AWS_PROXY", subRef(integID), integ.ApiId, integ.IntegrationType, webSocketAPIID)
			}
			if got, want := str(integ.IntegrationUri), fmt.Sprintf(lambdaInvokeURIFormat, fnID); got != want {
				t.Errorf("integration %s: IntegrationUri = %q, want %q", subRef(integID), got, want)
			}
			checkInvokePermission(t, tmpl, fnID, "${"+webSocketAPIID+"}/*/"+rt.Key)

			if rt.Key == "$connect" {
				checkConnectAuthorizer(t, tmpl, routeID, route.AuthorizationType, route.AuthorizerId)
			} else if at := str(route.AuthorizationType); at != "" && at != "NONE" {
				// Only $connect can be authorized; the connection is.
				t.Errorf("route %s: AuthorizationType %q, want NONE", routeID, at)
			}

			if rt.Key == "$default" {
				// Without a route response, the function's answer
				// ({"type":"pong"}) would not reach the client.
				if got := str(route.RouteResponseSelectionExpression); got != "$default" {
					t.Errorf("route %s: RouteResponseSelectionExpression = %q, want $default", routeID, got)
				}
				found := false
				for _, rr := range tmpl.GetAllApiGatewayV2RouteResponseResources() {
					found = found || (rr.ApiId == webSocketAPIID && rr.RouteId == routeID && rr.RouteResponseKey == "$default")
				}
				if !found {
					t.Errorf("route %s: no AWS::ApiGatewayV2::RouteResponse with RouteId !Ref %s and RouteResponseKey $default", routeID, routeID)
				}
			}
		})
	}
}

// checkConnectAuthorizer checks that $connect is authorized by a REQUEST
// authorizer on the WsAuthorizer function reading the token query
// parameter, which API Gateway may invoke as that authorizer.
func checkConnectAuthorizer(t *testing.T, tmpl *cloudformation.Template, routeID string, authType, authID *string) {
	t.Helper()
	if got := str(authType); got != "CUSTOM" {
		t.Errorf("route %s: AuthorizationType = %q, want CUSTOM", routeID, got)
	}
	a, ok := tmpl.GetAllApiGatewayV2AuthorizerResources()[str(authID)]
	if !ok {
		t.Fatalf("route %s: AuthorizerId = %q, want !Ref of an AWS::ApiGatewayV2::Authorizer", routeID, str(authID))
	}
	fnID := wsAuthorizer + "Function"
	if a.ApiId != webSocketAPIID || a.AuthorizerType != "REQUEST" {
		t.Errorf("authorizer %s: ApiId %q, AuthorizerType %q; want !Ref %s, REQUEST", str(authID), a.ApiId, a.AuthorizerType, webSocketAPIID)
	}
	if !slices.Equal(a.IdentitySource, []string{tokenIdentitySource}) {
		t.Errorf("authorizer %s: IdentitySource = %v, want [%s]", str(authID), a.IdentitySource, tokenIdentitySource)
	}
	if got, want := str(a.AuthorizerUri), fmt.Sprintf(lambdaInvokeURIFormat, fnID); got != want {
		t.Errorf("authorizer %s: AuthorizerUri = %q, want %q", str(authID), got, want)
	}
	if a.AuthorizerResultTtlInSeconds != nil {
		t.Errorf("authorizer %s: AuthorizerResultTtlInSeconds is for HTTP APIs; WebSocket APIs do not cache", str(authID))
	}
	checkInvokePermission(t, tmpl, fnID, "${"+webSocketAPIID+"}/authorizers/${"+str(authID)+"}")
}

// The authorizer function verifies tokens and nothing else: the JWT
// settings of the HTTP API's authorizer, no database, no S3, no API
// Gateway access.
func TestTemplateWebSocketAuthorizerFunction(t *testing.T) {
	tmpl := loadTemplate(t)
	id := wsAuthorizer + "Function"
	fn, err := tmpl.GetServerlessFunctionWithName(id)
	if err != nil {
		t.Fatalf("no AWS::Serverless::Function %s", id)
	}
	checkBuild(t, id, fn)
	if len(fn.Events) > 0 {
		t.Errorf("%s: has SAM Events; API Gateway invokes it as the $connect authorizer", id)
	}
	checkEnv(t, tmpl, id, fn, authorizerEnv)
	want := slices.Concat(slices.Collect(maps.Keys(authorizerEnv)), slices.Collect(maps.Keys(tracingEnv)), []string{"OTEL_SERVICE_NAME"})
	slices.Sort(want)
	if got := slices.Sorted(maps.Keys(envOf(fn))); !slices.Equal(got, want) {
		t.Errorf("%s: Environment.Variables = %v, want only %v", id, got, want)
	}
	checkAccess(t, id, fn, wsAuthorizer)
}

// asyncConfig is how Lambda runs a follow-up function's async invocations
// (EventInvokeConfig), set on purpose rather than left at Lambda's
// defaults (2 retries, events kept up to 6 hours, failures dropped), and
// the function's size.
type asyncConfig struct {
	// retries is MaximumRetryAttempts: the invocations of one event are
	// retries + 1.
	retries int
	// deadLetters: an invocation that failed its last attempt, or whose
	// event expired, is recorded in deadLetterQueueID.
	deadLetters bool
	// timeout (seconds) and memory (MB; 0: Globals') the function must
	// declare.
	timeout, memory int
}

var asyncConfigs = map[string]asyncConfig{
	// 2 invocations: the function returns an error only when it could not
	// record its answer (the database failing; a bad image or an S3 error
	// fails the thumbnail and returns nil), so one retry a minute later may
	// help; with both within redispatchAfter, the Sweeper does not race
	// it. Memory: docs/benchmarks.md.
	followup.ThumbnailFunction: {retries: 1, deadLetters: true, timeout: 60, memory: 1024},
	// 1 invocation, of at most webhook.DefaultAttempts deliveries: the
	// sender retries itself, and the contract allows at most 4 attempts.
	followup.WebhookFunction: {retries: 0, deadLetters: true, timeout: 60},
	// A failed sweep is not retried: the next one comes on schedule.
	followup.SweeperFunction: {retries: 0, timeout: 60},
}

const (
	// deadLetterQueueID is the SQS queue of the failed follow-up
	// invocations, and deadLetterQueueOutput the output with its URL.
	deadLetterQueueID     = "FollowUpDeadLetterQueue"
	deadLetterQueueOutput = "FollowUpDeadLetterQueueUrl"
	// sweepSchedule is the Sweeper's schedule expression.
	sweepSchedule = "rate(5 minutes)"
	// redispatchAfter is OUTBOX_REDISPATCH_AFTER_SECONDS' default (the
	// template leaves it unset): the Sweeper invokes again a row still
	// pending this long after its dispatch.
	redispatchAfter = followup.DefaultRedispatchAfter
	// maxEventAge is the most MaximumEventAgeInSeconds allows.
	maxEventAge = 6 * time.Hour
)

// lambdaRetryWaits are Lambda's waits before the first and the second
// retry of an async invocation that failed (at least; from AWS's
// documentation).
var lambdaRetryWaits = []time.Duration{time.Minute, 2 * time.Minute}

// retrySpan is the longest Lambda takes to make all of an event's
// invocations when each runs into its timeout.
func retrySpan(c asyncConfig) time.Duration {
	d := time.Duration(c.retries+1) * time.Duration(c.timeout) * time.Second
	for _, w := range lambdaRetryWaits[:c.retries] {
		d += w
	}
	return d
}

// TestTemplateFollowUpFunctions checks the functions of followup.Functions:
// built like the others, given only what they read and may do (the
// Sweeper invokes the other two, as Finalize does), with their async
// invocations' retries and on-failure destination (the dead-letter queue)
// as asyncConfigs says, and the Sweeper on its schedule. goformation
// models everything checked here (EventInvokeConfig, the Schedule event,
// the SQS queue), so no part of the YAML is read another way; what SAM
// adds when it transforms the template (the sqs:SendMessage of the
// generated role) is SAM's, so the test checks only that SAM generates the
// role (no Role property).
func TestTemplateFollowUpFunctions(t *testing.T) {
	tmpl := loadTemplate(t)
	for _, f := range followup.Functions {
		t.Run(f, func(t *testing.T) {
			id := f + "Function"
			fn, err := tmpl.GetServerlessFunctionWithName(id)
			if err != nil {
				t.Fatalf("followup.Functions names %s: no AWS::Serverless::Function %s in the template", f, id)
			}
			checkBuild(t, id, fn)
			checkEnv(t, tmpl, id, fn, envWant(followUpEnv, f))
			checkWebSocketEndpoint(t, id, fn, false)
			checkAccess(t, id, fn, f)

			c, ok := asyncConfigs[f]
			if !ok {
				t.Fatalf("asyncConfigs does not say how %s's async invocations run: add it", f)
			}
			if got := intOr(fn.Timeout, 0); got != c.timeout {
				t.Errorf("%s: Timeout = %d, want %d", id, got, c.timeout)
			}
			if got := intOr(fn.MemorySize, 0); got != c.memory {
				t.Errorf("%s: MemorySize = %d, want %d (0: Globals')", id, got, c.memory)
			}
			checkAsyncConfig(t, id, fn, c)
			// The local stack's invoke API retries as Lambda does here.
			retries := -1 // unset
			if cfg := fn.EventInvokeConfig; cfg != nil {
				retries = intOr(cfg.MaximumRetryAttempts, -1)
			}
			if local, ok := devstack.AsyncRetryAttempts[f]; !ok || local != retries {
				t.Errorf("%s: devstack.AsyncRetryAttempts[%q] = %d (present: %v), want the template's MaximumRetryAttempts %d",
					id, f, local, ok, retries)
			}

			// Finalize and the Sweeper invoke the jobs through Lambda's
			// Invoke API; EventBridge, the Sweeper.
			if f == followup.SweeperFunction {
				checkSweepSchedule(t, id, fn)
			} else if len(fn.Events) > 0 {
				t.Errorf("%s: has SAM Events; Lambda's Invoke API starts it", id)
			}
		})
	}

	for f := range devstack.AsyncRetryAttempts {
		if !slices.Contains(followup.Functions, f) {
			t.Errorf("devstack.AsyncRetryAttempts names %s, which is not an async function (followup.Functions)", f)
		}
	}

	// The webhook's one invocation holds all of its deliveries' attempts
	// (the sender's defaults: the template sets no WEBHOOK_RETRY_BASE_DELAY_MS).
	delivery := time.Duration(webhook.DefaultAttempts) * webhook.DefaultAttemptTimeout
	for i := range webhook.DefaultAttempts - 1 {
		delivery += webhook.DefaultBaseDelay << i
	}
	if c := asyncConfigs[followup.WebhookFunction]; time.Duration(c.timeout)*time.Second <= delivery {
		t.Errorf("WebhookFunction: Timeout %d s, but one delivery may take %v (%d attempts of %v, and the waits between them)",
			c.timeout, delivery, webhook.DefaultAttempts, webhook.DefaultAttemptTimeout)
	}

	// The thumbnails' resource covers the keys the Thumbnail function
	// writes (upload.ThumbnailKey) and no uploaded file's; S3's * matches
	// across slashes.
	thumbnails := s3KeyPattern(thumbnailsResource)
	if key := upload.ThumbnailKey("dev", devstack.SeedUserID, seedMocID); !thumbnails.MatchString(key) {
		t.Errorf("%s does not cover the thumbnail key %s", thumbnailsResource, key)
	}
	for _, key := range []string{
		"dev/moc-instructions/" + devstack.SeedUserID + "/" + devstack.SeedSessionID + "/image/" + devstack.SeedImageFileID + ".png",
		"dev/moc-instructions/" + devstack.SeedUserID + "/" + devstack.SeedSessionID + "/thumbnail/" + devstack.SeedImageFileID + ".jpg",
		"prod/moc-instructions/u/m/thumbnail.jpg",
	} {
		if thumbnails.MatchString(key) {
			t.Errorf("%s covers %s, which is not a thumbnail of the stage dev", thumbnailsResource, key)
		}
	}

	q, err := tmpl.GetSQSQueueWithName(deadLetterQueueID)
	if err != nil {
		t.Fatalf("no AWS::SQS::Queue %s", deadLetterQueueID)
	}
	if q.SqsManagedSseEnabled == nil || !*q.SqsManagedSseEnabled || q.KmsMasterKeyId != nil {
		t.Errorf("%s: want SqsManagedSseEnabled (SSE-SQS: the functions' roles need no KMS access)", deadLetterQueueID)
	}
	if q.FifoQueue != nil && *q.FifoQueue {
		t.Errorf("%s: a FIFO queue cannot be an on-failure destination", deadLetterQueueID)
	}
	if got := intOr(q.MessageRetentionPeriod, 0); got != 14*24*60*60 {
		t.Errorf("%s: MessageRetentionPeriod = %d, want 14 days (1209600)", deadLetterQueueID, got)
	}
	if out, ok := tmpl.Outputs[deadLetterQueueOutput]; !ok || out.Value != deadLetterQueueID {
		t.Errorf("output %s = %v, want !Ref %s (the queue's URL)", deadLetterQueueOutput, out.Value, deadLetterQueueID)
	}
}

// s3KeyPattern turns an object ARN of the template (as loadTemplate
// shows it: "${UploadBucket.Arn}/${Stage}/…") into a pattern of the keys it
// covers for the stage dev.
func s3KeyPattern(resource string) *regexp.Regexp {
	key := strings.TrimPrefix(resource, "${UploadBucket.Arn}/")
	key = strings.ReplaceAll(key, "${Stage}", "dev")
	return regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(key), `\*`, ".*") + "$")
}

func intOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// checkAsyncConfig checks fn's EventInvokeConfig against c: the retries,
// an event age that leaves room for them (and, for the Sweeper, no longer
// than its period: a late sweep would meet the next one), and the
// on-failure destination.
func checkAsyncConfig(t *testing.T, id string, fn *serverless.Function, c asyncConfig) {
	t.Helper()
	cfg := fn.EventInvokeConfig
	if cfg == nil {
		t.Errorf("%s: no EventInvokeConfig: Lambda's defaults (2 retries, events kept 6 hours) would apply", id)
		return
	}
	if cfg.MaximumRetryAttempts == nil || *cfg.MaximumRetryAttempts != c.retries {
		t.Errorf("%s: EventInvokeConfig.MaximumRetryAttempts = %v, want %d (%d invocations)", id, intOr(cfg.MaximumRetryAttempts, -1), c.retries, c.retries+1)
	}
	if c.retries > 0 && retrySpan(c) >= redispatchAfter {
		t.Errorf("%s: %d invocations may take %v, not less than the Sweeper's %v: it would invoke the job again while Lambda still retries it", id, c.retries+1, retrySpan(c), redispatchAfter)
	}
	switch age := time.Duration(intOr(cfg.MaximumEventAgeInSeconds, 0)) * time.Second; {
	case age == 0:
		t.Errorf("%s: EventInvokeConfig.MaximumEventAgeInSeconds unset: events would wait up to 6 hours", id)
	case age < time.Minute || age > maxEventAge:
		t.Errorf("%s: EventInvokeConfig.MaximumEventAgeInSeconds = %v, out of Lambda's 60 s to 6 h", id, age)
	case age < retrySpan(c):
		t.Errorf("%s: EventInvokeConfig.MaximumEventAgeInSeconds = %v cuts short its %d invocations (%v)", id, age, c.retries+1, retrySpan(c))
	case id == followup.SweeperFunction+"Function":
		if period, _ := ratePeriod(sweepSchedule); age >= period {
			t.Errorf("%s: EventInvokeConfig.MaximumEventAgeInSeconds = %v, want less than the schedule's period %v", id, age, period)
		}
	}

	var onFailure *serverless.Function_Destination
	if d := cfg.DestinationConfig; d != nil {
		onFailure = d.OnFailure
		if d.OnSuccess != nil {
			t.Errorf("%s: an OnSuccess destination; only failures are recorded", id)
		}
	}
	switch {
	case !c.deadLetters && onFailure != nil:
		t.Errorf("%s: OnFailure destination %q; a failed sweep leaves nothing to redo", id, onFailure.Destination)
	case c.deadLetters && onFailure == nil:
		t.Errorf("%s: no OnFailure destination: failed invocations would be dropped silently", id)
	case c.deadLetters:
		// Type SQS makes SAM add sqs:SendMessage on the queue to the
		// role it generates for the function.
		if str(onFailure.Type) != "SQS" || onFailure.Destination != deadLetterQueueID+".Arn" {
			t.Errorf("%s: OnFailure = {Type: %q, Destination: %q}, want {Type: SQS, Destination: !GetAtt %s.Arn}", id, str(onFailure.Type), onFailure.Destination, deadLetterQueueID)
		}
		if fn.Role != nil {
			t.Errorf("%s: has a Role; SAM grants the on-failure queue's sqs:SendMessage only to a role it generates", id)
		}
	}
}

// checkSweepSchedule checks that the Sweeper runs on sweepSchedule, whose
// period is the redispatch threshold: a lost job is redone 5 to 10
// minutes after finalize.
func checkSweepSchedule(t *testing.T, id string, fn *serverless.Function) {
	t.Helper()
	if len(fn.Events) != 1 {
		t.Errorf("%s: %d events, want one Schedule", id, len(fn.Events))
	}
	var found bool
	for name, ev := range fn.Events {
		if ev.Type != "Schedule" || ev.Properties == nil || ev.Properties.ScheduleEvent == nil {
			t.Errorf("%s: event %s of type %s, want a Schedule", id, name, ev.Type)
			continue
		}
		found = true
		se := ev.Properties.ScheduleEvent
		if se.Schedule != sweepSchedule {
			t.Errorf("%s: event %s: Schedule = %q, want %q", id, name, se.Schedule, sweepSchedule)
		}
		if se.Enabled != nil && !*se.Enabled {
			t.Errorf("%s: event %s is disabled", id, name)
		}
		if se.Input != nil {
			t.Errorf("%s: event %s has an Input; the Sweeper takes EventBridge's scheduled event (events/Sweeper.json)", id, name)
		}
	}
	if !found {
		t.Errorf("%s: no Schedule event: nothing would sweep", id)
	}
	if period, err := ratePeriod(sweepSchedule); err != nil || period != redispatchAfter {
		t.Errorf("sweepSchedule %q: period %v (%v), want the redispatch threshold %v", sweepSchedule, period, err, redispatchAfter)
	}
}

// ratePeriod reads EventBridge's rate(<n> <unit>).
func ratePeriod(expr string) (time.Duration, error) {
	inner, ok := strings.CutPrefix(expr, "rate(")
	inner, ok2 := strings.CutSuffix(inner, ")")
	n, unit, ok3 := strings.Cut(inner, " ")
	v, err := strconv.Atoi(n)
	if !ok || !ok2 || !ok3 || err != nil || v < 1 {
		return 0, fmt.Errorf("not rate(<n> <unit>)")
	}
	units := map[string]time.Duration{"minute": time.Minute, "minutes": time.Minute, "hour": time.Hour, "hours": time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour}
	u, ok := units[unit]
	if !ok {
		return 0, fmt.Errorf("unit %q", unit)
	}
	return time.Duration(v) * u, nil
}

// The deployment's follow-up parameters: both features off unless asked
// for, and the webhook's secret named by its Secrets Manager ARN, never
// given as a value.
func TestTemplateFollowUpParameters(t *testing.T) {
	tmpl := loadTemplate(t)
	for _, c := range []struct {
		name     string
		def      string
		noEcho   bool
		allowed  []any
		patterns map[string]bool // value → accepted by AllowedPattern
	}{
		{name: "EnableThumbnailGeneration", def: "false", allowed: []any{"true", "false"}},
		{name: "MocFinalizeWebhookUrl", def: "", patterns: map[string]bool{
			"": true, "https://hooks.example/moc": true, "http://10.0.0.7:8080/hook": true, "ftp://x": false, "hooks.example": false,
		}},
		// The signing secret is in Secrets Manager: the parameter is its ARN.
		{name: "MocFinalizeWebhookSecretArn", def: "", patterns: secretARNPatterns},
	} {
		p, ok := tmpl.Parameters[c.name]
		if !ok {
			t.Errorf("no parameter %s", c.name)
			continue
		}
		if p.Default != c.def {
			t.Errorf("parameter %s: Default = %#v, want %q", c.name, p.Default, c.def)
		}
		if got := p.NoEcho != nil && *p.NoEcho; got != c.noEcho {
			t.Errorf("parameter %s: NoEcho = %v, want %v", c.name, got, c.noEcho)
		}
		if c.allowed != nil && !slices.Equal(p.AllowedValues, c.allowed) {
			t.Errorf("parameter %s: AllowedValues = %v, want %v", c.name, p.AllowedValues, c.allowed)
		}
		if len(c.patterns) > 0 {
			checkAllowedPattern(t, c.name, p, c.patterns)
		}
	}
}

// checkAllowedPattern checks that parameter name's AllowedPattern accepts
// exactly the values of patterns marked true.
func checkAllowedPattern(t *testing.T, name string, p cloudformation.Parameter, patterns map[string]bool) {
	t.Helper()
	if p.AllowedPattern == nil {
		t.Errorf("parameter %s: no AllowedPattern", name)
		return
	}
	re := regexp.MustCompile(*p.AllowedPattern)
	for v, want := range patterns {
		if got := re.MatchString(v); got != want {
			t.Errorf("parameter %s: AllowedPattern %q accepts %q: %v, want %v", name, *p.AllowedPattern, v, got, want)
		}
	}
}

// The stage the functions post to (WEBSOCKET_ENDPOINT's ${Stage}) is the
// stage deployed with every route, and its URL is an output.
func TestTemplateWebSocketStage(t *testing.T) {
	tmpl := loadTemplate(t)
	var stages []string
	for id, st := range tmpl.GetAllApiGatewayV2StageResources() {
		if st.ApiId == webSocketAPIID {
			stages = append(stages, id)
		}
	}
	if len(stages) != 1 {
		t.Fatalf("%s has the stages %v, want one", webSocketAPIID, stages)
	}
	id := stages[0]
	st := tmpl.GetAllApiGatewayV2StageResources()[id]
	if st.StageName != "Stage" {
		t.Errorf("%s: StageName = %q, want !Ref Stage (WEBSOCKET_ENDPOINT and the ManageConnections ARN name ${Stage})", id, st.StageName)
	}
	// Deployed with every route: auto-deployed once they exist, or an
	// AWS::ApiGatewayV2::Deployment that depends on them.
	dependsOn := st.AWSCloudFormationDependsOn
	switch {
	case st.AutoDeploy != nil && *st.AutoDeploy:
		if st.DeploymentId != nil {
			t.Errorf("%s: AutoDeploy with a DeploymentId", id)
		}
	case st.DeploymentId != nil:
		d, ok := tmpl.GetAllApiGatewayV2DeploymentResources()[str(st.DeploymentId)]
		if !ok {
			t.Fatalf("%s: DeploymentId = %q, not an AWS::ApiGatewayV2::Deployment", id, str(st.DeploymentId))
		}
		dependsOn = d.AWSCloudFormationDependsOn
	default:
		t.Fatalf("%s: neither AutoDeploy nor a DeploymentId: nothing would be deployed", id)
	}
	for routeID, r := range tmpl.GetAllApiGatewayV2RouteResources() {
		if r.ApiId == webSocketAPIID && !slices.Contains(dependsOn, routeID) {
			t.Errorf("%s (or its deployment) does not depend on the route %s: the first deployment could miss it", id, routeID)
		}
	}

	out, ok := tmpl.Outputs["WebSocketUrl"]
	if !ok {
		t.Fatal("no WebSocketUrl output")
	}
	if out.Value != webSocketURLOutput {
		t.Errorf("output WebSocketUrl = %v, want !Sub %q", out.Value, webSocketURLOutput)
	}
}

// Every function directory is a function of the template (sam build builds
// only those), and every function of the template has its directory (the
// Makefile's build-<Function>Function builds ./functions/<Function>).
func TestEveryFunctionDirectoryIsInTheTemplate(t *testing.T) {
	tmpl := loadTemplate(t)
	mains, err := filepath.Glob(filepath.Join("*", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]bool{}
	for _, m := range mains {
		dir := filepath.Dir(m)
		dirs[dir] = true
		if _, err := tmpl.GetServerlessFunctionWithName(dir + "Function"); err != nil {
			t.Errorf("functions/%s has no AWS::Serverless::Function %sFunction in the template", dir, dir)
		}
	}
	for id := range tmpl.GetAllServerlessFunctionResources() {
		if name, ok := strings.CutSuffix(id, "Function"); !ok || !dirs[name] {
			t.Errorf("%s: no functions/%s/main.go to build it from", id, strings.TrimSuffix(id, "Function"))
		}
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
		if !isRoute && !nonRouteFunctions()[id] {
			t.Errorf("function %s is in the template but no route of httpapi.Routes names it", id)
		}
		for name, ev := range fn.Events {
			switch {
			case ev.Type == "Api":
				t.Errorf("%s: event %s is a REST API (Api) event; routes are HttpApi events", id, name)
			case ev.Type != "HttpApi" && id != followup.SweeperFunction+"Function":
				// The Sweeper's schedule is the one other event
				// (TestTemplateFollowUpFunctions).
				t.Errorf("%s: event %s of type %s: only the Sweeper runs on anything but an HttpApi route", id, name, ev.Type)
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

// globalFunction is the template's Globals.Function (empty when there is
// none), which goformation parses but does not apply to the functions.
func globalFunction(tmpl *cloudformation.Template) *global.Function {
	if g, ok := tmpl.Globals["Function"].(*global.Function); ok {
		return g
	}
	return &global.Function{}
}

// Every function the template builds runs the same way: the Makefile builds
// a linux/arm64 binary named bootstrap for the OS-only runtime. The values
// may come from Globals.Function (which goformation parses but does not
// apply) or from the function itself.
func TestTemplateRuntime(t *testing.T) {
	tmpl := loadTemplate(t)
	g := globalFunction(tmpl)
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
	for _, id := range slices.Sorted(maps.Keys(tmpl.GetAllServerlessFunctionResources())) {
		fn := tmpl.GetAllServerlessFunctionResources()[id]
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

// adotCondition is the condition under which every function runs the ADOT
// collector layer (AdotLayerArn) with X-Ray active tracing.
const adotCondition = "UseAdotLayer"

// Tracing is off unless the deployment asks for it: every function is
// given the OTLP endpoint and headers of the stack's parameters and its
// service name (checkEnv, in the tests of each kind of function); the
// parameters default to empty (no tracing) and the headers, credentials,
// are never echoed; and the ADOT collector layer (option (a) of the
// template's comment) runs in every function, with X-Ray active tracing,
// exactly when AdotLayerArn is set: from Globals (SAM adds Globals' Layers
// to a function's own and a function's own Tracing wins, so no function
// may set either).
func TestTemplateTracing(t *testing.T) {
	tmpl := loadTemplate(t)
	for _, c := range []struct {
		name     string
		noEcho   bool
		patterns map[string]bool // value → accepted by AllowedPattern
	}{
		{name: "OtelExporterOtlpEndpoint", patterns: map[string]bool{
			"": true, "http://localhost:4318": true, "https://otlp.example.com": true, "https://otlp.example.com/otlp": true,
			"localhost:4318": false, "grpc://localhost:4317": false, "https://otlp.example.com/?x=1": false,
		}},
		{name: "OtelExporterOtlpHeadersSecretArn", patterns: secretARNPatterns},
		{name: "AdotLayerArn", patterns: map[string]bool{
			"": true,
			"arn:aws:lambda:us-east-1:901920570463:layer:aws-otel-collector-arm64-ver-0-117-0:1": true,
			"arn:aws-cn:lambda:cn-north-1:123456789012:layer:my-collector:12":                    true,
			"arn:aws:lambda:us-east-1:901920570463:layer:aws-otel-collector-arm64-ver-0-117-0":   false, // no version
			"aws-otel-collector-arm64-ver-0-117-0":                                               false,
		}},
	} {
		p, ok := tmpl.Parameters[c.name]
		if !ok {
			t.Errorf("no parameter %s", c.name)
			continue
		}
		if p.Type != "String" || p.Default != "" {
			t.Errorf("parameter %s: Type %q, Default %#v; want String, \"\" (tracing off unless asked for)", c.name, p.Type, p.Default)
		}
		if got := p.NoEcho != nil && *p.NoEcho; got != c.noEcho {
			t.Errorf("parameter %s: NoEcho = %v, want %v", c.name, got, c.noEcho)
		}
		checkAllowedPattern(t, c.name, p, c.patterns)
	}

	if _, ok := tmpl.Conditions[adotCondition]; !ok {
		t.Errorf("no condition %s (AdotLayerArn is set)", adotCondition)
	}
	if _, ok := tmpl.Globals["Function"]; !ok {
		t.Fatal("no Globals.Function")
	}
	g := globalFunction(tmpl)
	wantLayers := []string{ifString(adotCondition, "AdotLayerArn", "AWS::NoValue")}
	if g.Layers == nil || !slices.Equal(*g.Layers, wantLayers) {
		var got []string
		if g.Layers != nil {
			got = *g.Layers
		}
		t.Errorf("Globals.Function.Layers = %q, want %q (!If [%s, !Ref AdotLayerArn, !Ref AWS::NoValue])", got, wantLayers, adotCondition)
	}
	if got, want := str(g.Tracing), ifString(adotCondition, "Active", "PassThrough"); got != want {
		t.Errorf("Globals.Function.Tracing = %q, want %q", got, want)
	}
	for _, id := range slices.Sorted(maps.Keys(tmpl.GetAllServerlessFunctionResources())) {
		fn := tmpl.GetAllServerlessFunctionResources()[id]
		if len(fn.Layers) > 0 {
			t.Errorf("%s: Layers %q of its own; layers come from Globals (the ADOT collector's)", id, fn.Layers)
		}
		if fn.Tracing != nil {
			t.Errorf("%s: Tracing %q of its own would override Globals' (active with the ADOT layer)", id, *fn.Tracing)
		}
		if fn.Environment == nil {
			t.Errorf("%s: no Environment: it lacks %v and OTEL_SERVICE_NAME", id, slices.Sorted(maps.Keys(tracingEnv)))
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

// traceparentPattern is a W3C trace context traceparent (version 00).
var traceparentPattern = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

// jobKinds is the outbox kind of the jobs each job function does.
var jobKinds = map[string]string{
	followup.ThumbnailFunction: followup.KindThumbnail,
	followup.WebhookFunction:   followup.KindWebhook,
}

// Every follow-up function has its main and a sample event its invoker
// could have sent: a followup.Job of its kind (what Finalize and the
// Sweeper invoke it with) or, for the Sweeper, EventBridge's scheduled
// event.
func TestEveryFollowUpFunctionHasMainAndEvent(t *testing.T) {
	for _, f := range followup.Functions {
		t.Run(f, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(f, "main.go")); err != nil {
				t.Errorf("followup.Functions names %s: functions/%s/main.go: %v", f, f, err)
			}
			path := filepath.Join(eventsDir, f+".json")
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%s: sample event: %v", f, err)
			}
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if f == followup.SweeperFunction {
				var ev events.EventBridgeEvent
				if err := dec.Decode(&ev); err != nil {
					t.Fatalf("%s: not an EventBridge event: %v", path, err)
				}
				if ev.Version != "0" || ev.Source != "aws.events" || ev.DetailType != "Scheduled Event" {
					t.Errorf("%s: version %q, source %q, detail-type %q; want 0, aws.events, Scheduled Event", path, ev.Version, ev.Source, ev.DetailType)
				}
				if ev.ID == "" || ev.Time.IsZero() || ev.Region == "" || len(ev.AccountID) != 12 {
					t.Errorf("%s: lacks id, time, region or account", path)
				}
				if len(ev.Resources) != 1 || !regexp.MustCompile(`^arn:aws[a-z-]*:events:[a-z0-9-]+:[0-9]{12}:rule/.+$`).MatchString(ev.Resources[0]) {
					t.Errorf("%s: resources = %v, want the schedule's rule ARN", path, ev.Resources)
				}
				if string(ev.Detail) != "{}" {
					t.Errorf("%s: detail = %s, want {} (a scheduled event has none)", path, ev.Detail)
				}
				return
			}
			var job followup.Job
			if err := dec.Decode(&job); err != nil {
				t.Fatalf("%s: not a followup.Job: %v", path, err)
			}
			if job.Kind != jobKinds[f] {
				t.Errorf("%s: kind %q, want %q", path, job.Kind, jobKinds[f])
			}
			for name, v := range map[string]string{"outboxId": job.OutboxID, "mocId": job.MocID} {
				if _, err := uuid.Parse(v); err != nil || len(v) != 36 {
					t.Errorf("%s: %s %q is not a UUID", path, name, v)
				}
			}
			if job.MocID != seedMocID {
				t.Errorf("%s: mocId %s, want the seed's existing MOC %s (TestBootstrapsUnderRIE checks it is left alone)", path, job.MocID, seedMocID)
			}
			if job.TraceParent != "" && !traceparentPattern.MatchString(job.TraceParent) {
				t.Errorf("%s: traceparent %q is not a W3C traceparent", path, job.TraceParent)
			}
		})
	}
}

// wsEventTypes is the requestContext.eventType API Gateway sends per
// route key.
var wsEventTypes = map[string]string{"$connect": "CONNECT", "$disconnect": "DISCONNECT"}

// Every WebSocket route has a sample event API Gateway could have sent
// after the authorizer let the connection in.
func TestEveryWebSocketRouteHasMainAndEvent(t *testing.T) {
	for _, rt := range wsapi.Routes {
		t.Run(rt.Function, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(rt.Function, "main.go")); err != nil {
				t.Errorf("route %q: functions/%s/main.go: %v", rt.Key, rt.Function, err)
			}
			path := filepath.Join(eventsDir, rt.Function+".json")
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("route %q: sample event: %v", rt.Key, err)
			}
			var ev events.APIGatewayWebsocketProxyRequest
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&ev); err != nil {
				t.Fatalf("%s: not an API Gateway WebSocket event: %v", path, err)
			}
			rc := ev.RequestContext
			if rc.RouteKey != rt.Key {
				t.Errorf("%s: requestContext.routeKey = %q, want %q", path, rc.RouteKey, rt.Key)
			}
			wantType := wsEventTypes[rt.Key]
			if wantType == "" {
				wantType = "MESSAGE"
			}
			if rc.EventType != wantType {
				t.Errorf("%s: requestContext.eventType = %q, want %q", path, rc.EventType, wantType)
			}
			if rc.ConnectionID == "" || rc.APIID == "" || rc.Stage == "" || rc.DomainName == "" {
				t.Errorf("%s: requestContext lacks connectionId, apiId, stage or domainName", path)
			}
			// The authorizer's context, which API Gateway passes to every
			// route of the connection: the functions trust only userId.
			authz, _ := rc.Authorizer.(map[string]any)
			if id, _ := authz["userId"].(string); id == "" || authz["principalId"] != id {
				t.Errorf("%s: requestContext.authorizer = %v, want userId and principalId (the token's sub)", path, rc.Authorizer)
			}
			switch rt.Key {
			case "$connect":
				if ev.QueryStringParameters["sessionId"] == "" {
					t.Errorf("%s: $connect without the sessionId query parameter", path)
				}
			case "$default":
				var msg struct{ Action string }
				if err := json.Unmarshal([]byte(ev.Body), &msg); err != nil || msg.Action == "" {
					t.Errorf("%s: body %q is not a JSON message with an action (%v)", path, ev.Body, err)
				}
			}
		})
	}

	// The authorizer's event: a REQUEST authorizer's input on $connect,
	// with the token in the query string. (aws-lambda-go's type is the REST
	// API's; a WebSocket event's requestContext has more fields.)
	path := filepath.Join(eventsDir, wsAuthorizer+".json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("authorizer sample event: %v", err)
	}
	var ev events.APIGatewayCustomAuthorizerRequestTypeRequest
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("%s: not a REQUEST authorizer event: %v", path, err)
	}
	if ev.Type != "REQUEST" || !strings.HasSuffix(ev.MethodArn, "/$connect") {
		t.Errorf("%s: type %q, methodArn %q; want REQUEST and a $connect method ARN", path, ev.Type, ev.MethodArn)
	}
	if ev.QueryStringParameters["token"] == "" || ev.QueryStringParameters["sessionId"] == "" {
		t.Errorf("%s: queryStringParameters = %v, want token and sessionId", path, ev.QueryStringParameters)
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
