package functions_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v7/intrinsics"

	"github.com/mocbuilders/moc-upload/shared/followup"
	"github.com/mocbuilders/moc-upload/shared/httpapi"
	"github.com/mocbuilders/moc-upload/shared/wsapi"
)

// The template as CloudFormation would see it for given parameter values:
// its conditions evaluated, the resources whose condition is false
// dropped, every Fn::If replaced by its branch, AWS::NoValue removed and
// every !Ref of a parameter replaced by the parameter's value. Refs to
// resources, Fn::GetAtt and Fn::Sub stay as they are (they name what
// exists only once deployed). goformation evaluates none of this, and the
// parts of the template that depend on DatabaseMode and AuthMode are all
// conditions, so the tests below render the template in each mode and
// check the result.

// rendered is one rendering: the template's sections as generic JSON.
type rendered struct {
	params     map[string]any // parameter → value (string, or []any for lists)
	conditions map[string]bool
	resources  map[string]map[string]any
	outputs    map[string]any
}

// templateJSON is template.yaml with the short intrinsic forms (!Ref …)
// in their long JSON forms, not evaluated.
func templateJSON(t *testing.T) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	j, err := intrinsics.ProcessYAML(raw, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(j, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// render renders the template with the parameters' defaults overridden by
// values; a parameter without a default or a value fails the test.
func render(t *testing.T, values map[string]string) *rendered {
	t.Helper()
	doc := templateJSON(t)
	r := &rendered{params: map[string]any{}, conditions: map[string]bool{}, resources: map[string]map[string]any{}}
	params, _ := doc["Parameters"].(map[string]any)
	for name, p := range params {
		p, _ := p.(map[string]any)
		v, ok := values[name]
		if !ok {
			d, has := p["Default"]
			if !has {
				t.Fatalf("render: parameter %s has no default and no value", name)
			}
			v = scalar(d)
		}
		typ, _ := p["Type"].(string)
		if typ == "CommaDelimitedList" || strings.HasPrefix(typ, "List<") {
			var list []any
			for _, s := range strings.Split(v, ",") {
				list = append(list, strings.TrimSpace(s))
			}
			r.params[name] = list
		} else {
			r.params[name] = v
		}
	}
	for name := range values {
		if _, ok := params[name]; !ok {
			t.Fatalf("render: no parameter %s", name)
		}
	}
	conds, _ := doc["Conditions"].(map[string]any)
	var eval func(name string, seen map[string]bool) bool
	eval = func(name string, seen map[string]bool) bool {
		if v, ok := r.conditions[name]; ok {
			return v
		}
		if seen[name] {
			t.Fatalf("render: condition %s refers to itself", name)
		}
		seen[name] = true
		c, ok := conds[name]
		if !ok {
			t.Fatalf("render: no condition %s", name)
		}
		v := r.condition(t, c, func(n string) bool { return eval(n, seen) })
		r.conditions[name] = v
		return v
	}
	for name := range conds {
		eval(name, map[string]bool{})
	}
	res, _ := doc["Resources"].(map[string]any)
	for id, v := range res {
		v, _ := v.(map[string]any)
		if c, ok := v["Condition"].(string); ok && !r.conditions[c] {
			continue
		}
		out, _ := r.value(t, v).(map[string]any)
		r.resources[id] = out
	}
	if outs, ok := doc["Outputs"].(map[string]any); ok {
		r.outputs = map[string]any{}
		for id, v := range outs {
			v, _ := v.(map[string]any)
			if c, ok := v["Condition"].(string); ok && !r.conditions[c] {
				continue
			}
			r.outputs[id] = r.value(t, v)
		}
	}
	return r
}

func scalar(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	return fmt.Sprint(v)
}

// condition evaluates a condition's function.
func (r *rendered) condition(t *testing.T, c any, cond func(string) bool) bool {
	t.Helper()
	m, ok := c.(map[string]any)
	if !ok || len(m) != 1 {
		t.Fatalf("render: condition %v is not one function", c)
	}
	for fn, arg := range m {
		args, _ := arg.([]any)
		switch fn {
		case "Fn::Equals":
			a, b := r.value(t, args[0]), r.value(t, args[1])
			return fmt.Sprint(a) == fmt.Sprint(b)
		case "Fn::Not":
			return !r.condition(t, args[0], cond)
		case "Fn::And", "Fn::Or":
			and := fn == "Fn::And"
			for _, a := range args {
				if r.condition(t, a, cond) != and {
					return !and
				}
			}
			return and
		case "Condition":
			return cond(arg.(string))
		}
		t.Fatalf("render: condition function %s", fn)
	}
	return false
}

// noValue marks what AWS::NoValue removes.
type noValue struct{}

// value renders v: Fn::If by its branch, Ref of a parameter by its value,
// AWS::NoValue removed, Fn::Select of a list rendered; the rest as is.
func (r *rendered) value(t *testing.T, v any) any {
	switch v := v.(type) {
	case map[string]any:
		if len(v) == 1 {
			if ref, ok := v["Ref"].(string); ok {
				if ref == "AWS::NoValue" {
					return noValue{}
				}
				if p, ok := r.params[ref]; ok {
					return p
				}
				return v
			}
			if args, ok := v["Fn::If"].([]any); ok {
				if len(args) != 3 {
					t.Fatalf("render: Fn::If %v", args)
				}
				c, ok := r.conditions[args[0].(string)]
				if !ok {
					t.Fatalf("render: Fn::If on unknown condition %v", args[0])
				}
				if c {
					return r.value(t, args[1])
				}
				return r.value(t, args[2])
			}
		}
		out := map[string]any{}
		for k, x := range v {
			if y := r.value(t, x); y != (noValue{}) {
				out[k] = y
			}
		}
		return out
	case []any:
		out := []any{}
		for _, x := range v {
			if y := r.value(t, x); y != (noValue{}) {
				out = append(out, y)
			}
		}
		return out
	}
	return v
}

// refs lists every resource v refers to: Ref, Fn::GetAtt, and ${X} or
// ${X.Attr} in Fn::Sub strings (pseudo-parameters and parameters aside).
// SAM's `!Ref F.Version` (AutoPublishAlias) counts as a reference to F.
func (r *rendered) refs(v any, out map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			switch k {
			case "Ref":
				if s, ok := x.(string); ok && !strings.HasPrefix(s, "AWS::") {
					out[strings.Split(s, ".")[0]] = true
				}
			case "Fn::GetAtt":
				switch a := x.(type) {
				case string:
					out[strings.Split(a, ".")[0]] = true
				case []any:
					out[a[0].(string)] = true
				}
			case "Fn::Sub":
				s, _ := x.(string)
				if a, ok := x.([]any); ok {
					s, _ = a[0].(string)
				}
				for _, m := range subVar.FindAllStringSubmatch(s, -1) {
					name := strings.Split(m[1], ".")[0]
					if _, isParam := r.params[name]; !isParam && !strings.HasPrefix(name, "AWS::") {
						out[name] = true
					}
				}
			}
			r.refs(x, out)
		}
	case []any:
		for _, x := range v {
			r.refs(x, out)
		}
	}
}

var subVar = regexp.MustCompile(`\$\{([^}!]+)\}`)

// get walks a rendered resource by keys (map keys, or list indexes).
func get(v any, path ...string) any {
	for _, k := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func (r *rendered) functions() map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, res := range r.resources {
		if res["Type"] == "AWS::Serverless::Function" {
			out[strings.TrimSuffix(id, "Function")] = res
		}
	}
	return out
}

// The four deployments the parameters allow: the two database modes by
// the two auth modes.
const (
	existingSecret = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-1234-AbCdEf"
	existingHost   = "moc.proxy-abc.eu-west-1.rds.amazonaws.com"
)

var existingSubnets = []any{"subnet-0123456789abcdef0", "subnet-0fedcba9876543210"}
var existingSGs = []any{"sg-0123456789abcdef0"}

func modes() map[string]map[string]string {
	existing := map[string]string{
		"DatabaseMode":             "existing",
		"DatabaseSubnetIds":        "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
		"DatabaseSecurityGroupIds": "sg-0123456789abcdef0",
		"DatabaseSecretArn":        existingSecret,
		"DatabaseHost":             existingHost,
	}
	cookie := map[string]string{"AuthMode": "cookie", "CorsAllowOrigins": "https://mocbuilders.example"}
	required := map[string]string{"JwtIssuer": "https://issuer.example", "JwtAudience": "web-client"}
	out := map[string]map[string]string{}
	for _, db := range []string{"create", "existing"} {
		for _, au := range []string{"jwt", "cookie"} {
			v := maps.Clone(required)
			if db == "existing" {
				maps.Copy(v, existing)
			}
			if au == "cookie" {
				maps.Copy(v, cookie)
			}
			out[db+"/"+au] = v
		}
	}
	return out
}

// Every resource, output and property refers only to resources that exist
// in that mode: no function of the existing-database mode points at the
// VPC that only the create mode makes.
func TestRenderedTemplateHasNoDanglingReferences(t *testing.T) {
	for name, values := range modes() {
		t.Run(name, func(t *testing.T) {
			r := render(t, values)
			for id, res := range r.resources {
				got := map[string]bool{}
				r.refs(res, got)
				if deps, ok := res["DependsOn"]; ok {
					for _, d := range append([]any{}, deps) {
						if s, ok := d.(string); ok {
							got[s] = true
						}
						if l, ok := d.([]any); ok {
							for _, x := range l {
								got[x.(string)] = true
							}
						}
					}
				}
				for ref := range got {
					if _, ok := r.resources[strings.Split(ref, ".")[0]]; !ok {
						t.Errorf("%s refers to %s, which this mode does not create", id, ref)
					}
				}
			}
			for id, out := range r.outputs {
				got := map[string]bool{}
				r.refs(out, got)
				for ref := range got {
					if _, ok := r.resources[ref]; !ok {
						t.Errorf("output %s refers to %s, which this mode does not create", id, ref)
					}
				}
			}
		})
	}
}

// The database's resources exist in DatabaseMode create only, and every
// function that touches PostgreSQL runs next to it, with its secret's ARN
// (never a credential) and the right to read that secret only.
func TestRenderedTemplateDatabaseModes(t *testing.T) {
	created := []string{"Vpc", "PrivateSubnetA", "PrivateSubnetB", "PublicSubnet", "NatGateway", "PrivateRouteToNat",
		"S3GatewayEndpoint", "FunctionSecurityGroup", "ProxySecurityGroup", "DatabaseSecurityGroup",
		"DatabaseSubnetGroup", "DatabaseCluster", "DatabaseInstance", "DatabaseProxy", "DatabaseProxyTargetGroup", "DatabaseProxyRole"}
	for name, values := range modes() {
		t.Run(name, func(t *testing.T) {
			r := render(t, values)
			create := values["DatabaseMode"] != "existing"
			for _, id := range created {
				if _, ok := r.resources[id]; ok != create {
					t.Errorf("resource %s exists: %v, want %v", id, ok, create)
				}
			}
			wantSecret := any(existingSecret)
			wantHost := any(existingHost)
			wantSubnets := any(existingSubnets)
			wantSGs := any(existingSGs)
			if create {
				wantSecret = map[string]any{"Fn::GetAtt": "DatabaseCluster.MasterUserSecret.SecretArn"}
				wantHost = map[string]any{"Fn::GetAtt": "DatabaseProxy.Endpoint"}
				wantSubnets = []any{map[string]any{"Ref": "PrivateSubnetA"}, map[string]any{"Ref": "PrivateSubnetB"}}
				wantSGs = []any{map[string]any{"Ref": "FunctionSecurityGroup"}}
				checkCreatedDatabase(t, r)
			}
			for f, fn := range r.functions() {
				props, _ := fn["Properties"].(map[string]any)
				env, _ := get(props, "Environment", "Variables").(map[string]any)
				vpc := props["VpcConfig"]
				if f == wsAuthorizer || f == httpAuthorizer {
					if vpc != nil || env["DATABASE_SECRET_ARN"] != nil {
						t.Errorf("%s: in the VPC or given the database: it needs neither (and reaches the JWKS on the internet)", f)
					}
					continue
				}
				if !jsonEqual(get(vpc, "SubnetIds"), wantSubnets) || !jsonEqual(get(vpc, "SecurityGroupIds"), wantSGs) {
					t.Errorf("%s: VpcConfig = %v, want subnets %v and security groups %v", f, vpc, wantSubnets, wantSGs)
				}
				if !jsonEqual(env["DATABASE_SECRET_ARN"], wantSecret) || !jsonEqual(env["DATABASE_HOST"], wantHost) {
					t.Errorf("%s: DATABASE_SECRET_ARN %v, DATABASE_HOST %v; want %v, %v", f, env["DATABASE_SECRET_ARN"], env["DATABASE_HOST"], wantSecret, wantHost)
				}
				if _, ok := env["DATABASE_URL"]; ok {
					t.Errorf("%s: DATABASE_URL in the environment: credentials belong in Secrets Manager", f)
				}
				if !slices.ContainsFunc(secretReads(props), func(v any) bool { return jsonEqual(v, wantSecret) }) {
					t.Errorf("%s: no secretsmanager:GetSecretValue on the database's secret %v (it reads it at cold start)", f, wantSecret)
				}
			}
			// The deploy migrates: the custom resource calls Migrate, in the
			// VPC, with a property that changes with its code.
			mig := r.resources["SchemaMigration"]
			if mig == nil || mig["Type"] != "Custom::SchemaMigration" ||
				!jsonEqual(get(mig, "Properties", "ServiceToken"), map[string]any{"Fn::GetAtt": "MigrateFunction.Arn"}) ||
				!jsonEqual(get(mig, "Properties", "CodeVersion"), map[string]any{"Ref": "MigrateFunction.Version"}) {
				t.Errorf("SchemaMigration = %v, want Custom::SchemaMigration served by MigrateFunction, CodeVersion its Version", mig)
			}
			if get(r.resources["MigrateFunction"], "Properties", "AutoPublishAlias") == nil {
				t.Error("MigrateFunction has no AutoPublishAlias: its Version would not change with its migrations")
			}
			if to, _ := get(mig, "Properties", "ServiceTimeout").(float64); to <= 0 || to > 3600 {
				t.Errorf("SchemaMigration ServiceTimeout = %v, want a bound (CloudFormation waits an hour otherwise)", to)
			}
			if create {
				// Ordered after the proxy's target and the network.
				got := map[string]bool{}
				r.refs(get(mig, "Properties"), got)
				for _, dep := range []string{"DatabaseProxyTargetGroup", "PrivateRouteToNat", "S3GatewayEndpoint"} {
					if !got[dep] {
						t.Errorf("SchemaMigration does not wait for %s", dep)
					}
				}
			}
		})
	}
}

// checkCreatedDatabase checks the database DatabaseMode create makes:
// Aurora Serverless v2 PostgreSQL whose password RDS keeps, encrypted,
// snapshotted on deletion, reachable only from the proxy, which requires
// TLS and reads the same secret.
func checkCreatedDatabase(t *testing.T, r *rendered) {
	t.Helper()
	c := r.resources["DatabaseCluster"]
	p, _ := c["Properties"].(map[string]any)
	if p["Engine"] != "aurora-postgresql" || p["ManageMasterUserPassword"] != true || p["StorageEncrypted"] != true || p["MasterUserPassword"] != nil {
		t.Errorf("DatabaseCluster: %v", p)
	}
	if get(p, "ServerlessV2ScalingConfiguration", "MinCapacity") == nil || c["DeletionPolicy"] != "Snapshot" {
		t.Errorf("DatabaseCluster: not Serverless v2, or no final snapshot: %v", c)
	}
	if get(r.resources["DatabaseInstance"], "Properties", "DBInstanceClass") != "db.serverless" {
		t.Error("DatabaseInstance is not db.serverless")
	}
	proxy, _ := get(r.resources["DatabaseProxy"], "Properties").(map[string]any)
	if proxy["RequireTLS"] != true || proxy["EngineFamily"] != "POSTGRESQL" ||
		!jsonEqual(get(proxy, "Auth", "0", "SecretArn"), map[string]any{"Fn::GetAtt": "DatabaseCluster.MasterUserSecret.SecretArn"}) {
		t.Errorf("DatabaseProxy: %v", proxy)
	}
	in := get(r.resources["DatabaseSecurityGroup"], "Properties", "SecurityGroupIngress")
	if !jsonEqual(get(in, "0", "SourceSecurityGroupId"), map[string]any{"Ref": "ProxySecurityGroup"}) || len(in.([]any)) != 1 {
		t.Errorf("DatabaseSecurityGroup ingress = %v, want the proxy only", in)
	}
	in = get(r.resources["ProxySecurityGroup"], "Properties", "SecurityGroupIngress")
	if !jsonEqual(get(in, "0", "SourceSecurityGroupId"), map[string]any{"Ref": "FunctionSecurityGroup"}) || len(in.([]any)) != 1 {
		t.Errorf("ProxySecurityGroup ingress = %v, want the functions only", in)
	}
	ep, _ := get(r.resources["S3GatewayEndpoint"], "Properties").(map[string]any)
	if ep["VpcEndpointType"] != "Gateway" || !jsonEqual(ep["ServiceName"], map[string]any{"Fn::Sub": "com.amazonaws.${AWS::Region}.s3"}) {
		t.Errorf("S3GatewayEndpoint: %v", ep)
	}
}

// secretReads lists the resources of a function's
// secretsmanager:GetSecretValue statements.
func secretReads(props map[string]any) []any {
	var out []any
	pols, _ := props["Policies"].([]any)
	for _, p := range pols {
		sts, _ := get(p, "Statement").([]any)
		for _, st := range sts {
			if slices.Contains(stringList(get(st, "Action")), "secretsmanager:GetSecretValue") {
				switch r := get(st, "Resource").(type) {
				case []any:
					out = append(out, r...)
				default:
					out = append(out, r)
				}
			}
		}
	}
	return out
}

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// Every route is an operation of the HTTP API's definition with the
// authorizer AuthMode picks, the one SAM then keeps (the route's event
// names none); the cookie authorizer is HttpAuthorizerFunction, invoked
// with payload 2.0 and simple responses, with API Gateway allowed to.
func TestRenderedTemplateAuthModes(t *testing.T) {
	for name, values := range modes() {
		t.Run(name, func(t *testing.T) {
			r := render(t, values)
			want := "JwtAuthorizer"
			if values["AuthMode"] == "cookie" {
				want = "CookieAuthorizer"
			}
			api, _ := get(r.resources[httpAPIID], "Properties").(map[string]any)
			if api["Auth"] == nil || get(api, "Auth", "DefaultAuthorizer") != nil {
				t.Fatalf("%s Auth = %v: want both authorizers and no DefaultAuthorizer (chosen per operation)", httpAPIID, api["Auth"])
			}
			cookie, _ := get(api, "Auth", "Authorizers", "CookieAuthorizer").(map[string]any)
			if !jsonEqual(cookie["FunctionArn"], map[string]any{"Fn::GetAtt": "HttpAuthorizerFunction.Arn"}) ||
				cookie["AuthorizerPayloadFormatVersion"] != "2.0" || cookie["EnableSimpleResponses"] != true || cookie["EnableFunctionDefaultPermissions"] != true {
				t.Errorf("CookieAuthorizer = %v", cookie)
			}
			if get(cookie, "Identity", "ReauthorizeEvery") != float64(0) {
				t.Errorf("CookieAuthorizer Identity = %v, want ReauthorizeEvery 0: no cache, so no identity source, so the cookie or the header will do", cookie["Identity"])
			}
			if get(api, "Auth", "Authorizers", "JwtAuthorizer", "IdentitySource") != "$request.header.Authorization" {
				t.Error("JwtAuthorizer does not read the Authorization header")
			}
			paths, _ := get(api, "DefinitionBody", "paths").(map[string]any)
			seen := 0
			for _, rt := range httpapi.Routes {
				op := get(paths, rt.Path, strings.ToLower(rt.Method))
				if !jsonEqual(get(op, "security"), []any{map[string]any{want: []any{}}}) {
					t.Errorf("%s: security = %v, want [{%s: []}]", rt.RouteKey(), get(op, "security"), want)
				}
				seen++
			}
			n := 0
			for _, ops := range paths {
				n += len(ops.(map[string]any))
			}
			if n != seen {
				t.Errorf("DefinitionBody has %d operations, httpapi.Routes %d: every operation must be a route", n, seen)
			}
			// The authorizer function: the same verifier's configuration as
			// the WebSocket authorizer's, plus the cookie's name.
			env, _ := get(r.resources["HttpAuthorizerFunction"], "Properties", "Environment", "Variables").(map[string]any)
			wsEnv, _ := get(r.resources["WsAuthorizerFunction"], "Properties", "Environment", "Variables").(map[string]any)
			for _, k := range []string{"JWT_ISSUER", "JWT_AUDIENCE", "JWKS_URL"} {
				if !jsonEqual(env[k], wsEnv[k]) || env[k] == nil {
					t.Errorf("HttpAuthorizerFunction %s = %v, WsAuthorizerFunction's %v: one verifier, one configuration", k, env[k], wsEnv[k])
				}
			}
			if env["AUTH_COOKIE_NAME"] != "access_token" {
				t.Errorf("AUTH_COOKIE_NAME = %v, want the AuthCookieName default access_token", env["AUTH_COOKIE_NAME"])
			}
		})
	}
}

// No credential anywhere: no parameter takes one (no NoEcho parameter is
// left: secrets are Secrets Manager ARNs), no function's environment has a
// variable that holds one, and the rendered template, with every secret
// ARN set, has no string that looks like a credential.
func TestRenderedTemplateHasNoPlaintextSecret(t *testing.T) {
	doc := templateJSON(t)
	params, _ := doc["Parameters"].(map[string]any)
	for name, p := range params {
		if get(p, "NoEcho") == true {
			t.Errorf("parameter %s is NoEcho: a secret given as a parameter ends up in an environment; name a Secrets Manager secret instead", name)
		}
	}
	credentialVar := regexp.MustCompile(`(?i)(PASSWORD|SECRET|TOKEN|CREDENTIAL|PRIVATE_KEY|_HEADERS|DATABASE_URL)`)
	values := modes()["create/cookie"]
	values["MocFinalizeWebhookSecretArn"] = "arn:aws:secretsmanager:us-east-1:123456789012:secret:webhook-AbCdEf"
	values["OtelExporterOtlpHeadersSecretArn"] = "arn:aws:secretsmanager:us-east-1:123456789012:secret:otlp-AbCdEf"
	for _, v := range []map[string]string{values, modes()["existing/jwt"]} {
		r := render(t, v)
		for f, fn := range r.functions() {
			env, _ := get(fn, "Properties", "Environment", "Variables").(map[string]any)
			for k := range env {
				if credentialVar.MatchString(k) && !strings.HasSuffix(k, "_SECRET_ARN") {
					t.Errorf("%s: environment variable %s looks like a credential; name its secret (…_SECRET_ARN) instead", f, k)
				}
			}
		}
		all, _ := json.Marshal(r.resources)
		for _, re := range []*regexp.Regexp{
			regexp.MustCompile(`postgres(ql)?://[^"@/]*:[^"@/]*@`), // a URL with a password
			regexp.MustCompile(`whsec_[A-Za-z0-9+/=]{8,}`),         // a webhook secret
			regexp.MustCompile(`"MasterUserPassword"`),             // a password RDS does not manage
			regexp.MustCompile(`(?i)bearer%20[a-z0-9]`),            // OTLP credentials
		} {
			if m := re.Find(all); m != nil {
				t.Errorf("the rendered template has %q", m)
			}
		}
	}
}

// Operations: every function logs to a log group of its own that keeps
// LogRetentionDays; the HTTP API logs its requests and throttles its
// routes; the HTTP functions end before API Gateway's 30 s; the alarms
// cover every function's errors and throttles, the 5xx rate and the
// follow-up failures, and notify AlarmTopicArn exactly when it is set;
// ReservedConcurrency applies to the functions that touch PostgreSQL.
func TestRenderedTemplateOperations(t *testing.T) {
	for _, c := range []struct {
		name   string
		values map[string]string
	}{
		{"defaults", modes()["create/jwt"]},
		{"topic, retention, concurrency", func() map[string]string {
			v := modes()["existing/cookie"]
			v["AlarmTopicArn"] = "arn:aws:sns:us-east-1:123456789012:moc-alarms"
			v["LogRetentionDays"] = "90"
			v["ReservedConcurrency"] = "20"
			return v
		}()},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := render(t, c.values)
			retention := c.values["LogRetentionDays"]
			if retention == "" {
				retention = "30"
			}
			globalTimeout := get(templateJSON(t), "Globals", "Function", "Timeout").(float64)
			errorsAlarmed, throttlesAlarmed := alarmedFunctions(r, "Errors"), alarmedFunctions(r, "Throttles")
			for f, fn := range r.functions() {
				props, _ := fn["Properties"].(map[string]any)
				lg, _ := get(props, "LoggingConfig", "LogGroup").(map[string]any)
				group := r.resources[fmt.Sprint(lg["Ref"])]
				if group == nil || group["Type"] != "AWS::Logs::LogGroup" || get(group, "Properties", "RetentionInDays") != retention {
					t.Errorf("%s: LoggingConfig.LogGroup %v is not a log group kept %s days", f, lg, retention)
				}
				timeout := globalTimeout
				if v, ok := props["Timeout"].(float64); ok {
					timeout = v
				}
				if _, isRoute := httpapi.RouteByFunction(f); (isRoute || f == httpAuthorizer || f == wsAuthorizer || isWebSocketFunction(f)) && timeout >= 30 {
					t.Errorf("%s: Timeout %v s, want below the API's 30 s", f, timeout)
				}
				if !errorsAlarmed[f] || !throttlesAlarmed[f] {
					t.Errorf("%s: errors alarmed %v, throttles alarmed %v; want both", f, errorsAlarmed[f], throttlesAlarmed[f])
				}
				reserved, has := props["ReservedConcurrentExecutions"]
				wantReserved := c.values["ReservedConcurrency"] != "" && f != wsAuthorizer && f != httpAuthorizer && f != migrateFunction // one invocation per deploy
				if has != wantReserved || (has && reserved != c.values["ReservedConcurrency"]) {
					t.Errorf("%s: ReservedConcurrentExecutions = %v (set %v), want set %v to %q", f, reserved, has, wantReserved, c.values["ReservedConcurrency"])
				}
			}
			api, _ := get(r.resources[httpAPIID], "Properties").(map[string]any)
			if get(api, "DefaultRouteSettings", "ThrottlingRateLimit") == nil || get(api, "DefaultRouteSettings", "ThrottlingBurstLimit") == nil {
				t.Errorf("%s: no default route throttling", httpAPIID)
			}
			if !jsonEqual(get(api, "AccessLogSettings", "DestinationArn"), map[string]any{"Fn::GetAtt": "HttpApiAccessLogGroup.Arn"}) ||
				get(r.resources["HttpApiAccessLogGroup"], "Properties", "RetentionInDays") != retention {
				t.Errorf("%s: access logs %v, want to HttpApiAccessLogGroup kept %s days", httpAPIID, api["AccessLogSettings"], retention)
			}
			var alarms []string
			for id, res := range r.resources {
				if res["Type"] != "AWS::CloudWatch::Alarm" {
					continue
				}
				alarms = append(alarms, id)
				p, _ := res["Properties"].(map[string]any)
				topic := c.values["AlarmTopicArn"]
				for _, k := range []string{"AlarmActions", "OKActions"} {
					if got, ok := p[k]; (topic != "") != ok || (ok && !jsonEqual(got, []any{topic})) {
						t.Errorf("%s: %s = %v, want [%s] (only with AlarmTopicArn)", id, k, got, topic)
					}
				}
			}
			for _, want := range []string{"HttpApi5xxAlarm", "FollowUpFailuresAlarm"} {
				if !slices.Contains(alarms, want) {
					t.Errorf("no alarm %s", want)
				}
			}
			if get(r.resources["HttpApi5xxAlarm"], "Properties", "MetricName") != "5xx" ||
				!jsonEqual(get(r.resources["FollowUpFailuresAlarm"], "Properties", "Dimensions", "0", "Value"), map[string]any{"Fn::GetAtt": "FollowUpDeadLetterQueue.QueueName"}) {
				t.Error("the 5xx alarm or the follow-up failures alarm watches the wrong metric")
			}
		})
	}
}

func isWebSocketFunction(f string) bool {
	for _, rt := range wsapi.Routes {
		if rt.Function == f {
			return true
		}
	}
	return false
}

// alarmedFunctions lists the functions whose Lambda metric is summed by a
// metric-math alarm.
func alarmedFunctions(r *rendered, metric string) map[string]bool {
	out := map[string]bool{}
	for _, res := range r.resources {
		if res["Type"] != "AWS::CloudWatch::Alarm" {
			continue
		}
		ms, _ := get(res, "Properties", "Metrics").([]any)
		for _, m := range ms {
			if get(m, "MetricStat", "Metric", "MetricName") != metric || get(m, "MetricStat", "Metric", "Namespace") != "AWS/Lambda" {
				continue
			}
			ref, _ := get(m, "MetricStat", "Metric", "Dimensions", "0", "Value").(map[string]any)
			if s, ok := ref["Ref"].(string); ok {
				out[strings.TrimSuffix(s, "Function")] = true
			}
		}
		if len(ms) > 11 {
			out["(an alarm with more than 10 metrics)"] = true
		}
	}
	return out
}

// Every function of the template is one of the code's: a route's, a
// WebSocket route's, a follow-up's, an authorizer or the migration.
func TestRenderedTemplateFunctionsAreTheCodes(t *testing.T) {
	want := []string{wsAuthorizer, httpAuthorizer, migrateFunction}
	for _, rt := range httpapi.Routes {
		want = append(want, rt.Function)
	}
	for _, rt := range wsapi.Routes {
		want = append(want, rt.Function)
	}
	want = append(want, followup.Functions...)
	slices.Sort(want)
	got := slices.Sorted(maps.Keys(render(t, modes()["create/jwt"]).functions()))
	if !slices.Equal(got, want) {
		t.Errorf("template functions %v, want %v", got, want)
	}
}

// Every variable the template sets in a function's environment is read by
// the code (a name in a string literal of shared/ or functions/, or one
// OpenTelemetry's SDK reads): a renamed or dropped variable must not
// linger in the template, configuring nothing.
func TestRenderedTemplateEnvironmentIsRead(t *testing.T) {
	var code strings.Builder
	for _, dir := range []string{"../shared", "."} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			code.Write(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	src := code.String()
	readBySDK := map[string]bool{"OTEL_SERVICE_NAME": true, "OTEL_EXPORTER_OTLP_ENDPOINT": true}
	for name, values := range modes() {
		for f, fn := range render(t, values).functions() {
			env, _ := get(fn, "Properties", "Environment", "Variables").(map[string]any)
			for k := range env {
				if !readBySDK[k] && !strings.Contains(src, `"`+k+`"`) {
					t.Errorf("%s (%s): %s is set but no code reads it", f, name, k)
				}
			}
		}
	}
}
