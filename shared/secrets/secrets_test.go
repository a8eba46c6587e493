package secrets

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// secretsManager is a stand-in for AWS Secrets Manager: it speaks the
// GetSecretValue operation of its JSON protocol (POST /, X-Amz-Target
// secretsmanager.GetSecretValue, application/x-amz-json-1.1), which the
// real SDK client reaches through AWS_ENDPOINT_URL_SECRETS_MANAGER.
type secretsManager struct {
	URL     string
	values  map[string]string // ARN → SecretString
	mu      sync.Mutex
	gets    map[string]int // ARN → GetSecretValue calls
	signed  bool           // every request carried a SigV4 Authorization
	targets []string
}

func newSecretsManager(t *testing.T, values map[string]string) *secretsManager {
	sm := &secretsManager{values: values, gets: map[string]int{}, signed: true}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ SecretId string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		sm.mu.Lock()
		sm.gets[in.SecretId]++
		sm.targets = append(sm.targets, r.Header.Get("X-Amz-Target"))
		if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
			sm.signed = false
		}
		sm.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		v, ok := sm.values[in.SecretId]
		if r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" || !ok {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}`))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"ARN": in.SecretId, "Name": "test", "SecretString": v, "VersionId": "v1",
			"VersionStages": []string{"AWSCURRENT"}, "CreatedDate": 1.7e9,
		})
	}))
	t.Cleanup(srv.Close)
	sm.URL = srv.URL
	return sm
}

// awsEnv points the SDK's default configuration at the stand-in, with
// static credentials and nothing from the machine's AWS files.
func awsEnv(t *testing.T, endpoint string) {
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	t.Setenv("AWS_PROFILE", "")
}

func resetCache() {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	clear(cache)
}

const (
	dbARN      = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!cluster-abc"
	webhookARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:webhook"
)

// A cold start as a deployed function has it: the environment names the
// secrets, Load reads them through the real SDK from the stand-in and fills
// the process's variables; a second Load (or another reader in the same
// process) does not ask again.
func TestLoadReadsSecretsOnceAtColdStart(t *testing.T) {
	resetCache()
	sm := newSecretsManager(t, map[string]string{
		dbARN:      `{"username":"moc_app","password":"p@ss:w/rd?#","engine":"postgres"}`,
		webhookARN: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	})
	awsEnv(t, sm.URL)
	t.Setenv(DatabaseSecretARN, dbARN)
	t.Setenv("DATABASE_URL", "")
	t.Setenv("DATABASE_HOST", "moc-proxy.proxy-abc.us-east-1.rds.amazonaws.com")
	t.Setenv("DATABASE_NAME", "moc_upload")
	t.Setenv("DATABASE_PORT", "")
	t.Setenv("DATABASE_POOL_MAX_CONNS", "")
	t.Setenv("MOC_FINALIZE_WEBHOOK_SECRET_ARN", webhookARN)
	t.Setenv("MOC_FINALIZE_WEBHOOK_SECRET", "")
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS_SECRET_ARN", "")

	for range 2 {
		if err := Load(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := os.Getenv("MOC_FINALIZE_WEBHOOK_SECRET"); got != "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" {
		t.Errorf("MOC_FINALIZE_WEBHOOK_SECRET = %q", got)
	}
	dbURL := os.Getenv("DATABASE_URL")
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatalf("DATABASE_URL does not parse: %v", err)
	}
	cc := cfg.ConnConfig
	if cc.Host != "moc-proxy.proxy-abc.us-east-1.rds.amazonaws.com" || cc.Port != 5432 || cc.Database != "moc_upload" {
		t.Errorf("host %s port %d database %s", cc.Host, cc.Port, cc.Database)
	}
	if cc.User != "moc_app" || cc.Password != "p@ss:w/rd?#" {
		t.Errorf("user %q password %q: the secret's, escaped, must come back intact", cc.User, cc.Password)
	}
	if cfg.MaxConns != DefaultPoolMaxConns {
		t.Errorf("MaxConns = %d, want %d", cfg.MaxConns, DefaultPoolMaxConns)
	}
	if cc.DefaultQueryExecMode != pgx.QueryExecModeCacheDescribe {
		t.Errorf("DefaultQueryExecMode = %v, want cache_describe (no named prepared statements: RDS Proxy must not pin)", cc.DefaultQueryExecMode)
	}
	// verify-full: TLS only (no plaintext fallback), the certificate
	// checked against the roots and the host name.
	if cc.TLSConfig == nil || cc.TLSConfig.InsecureSkipVerify || cc.TLSConfig.ServerName != cc.Host || len(cc.Fallbacks) != 0 {
		t.Errorf("TLS = %+v, fallbacks %d; want verified TLS to %s only", cc.TLSConfig, len(cc.Fallbacks), cc.Host)
	}

	sm.mu.Lock()
	defer sm.mu.Unlock()
	if sm.gets[dbARN] != 1 || sm.gets[webhookARN] != 1 {
		t.Errorf("GetSecretValue calls = %v, want one per secret", sm.gets)
	}
	if !sm.signed {
		t.Error("a request to Secrets Manager was not SigV4-signed")
	}
}

// Locally nothing names a secret: no AWS configuration, no call, nothing
// set; and a variable set already wins over its ARN.
func TestResolveWithoutARNsDoesNothing(t *testing.T) {
	resetCache()
	env := map[string]string{"DATABASE_URL": "postgres://local", DatabaseSecretARN: dbARN}
	got, err := Resolve(context.Background(), func(k string) string { return env[k] }, failingGetter{t})
	if err != nil || len(got) != 0 {
		t.Fatalf("Resolve = %v, %v; want nothing", got, err)
	}
}

type failingGetter struct{ t *testing.T }

func (f failingGetter) GetSecretValue(context.Context, *secretsmanager.GetSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	f.t.Error("GetSecretValue called")
	return nil, nil
}

// A secret that cannot be read stops the cold start with the variable and
// the ARN named, never a value.
func TestResolveFailureNamesTheSecret(t *testing.T) {
	resetCache()
	sm := newSecretsManager(t, map[string]string{dbARN: `{"username":"u"}`})
	awsEnv(t, sm.URL)
	env := map[string]string{
		DatabaseSecretARN:                 dbARN,
		"DATABASE_HOST":                   "db.example",
		"MOC_FINALIZE_WEBHOOK_SECRET_ARN": webhookARN, // not in the stand-in
	}
	_, err := Resolve(context.Background(), func(k string) string { return env[k] }, nil)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"DATABASE_URL (" + dbARN + ")", "lacks username or password", "MOC_FINALIZE_WEBHOOK_SECRET (" + webhookARN + ")", "ResourceNotFoundException"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestDatabaseURL(t *testing.T) {
	none := func(string) string { return "" }
	for _, c := range []struct {
		name, secret string
		env          map[string]string
		want         string // "" → an error
	}{
		{"attached secret", `{"username":"u","password":"p","host":"h.example","port":5433,"dbname":"d"}`, nil,
			"postgres://u:p@h.example:5433/d?default_query_exec_mode=cache_describe&pool_max_conns=2&sslmode=verify-full"},
		{"string port, overrides", `{"username":"u","password":"p","host":"h.example","port":"5433"}`,
			map[string]string{"DATABASE_HOST": "proxy.example", "DATABASE_PORT": "5432", "DATABASE_POOL_MAX_CONNS": "1"},
			"postgres://u:p@proxy.example:5432/postgres?default_query_exec_mode=cache_describe&pool_max_conns=1&sslmode=verify-full"},
		{"a URL as it is", "postgres://a:b@c/d?sslmode=verify-full", nil, "postgres://a:b@c/d?sslmode=verify-full"},
		{"no host", `{"username":"u","password":"p"}`, nil, ""},
		{"not JSON", `hunter2`, nil, ""},
		{"bad pool", `{"username":"u","password":"p","host":"h"}`, map[string]string{"DATABASE_POOL_MAX_CONNS": "0"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			getenv := none
			if c.env != nil {
				getenv = func(k string) string { return c.env[k] }
			}
			got, err := DatabaseURL(c.secret, getenv)
			if c.want == "" {
				if err == nil {
					t.Errorf("DatabaseURL = %q, want an error", got)
				} else if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), `"p"`) {
					t.Errorf("error %q quotes the secret", err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("DatabaseURL = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}
