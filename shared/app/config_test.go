package app

import (
	"strings"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigDefaults(t *testing.T) {
	c, err := ConfigFrom(envOf(map[string]string{"DATABASE_URL": "postgres://x", "S3_BUCKET": "b"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits != upload.DefaultLimits() {
		t.Errorf("limits = %+v, want defaults", c.Limits)
	}
	if c.Stage != "dev" || c.S3Region != "us-east-1" || c.S3SSE != "AES256" || c.DownloadURLTTL != time.Hour {
		t.Errorf("defaults wrong: %+v", c)
	}
}

func TestConfigOverrides(t *testing.T) {
	c, err := ConfigFrom(envOf(map[string]string{
		"DATABASE_URL": "postgres://x", "S3_BUCKET": "b", "UPLOAD_PDF_MAX_MB": "7",
		"UPLOAD_RATE_LIMIT_PER_DAY": "3", "S3_SSE": "none", "UPLOAD_SESSION_TTL_MINUTES": "5",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.PDFMaxBytes != 7*upload.MiB || c.Limits.SessionsPerDay != 3 || c.S3SSE != "" || c.Limits.SessionTTLMinutes != 5 {
		t.Errorf("overrides not applied: %+v", c)
	}
}

func TestConfigErrorsNameEveryProblem(t *testing.T) {
	_, err := ConfigFrom(envOf(map[string]string{"UPLOAD_PDF_MAX_MB": "lots", "AWS_ACCESS_KEY_ID": "k"}))
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"DATABASE_URL is required", "S3_BUCKET is required", "UPLOAD_PDF_MAX_MB", "AWS_SECRET_ACCESS_KEY"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
