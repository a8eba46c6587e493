package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mocbuilders/moc-upload/local/devstack"
)

// A function replay cannot run is refused before anything starts (no
// stack, no data folder), the error listing the names it can.
func TestReplayUnknownFunctionListsTheNamesFirst(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "never")
	t.Setenv("LOCAL_DATA_DIR", dataDir)
	for _, fn := range []string{"Nope", "", "WsConnect"} {
		err := run(t.Context(), []string{"replay", "-fn", fn, "-event", "events/GetSession.json"})
		if err == nil {
			t.Fatalf("replay -fn %q: no error", fn)
		}
		for _, want := range []string{"GetSession", "Finalize", "Thumbnail", "Sweeper", "make replay FN="} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("replay -fn %q: %q does not list %s", fn, err, want)
			}
		}
		if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
			t.Fatalf("replay -fn %q created %s: something started", fn, dataDir)
		}
	}
}

// The functions replay cannot run (the authorizers, Migrate) are refused
// before anything starts, saying why and what replays their samples,
// rather than as unknown names or with an obscure failure on their events.
func TestReplayNotReplayableSaysWhy(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "never")
	t.Setenv("LOCAL_DATA_DIR", dataDir)
	for fn, want := range map[string][]string{
		"HttpAuthorizer": {"is an authorizer", "JWT_ISSUER", "TestBootstrapsUnderRIE/HttpAuthorizer", "events/HttpAuthorizer.json"},
		"WsAuthorizer":   {"is an authorizer", "TestBootstrapsUnderRIE/WsAuthorizer"},
		"Migrate":        {"custom resource", "ResponseURL", "make migrate", "TestBootstrapsUnderRIE/Migrate", "events/Migrate.json"},
		"WsConnect":      {"WebSocket", "make local"},
	} {
		err := run(t.Context(), []string{"replay", "-fn", fn, "-event", "events/" + fn + ".json"})
		if err == nil {
			t.Fatalf("replay -fn %s: no error", fn)
		}
		if strings.Contains(err.Error(), "unknown function") {
			t.Errorf("replay -fn %s: %q calls it unknown", fn, err)
		}
		for _, w := range append(want, "GetSession") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("replay -fn %s: %q does not say %q", fn, err, w)
			}
		}
		if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
			t.Fatalf("replay -fn %s created %s: something started", fn, dataDir)
		}
	}
}

// seed and replay say which stack they join: the ports and the variables
// that set them, or the URLs that replace them.
func TestJoinBanner(t *testing.T) {
	o := devstack.Options{DataDir: "/x/.local", PGPort: 54329, S3Port: 7070}
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	b := joinBanner(o, getenv)
	for _, want := range []string{"127.0.0.1:54329 (LOCAL_PG_PORT)", "127.0.0.1:7070 (LOCAL_S3_PORT)", "make local", "/x/.local"} {
		if !strings.Contains(b, want) {
			t.Errorf("%q does not say %q", b, want)
		}
	}
	env["DATABASE_URL"], env["S3_ENDPOINT"] = "postgres://elsewhere", "http://127.0.0.1:9000"
	b = joinBanner(o, getenv)
	if !strings.Contains(b, "DATABASE_URL") || !strings.Contains(b, "S3_ENDPOINT=http://127.0.0.1:9000") || strings.Contains(b, "LOCAL_PG_PORT") {
		t.Errorf("with DATABASE_URL and S3_ENDPOINT set: %q", b)
	}
}
