package progress

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mocbuilders/moc-upload/local/stacktest"
	"github.com/mocbuilders/moc-upload/shared/postgres"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// The integration tests post with the real SDK client to an HTTP server
// standing in for the management API, and keep the connections in a real
// PostgreSQL.
func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

// managementAPI records POST {stage}/@connections/{id} and answers each
// connection as the test says (200 by default).
type managementAPI struct {
	srv   *httptest.Server
	stage string

	mu      sync.Mutex
	bodies  map[string][]string // connection id → bodies, in arrival order
	auth    []string            // Authorization headers seen
	answers map[string]func(w http.ResponseWriter)
}

func newManagementAPI(t *testing.T, stage string) *managementAPI {
	m := &managementAPI{stage: stage, bodies: map[string][]string{}, answers: map[string]func(http.ResponseWriter){}}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		prefix := stage + "/@connections/"
		if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.EscapedPath(), prefix) {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.EscapedPath(), http.StatusNotFound)
			return
		}
		id, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), prefix))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body, _ := io.ReadAll(r.Body)
		m.mu.Lock()
		m.bodies[id] = append(m.bodies[id], string(body))
		m.auth = append(m.auth, r.Header.Get("Authorization"))
		answer := m.answers[id]
		m.mu.Unlock()
		if answer != nil {
			answer(w)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *managementAPI) endpoint() string { return m.srv.URL + m.stage }

func (m *managementAPI) answer(id string, f func(w http.ResponseWriter)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.answers[id] = f
}

func (m *managementAPI) received(id string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bodies[id]
}

// gone answers as API Gateway does for a closed connection.
func gone(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", "GoneException")
	w.WriteHeader(http.StatusGone)
	_, _ = io.WriteString(w, `{"message":"Gone"}`)
}

// bareGone is a 410 without the error type, as a simpler emulator may answer.
func bareGone(w http.ResponseWriter) { w.WriteHeader(http.StatusGone) }

func serverError(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = io.WriteString(w, `{"message":"Internal server error"}`)
}

// openStore migrates a fresh database and opens a Store on it.
func openStore(t *testing.T) *postgres.Store {
	t.Helper()
	url := stacktest.Postgres(t)
	if err := postgres.Migrate(t.Context(), url); err != nil {
		t.Fatal(err)
	}
	s, err := postgres.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newSession(t *testing.T, s *postgres.Store, userID string) string {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Microsecond)
	sess := &upload.Session{ID: uuid.NewString(), UserID: userID, Status: upload.SessionActive,
		PartSizeBytes: upload.PartSizeBytes, ExpiresAt: now.Add(30 * time.Minute), CreatedAt: now, UpdatedAt: now}
	if err := s.InTx(t.Context(), func(tx upload.Tx) error { return tx.InsertSession(t.Context(), sess) }); err != nil {
		t.Fatal(err)
	}
	return sess.ID
}

func connect(t *testing.T, s *postgres.Store, id, userID, sessionID string) {
	t.Helper()
	if err := s.SaveConnection(t.Context(), id, userID, sessionID, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

func newClientNotifier(t *testing.T, store *postgres.Store, cfg ClientConfig) (*Notifier, *logRecorder) {
	t.Helper()
	c, err := NewClient(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := New(store, c)
	logs := &logRecorder{}
	n.Logger = slog.New(logs)
	return n, logs
}

func TestRealClientPostsToTheManagementAPI(t *testing.T) {
	store := openStore(t)
	api := newManagementAPI(t, "/dev")
	s1, s2 := newSession(t, store, "u1"), newSession(t, store, "u2")
	// API Gateway's ids end in "=": the client escapes them in the path.
	for _, id := range []string{"ok1=", "ok2=", "gone=", "bare-gone", "broken"} {
		connect(t, store, id, "u1", s1)
	}
	connect(t, store, "other", "u2", s2)
	api.answer("gone=", gone)
	api.answer("bare-gone", bareGone)
	api.answer("broken", serverError)

	n, logs := newClientNotifier(t, store, ClientConfig{Endpoint: api.endpoint(), Region: "eu-west-1"})
	n.GoneGrace = time.Microsecond // the rows are new; in production they would be spared a while
	parts := []upload.PartCompleted{
		{SessionID: s1, FileID: "f1", PartNumber: 2, ETag: "e2", TotalParts: 3, CompletedParts: 1},
		{SessionID: s1, FileID: "f1", PartNumber: 1, ETag: "e1", TotalParts: 3, CompletedParts: 2},
	}
	n.Announce(t.Context(), upload.Events{Parts: parts})
	n.Announce(t.Context(), upload.Events{Finalized: &upload.SessionFinalized{SessionID: s1, MocID: "m1"}})

	want := []string{
		`{"type":"upload.part.completed","sessionId":"` + s1 + `","fileId":"f1","partNumber":2,"etag":"e2","totalParts":3,"completedParts":1,"percentComplete":33}`,
		`{"type":"upload.part.completed","sessionId":"` + s1 + `","fileId":"f1","partNumber":1,"etag":"e1","totalParts":3,"completedParts":2,"percentComplete":66}`,
		`{"type":"upload.session.finalized","sessionId":"` + s1 + `","mocId":"m1","status":"success"}`,
	}
	for _, id := range []string{"ok1=", "ok2="} {
		if got := api.received(id); !reflect.DeepEqual(got, want) {
			t.Errorf("%s received\n%s\nwant\n%s", id, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	// A gone connection is posted to once, then deleted: the next call
	// does not post to it.
	for _, id := range []string{"gone=", "bare-gone"} {
		if got := api.received(id); len(got) != 1 {
			t.Errorf("%s received %d posts, want 1 (then deleted)", id, len(got))
		}
	}
	if got := api.received("other"); got != nil {
		t.Errorf("a connection of another session received %v", got)
	}
	// The 500s: each post tried twice (one retry), every call warned once.
	if got := len(api.received("broken")); got != 3*DefaultMaxAttempts {
		t.Errorf("broken received %d posts, want %d", got, 3*DefaultMaxAttempts)
	}
	w := logs.warnings()
	if len(w) != 2 {
		t.Fatalf("%d warnings, want 2 (one per call): %v", len(w), w)
	}
	if w[0]["failed"] != int64(2) || w[0]["posts"] != int64(10) || !strings.Contains(w[0]["firstError"].(string), "500") {
		t.Errorf("first warning = %v, want 2 of 10 posts failed with a 500", w[0])
	}
	if w[1]["failed"] != int64(1) || w[1]["posts"] != int64(3) {
		t.Errorf("second warning = %v, want 1 of 3 posts failed (the gone ones deleted)", w[1])
	}
	live, err := store.SessionConnections(t.Context(), s1)
	if err != nil {
		t.Fatal(err)
	}
	if wantLive := []string{"ok1=", "ok2=", "broken"}; !reflect.DeepEqual(live, wantLive) {
		t.Errorf("connections left = %v, want %v", live, wantLive)
	}
	// Not signed without credentials (the local gateway needs none).
	for _, a := range api.auth {
		if a != "" {
			t.Errorf("request signed without credentials: %q", a)
			break
		}
	}
}

func TestGoneGraceSparesAnOpeningConnection(t *testing.T) {
	store := openStore(t)
	api := newManagementAPI(t, "")
	s1 := newSession(t, store, "u1")
	connect(t, store, "opening", "u1", s1)
	api.answer("opening", gone) // $connect has not returned yet
	n, logs := newClientNotifier(t, store, ClientConfig{Endpoint: api.endpoint()})
	n.Announce(t.Context(), upload.Events{Parts: []upload.PartCompleted{{SessionID: s1, FileID: "f", PartNumber: 1, TotalParts: 1, CompletedParts: 1}}})
	live, err := store.SessionConnections(t.Context(), s1)
	if err != nil || len(live) != 1 {
		t.Errorf("connections = %v, %v; the new connection must stay", live, err)
	}
	if len(logs.warnings()) != 0 {
		t.Errorf("warnings: %v", logs.warnings())
	}
}

func TestStaticCredentialsSignThePosts(t *testing.T) {
	store := openStore(t)
	api := newManagementAPI(t, "/prod")
	s1 := newSession(t, store, "u1")
	connect(t, store, "c1", "u1", s1)
	n, _ := newClientNotifier(t, store, ClientConfig{Endpoint: api.endpoint(), Region: "eu-west-1",
		AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret", SessionToken: "token"})
	n.Announce(t.Context(), upload.Events{Finalized: &upload.SessionFinalized{SessionID: s1, MocID: "m1"}})
	if len(api.auth) != 1 || !strings.Contains(api.auth[0], "Credential=AKIDEXAMPLE/") ||
		!strings.Contains(api.auth[0], "/eu-west-1/execute-api/aws4_request") {
		t.Errorf("Authorization = %q, want SigV4 for execute-api in eu-west-1", api.auth)
	}
}

func TestEndpointDownWarnsOnceAndReturns(t *testing.T) {
	store := openStore(t)
	s1 := newSession(t, store, "u1")
	connect(t, store, "c1", "u1", s1)
	connect(t, store, "c2", "u1", s1)
	api := newManagementAPI(t, "")
	endpoint := api.endpoint()
	api.srv.Close() // nothing listens there any more

	n, logs := newClientNotifier(t, store, ClientConfig{Endpoint: endpoint})
	start := time.Now()
	n.Announce(t.Context(), upload.Events{Parts: []upload.PartCompleted{
		{SessionID: s1, FileID: "f", PartNumber: 1, TotalParts: 2, CompletedParts: 1},
		{SessionID: s1, FileID: "f", PartNumber: 2, TotalParts: 2, CompletedParts: 2},
	}})
	if took := time.Since(start); took > DefaultTimeout+time.Second {
		t.Errorf("call took %v, want at most about %v", took, DefaultTimeout)
	}
	w := logs.warnings()
	if len(w) != 1 || w[0]["failed"] != int64(4) {
		t.Errorf("warnings = %v, want one with 4 failed posts", w)
	}
	// The connections are kept: the endpoint failed, not they.
	live, _ := store.SessionConnections(t.Context(), s1)
	if len(live) != 2 {
		t.Errorf("connections = %v, want both kept", live)
	}
}

func TestHangingEndpointIsCutOffAtTimeout(t *testing.T) {
	store := openStore(t)
	s1 := newSession(t, store, "u1")
	connect(t, store, "c1", "u1", s1)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	n, logs := newClientNotifier(t, store, ClientConfig{Endpoint: srv.URL})
	n.Timeout = 300 * time.Millisecond
	start := time.Now()
	n.Announce(context.Background(), upload.Events{Finalized: &upload.SessionFinalized{SessionID: s1, MocID: "m1"}})
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("call took %v with a 300ms timeout", took)
	}
	if len(logs.warnings()) != 1 {
		t.Errorf("warnings = %v, want 1", logs.warnings())
	}
}

// A fan-out to as many connections as the Notifier posts to at once keeps
// the client's connections to the management API: the next event opens
// none (the SDK's default transport keeps 10 idle per host, and re-dialled
// the rest for every event).
func TestFanOutReusesManagementAPIConnections(t *testing.T) {
	store := openStore(t)
	s1 := newSession(t, store, "u1")
	for i := range DefaultConcurrency {
		connect(t, store, "c"+strconv.Itoa(i), "u1", s1)
	}
	// Every post waits until all of one event's posts have arrived, so the
	// client has DefaultConcurrency requests in flight at once.
	var arrived sync.WaitGroup
	var dialled atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		arrived.Done()
		arrived.Wait()
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dialled.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	n, logs := newClientNotifier(t, store, ClientConfig{Endpoint: srv.URL})
	for event := 1; event <= 3; event++ {
		arrived.Add(DefaultConcurrency)
		n.Announce(t.Context(), upload.Events{Finalized: &upload.SessionFinalized{SessionID: s1, MocID: "m"}})
		if got := dialled.Load(); got != DefaultConcurrency {
			t.Fatalf("after event %d: %d connections dialled, want %d (one per concurrent post, then reused)", event, got, DefaultConcurrency)
		}
	}
	if w := logs.warnings(); len(w) != 0 {
		t.Errorf("warnings = %v, want none", w)
	}
}
