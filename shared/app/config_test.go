package app

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/mocbuilders/moc-upload/local/stacktest"
	"github.com/mocbuilders/moc-upload/shared/postgres"
	"github.com/mocbuilders/moc-upload/shared/progress"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// TestAppWiresWebSocket needs a real PostgreSQL; the configuration tests
// need nothing.
func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

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

func TestConfigWebSocketEndpoint(t *testing.T) {
	base := map[string]string{"DATABASE_URL": "postgres://x", "S3_BUCKET": "b"}
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for k, v := range base {
			m[k] = v
		}
		return m
	}
	c, err := ConfigFrom(envOf(base))
	if err != nil || c.WebSocketEndpoint != "" {
		t.Errorf("unset: %q, %v; want empty (events dropped with a warning)", c.WebSocketEndpoint, err)
	}
	c, err = ConfigFrom(envOf(with("WEBSOCKET_ENDPOINT", " https://abc.execute-api.eu-west-1.amazonaws.com/prod/ ")))
	if err != nil || c.WebSocketEndpoint != "https://abc.execute-api.eu-west-1.amazonaws.com/prod" {
		t.Errorf("set: %q, %v", c.WebSocketEndpoint, err)
	}
	c, err = ConfigFrom(envOf(with("AWS_SESSION_TOKEN", "tok")))
	if err != nil || c.AWSSessionToken != "tok" {
		t.Errorf("AWS_SESSION_TOKEN: %q, %v", c.AWSSessionToken, err)
	}
	for _, bad := range []string{"wss://abc.execute-api.eu-west-1.amazonaws.com/prod", "127.0.0.1:3001", "https://"} {
		_, err := ConfigFrom(envOf(with("WEBSOCKET_ENDPOINT", bad)))
		if err == nil || !strings.Contains(err.Error(), "WEBSOCKET_ENDPOINT") {
			t.Errorf("WEBSOCKET_ENDPOINT=%q: %v, want an error naming it", bad, err)
		}
	}
}

// The App every function builds reports progress to WEBSOCKET_ENDPOINT,
// and its WebSocket handlers store the connections the events go to.
func TestAppWiresWebSocket(t *testing.T) {
	dbURL := stacktest.Postgres(t)
	if err := postgres.Migrate(t.Context(), dbURL); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	posted := map[string][]string{}
	mgmt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posted[r.URL.Path] = append(posted[r.URL.Path], string(b))
		mu.Unlock()
	}))
	defer mgmt.Close()

	cfg, err := ConfigFrom(envOf(map[string]string{
		"DATABASE_URL": dbURL, "S3_BUCKET": "b", "S3_ENDPOINT": "http://127.0.0.1:1",
		"WEBSOCKET_ENDPOINT": mgmt.URL + "/local",
	}))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, ok := a.Service.Progress.(*progress.Notifier); !ok {
		t.Fatalf("Service.Progress = %T, want *progress.Notifier", a.Service.Progress)
	}
	sess, err := a.Service.CreateSession(t.Context(), "u1", []upload.FileSpec{{
		Category: upload.CategoryInstruction, Name: "a.pdf", Size: 100, Type: "application/pdf", Ext: "pdf"}})
	if err != nil {
		t.Fatal(err)
	}
	connect, err := a.WebSocketHandler("WsConnect")
	if err != nil {
		t.Fatal(err)
	}
	res, err := connect(t.Context(), events.APIGatewayWebsocketProxyRequest{
		QueryStringParameters: map[string]string{"sessionId": sess.ID},
		RequestContext: events.APIGatewayWebsocketProxyRequestContext{
			RouteKey: "$connect", ConnectionID: "c1", Authorizer: map[string]any{"userId": "u1"}},
	})
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("$connect = %d %s, %v", res.StatusCode, res.Body, err)
	}
	a.Service.Progress.Announce(t.Context(), upload.Events{Finalized: &upload.SessionFinalized{SessionID: sess.ID, MocID: "m1"}})
	mu.Lock()
	defer mu.Unlock()
	want := `{"type":"upload.session.finalized","sessionId":"` + sess.ID + `","mocId":"m1","status":"success"}`
	if got := posted["/local/@connections/c1"]; len(got) != 1 || got[0] != want {
		t.Errorf("posted %v, want %s to /local/@connections/c1", posted, want)
	}
	if _, err := a.WebSocketHandler("CreateSession"); err == nil {
		t.Error("WebSocketHandler of an HTTP function succeeded")
	}
}

func TestAppWithoutWebSocketEndpointWarns(t *testing.T) {
	cfg, err := ConfigFrom(envOf(map[string]string{"DATABASE_URL": stacktest.Postgres(t), "S3_BUCKET": "b"}))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, ok := a.Service.Progress.(progress.Disabled); !ok {
		t.Errorf("Service.Progress = %T, want progress.Disabled", a.Service.Progress)
	}
}
