package app

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/mocbuilders/moc-upload/shared/secrets"
)

// A deployed cold start, up to the configuration: the environment names
// secrets (as template.yaml gives it), serveLambda's secrets.Load reads
// them through the real SDK from a Secrets Manager stand-in (its JSON
// protocol's GetSecretValue), and the configuration then has the
// database URL and the webhook's secret, although neither is in the
// environment the function was given.
func TestColdStartReadsSecretsIntoConfig(t *testing.T) {
	const (
		dbARN      = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!cluster-app"
		webhookARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-webhook"
		whsec      = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	)
	values := map[string]string{dbARN: `{"username":"moc_admin","password":"s3cret"}`, webhookARN: whsec}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ SecretId string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		v, ok := values[in.SecretId]
		if !ok || r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"__type":"ResourceNotFoundException","message":"no such secret"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ARN": in.SecretId, "Name": "x", "SecretString": v})
	}))
	defer srv.Close()

	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": srv.URL,
		"AWS_ACCESS_KEY_ID":                "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "",
		"AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull, "AWS_PROFILE": "",
		// What template.yaml gives a function (DatabaseMode create).
		"DATABASE_URL": "", "DATABASE_SECRET_ARN": dbARN, "DATABASE_HOST": "moc-db.proxy-x.us-east-1.rds.amazonaws.com",
		"DATABASE_PORT": "5432", "DATABASE_NAME": "moc_upload", "DATABASE_POOL_MAX_CONNS": "2",
		"S3_BUCKET": "moc-bucket", "MOC_FINALIZE_WEBHOOK_URL": "https://hooks.example/moc",
		"MOC_FINALIZE_WEBHOOK_SECRET": "", "MOC_FINALIZE_WEBHOOK_SECRET_ARN": webhookARN,
		"OTEL_EXPORTER_OTLP_HEADERS_SECRET_ARN": "",
	} {
		t.Setenv(k, v)
	}
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "call secrets.Load first") {
		t.Fatalf("before secrets.Load: %v, want the error saying so", err)
	}
	if err := secrets.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	want := "postgres://moc_admin:s3cret@moc-db.proxy-x.us-east-1.rds.amazonaws.com:5432/moc_upload?default_query_exec_mode=cache_describe&pool_max_conns=2&sslmode=verify-full"
	if cfg.DatabaseURL != want {
		t.Errorf("DatabaseURL = %q, want %q", cfg.DatabaseURL, want)
	}
	if cfg.WebhookSecret != whsec {
		t.Errorf("WebhookSecret = %q, want the secret's value", cfg.WebhookSecret)
	}
}
