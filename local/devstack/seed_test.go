package devstack_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mocbuilders/moc-upload/local/devstack"
	"github.com/mocbuilders/moc-upload/local/devstack/devstacktest"
	"github.com/mocbuilders/moc-upload/local/stacktest"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

// replayOrder is the documented order in which the sample events of
// events/ are replayed after `make seed` (make replay FN=<name>
// EVENT=events/<name>.json, one at a time): each must succeed. The
// upload steps follow one another on the sample session (its image's part,
// then complete, then finalize); every other event names rows of its own
// (seed.sql), so it succeeds wherever it comes. The events of
// notReplayedHere are not in it.
var replayOrder = []struct {
	function string
	kind     string // "http", "ws" or "async"
	status   int    // for http and ws
}{
	{"WsConnect", "ws", 200},
	{"WsDefault", "ws", 200},
	{"GetSession", "http", 200},
	{"PresignPart", "http", 200},
	{"PresignParts", "http", 200},
	{"UploadPartsBatch", "http", 200},
	{"UploadPart", "http", 200},
	{"CompleteFile", "http", 200},
	{"Finalize", "http", 201},
	{"GetMoc", "http", 200},
	{"CreateSession", "http", 201},
	{"RegisterFile", "http", 201},
	{"AbortSession", "http", 204},
	{"WsDisconnect", "ws", 200},
	{"Sweeper", "async", 0},
	{"Thumbnail", "async", 0},
	{"Webhook", "async", 0},
}

// notReplayedHere are the sample events this test (and `make replay`) do
// not replay, with the reason; functions/bootstrap_test.go
// (TestBootstrapsUnderRIE) replays each of them under the Lambda Runtime
// Interface Emulator, with what it needs.
var notReplayedHere = map[string]string{
	"WsAuthorizer":   "an authorizer: it verifies a real JWT against an identity provider's keys (JWT_ISSUER), which only the bootstrap test provides (a local one)",
	"HttpAuthorizer": "an authorizer: it verifies a real JWT against an identity provider's keys (JWT_ISSUER), which only the bootstrap test provides (a local one)",
	"Migrate":        "CloudFormation's custom resource: it answers at the event's ResponseURL, which only the bootstrap test serves, and migrates a database of its own (the seed's is migrated by devstack.Start)",
}

// TestSampleEventsSucceedAfterSeed seeds a fresh stack and replays every
// sample event in the documented order through the same handlers `make
// replay` runs, asserting each one's status (and, for the rows the seed
// exists for, the body).
func TestSampleEventsSucceedAfterSeed(t *testing.T) {
	ctx := context.Background()
	st, vars := devstacktest.Seeded(t, ctx)
	// Seeding twice is how `make seed` renews the rows: it must work on its
	// own rows, and leave them as the first time.
	if err := st.Seed(ctx); err != nil {
		t.Fatalf("seed again: %v", err)
	}
	checkSeedRows(t, ctx, vars["DATABASE_URL"])

	entries, err := os.ReadDir("../../events")
	if err != nil {
		t.Fatal(err)
	}
	replayed := map[string]bool{}
	for _, r := range replayOrder {
		replayed[r.function] = true
	}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".json")
		if why, ok := notReplayedHere[name]; ok {
			if replayed[name] {
				t.Errorf("events/%s is both in replayOrder and in notReplayedHere", e.Name())
			}
			t.Logf("events/%s not replayed here: %s", e.Name(), why)
			continue
		}
		if !replayed[name] {
			t.Errorf("events/%s is replayed nowhere: add it to replayOrder (or, with the reason, to notReplayedHere)", e.Name())
		}
	}
	for name := range notReplayedHere {
		if _, err := os.Stat(filepath.Join("../../events", name+".json")); err != nil {
			t.Errorf("notReplayedHere names %s: %v", name, err)
		}
	}

	for _, r := range replayOrder {
		raw, err := os.ReadFile(filepath.Join("../../events", r.function+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var status int
		var body string
		switch r.kind {
		case "http":
			resp := replayEvent(t, ctx, r.function, raw, st.App.LambdaHandler)
			status, body = resp.StatusCode, resp.Body
		case "ws":
			resp := replayEvent(t, ctx, r.function, raw, st.App.WebSocketHandler)
			status, body = resp.StatusCode, resp.Body
		case "async":
			h, err := st.App.AsyncHandler(r.function)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := h(ctx, raw); err != nil {
				t.Fatalf("%s: %v", r.function, err)
			}
			continue
		}
		if status != r.status {
			t.Fatalf("%s: status %d, want %d: %s", r.function, status, r.status, body)
		}
		if r.function == "GetMoc" {
			checkSeedMoc(t, body)
		}
	}
}

// replayEvent decodes the sample event raw (JSON) as the event type of
// the handler that handlerOf gives for function (an HTTP API's or a
// WebSocket API's), runs it and returns its response; any error fails t.
func replayEvent[E, R any](t *testing.T, ctx context.Context, function string, raw []byte,
	handlerOf func(string) (func(context.Context, E) (R, error), error)) R {
	t.Helper()
	var ev E
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("%s: %v", function, err)
	}
	h, err := handlerOf(function)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h(ctx, ev)
	if err != nil {
		t.Fatalf("%s: %v", function, err)
	}
	return resp
}

// checkSeedRows: the seed story's session has a completed image whose
// object holds a real PNG, and its MOC has both files.
func checkSeedRows(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var status, mime, fileURL string
	var size int64
	err = conn.QueryRow(ctx, `SELECT status, mime_type, coalesce(file_url, ''), size FROM upload_session_files WHERE id = $1`,
		devstack.SeedThumbImageID).Scan(&status, &mime, &fileURL, &size)
	if err != nil {
		t.Fatal(err)
	}
	if status != "completed" || mime != "image/png" || fileURL == "" || size < 1000 {
		t.Errorf("the seed story's image: status %s, type %s, url %q, size %d; want a completed PNG of its real size", status, mime, fileURL, size)
	}
	var types []string
	if err := conn.QueryRow(ctx, `SELECT array_agg(file_type ORDER BY position) FROM moc_files WHERE moc_id = $1`, devstack.SeedMocID).Scan(&types); err != nil {
		t.Fatal(err)
	}
	if strings.Join(types, ",") != "gallery-image,instruction" {
		t.Errorf("the seed MOC's files: %v, want gallery-image,instruction", types)
	}
}

func checkSeedMoc(t *testing.T, body string) {
	t.Helper()
	var env struct {
		Data struct {
			ID        string   `json:"id"`
			ImageKeys []string `json:"imageKeys"`
			PdfKey    string   `json:"pdfKey"`
			Files     []struct {
				Category    string `json:"category"`
				DownloadURL string `json:"downloadUrl"`
			} `json:"files"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatalf("GetMoc: %v: %s", err, body)
	}
	d := env.Data
	if d.ID != devstack.SeedMocID || len(d.ImageKeys) != 1 || d.PdfKey == "" || len(d.Files) != 2 {
		t.Errorf("GetMoc: want the seed MOC with its image and PDF: %s", body)
	}
}
