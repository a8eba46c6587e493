package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/jackc/pgx/v5"

	"github.com/mocbuilders/moc-upload/local/stacktest"
)

func TestMain(m *testing.M) { os.Exit(stacktest.Main(m)) }

// responseURL stands in for CloudFormation's pre-signed S3 URL: it
// records each response PUT to it.
type responseURL struct {
	URL  string
	mu   sync.Mutex
	got  []cfn.Response
	meth []string
}

func newResponseURL(t *testing.T) *responseURL {
	r := &responseURL{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var resp cfn.Response
		if err := json.Unmarshal(body, &resp); err != nil {
			t.Errorf("response body %q: %v", body, err)
		}
		r.mu.Lock()
		r.got = append(r.got, resp)
		r.meth = append(r.meth, req.Method)
		r.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL + "/cloudformation-custom-resource-response?X-Amz-Signature=x"
	return r
}

// last is the only response sent since the previous call.
func (r *responseURL) last(t *testing.T) cfn.Response {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) != 1 || r.meth[0] != http.MethodPut {
		t.Fatalf("%d responses (%v), want one PUT", len(r.got), r.meth)
	}
	resp := r.got[0]
	r.got, r.meth = nil, nil
	return resp
}

func event(typ cfn.RequestType, responseURL string) cfn.Event {
	ev := cfn.Event{
		RequestType:       typ,
		RequestID:         "req-" + string(typ),
		ResponseURL:       responseURL,
		ResourceType:      "Custom::SchemaMigration",
		LogicalResourceID: "SchemaMigration",
		StackID:           "arn:aws:cloudformation:us-east-1:123456789012:stack/moc-upload/1",
		ResourceProperties: map[string]any{
			"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:Migrate",
			"CodeVersion":  "arn:aws:lambda:us-east-1:123456789012:function:Migrate:2",
		},
	}
	if typ != cfn.RequestCreate {
		ev.PhysicalResourceID = physicalID
	}
	return ev
}

// invoke runs the handler as Lambda would, with a deadline.
func invoke(t *testing.T, dbURL string, ev cfn.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fn := cfn.LambdaWrap(handler(func(context.Context) (string, error) { return dbURL, nil }))
	if reason, err := fn(ctx, ev); err != nil || reason != "" {
		t.Fatalf("LambdaWrap: %q, %v (the response was not delivered)", reason, err)
	}
}

func migrationCount(t *testing.T) int64 {
	files, err := filepath.Glob("../../shared/postgres/migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %v %v", files, err)
	}
	return int64(len(files))
}

func tableExists(t *testing.T, dbURL, table string) bool {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var ok bool
	if err := conn.QueryRow(context.Background(), `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// Create migrates an empty database, Update (the next deploy) finds it up
// to date, Delete leaves schema and data alone; each answers SUCCESS with
// the same physical id, so an update is never a replacement.
func TestCreateUpdateDelete(t *testing.T) {
	dbURL := stacktest.Postgres(t)
	cf := newResponseURL(t)
	want := float64(migrationCount(t))

	for _, typ := range []cfn.RequestType{cfn.RequestCreate, cfn.RequestUpdate} {
		invoke(t, dbURL+"&pool_max_conns=2&default_query_exec_mode=cache_describe", event(typ, cf.URL))
		resp := cf.last(t)
		if resp.Status != cfn.StatusSuccess || resp.PhysicalResourceID != physicalID || resp.RequestID != "req-"+string(typ) ||
			resp.LogicalResourceID != "SchemaMigration" || !strings.HasPrefix(resp.StackID, "arn:aws:cloudformation:") {
			t.Fatalf("%s: response %+v", typ, resp)
		}
		if resp.Data["SchemaVersion"] != want {
			t.Errorf("%s: SchemaVersion %v, want %v (one per file in migrations/)", typ, resp.Data["SchemaVersion"], want)
		}
		for _, table := range []string{"upload_sessions", "upload_session_files", "websocket_connections", "outbox"} {
			if !tableExists(t, dbURL, table) {
				t.Errorf("%s: no table %s after the migration", typ, table)
			}
		}
	}

	invoke(t, dbURL, event(cfn.RequestDelete, cf.URL))
	if resp := cf.last(t); resp.Status != cfn.StatusSuccess || resp.PhysicalResourceID != physicalID {
		t.Fatalf("Delete: response %+v", resp)
	}
	if !tableExists(t, dbURL, "upload_sessions") {
		t.Error("Delete dropped the schema")
	}
}

// A migration that fails answers FAILED with the reason (and so fails the
// deploy), and leaves nothing half-applied.
func TestFailedMigrationAnswersFailed(t *testing.T) {
	dbURL := stacktest.Postgres(t)
	cf := newResponseURL(t)
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	// A table in the way of the first migration's.
	if _, err := conn.Exec(context.Background(), `CREATE TABLE upload_sessions (x int)`); err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())

	invoke(t, dbURL, event(cfn.RequestCreate, cf.URL))
	resp := cf.last(t)
	if resp.Status != cfn.StatusFailed || !strings.Contains(resp.Reason, "migration failed") || !strings.Contains(resp.Reason, "upload_sessions") {
		t.Fatalf("response %+v, want FAILED naming the migration's error", resp)
	}
	if resp.PhysicalResourceID == "" {
		t.Error("FAILED without a physical id")
	}
	if tableExists(t, dbURL, "upload_session_files") {
		t.Error("the failed migration left part of its changes")
	}
}

// Credentials that cannot be read, or a database that cannot be reached,
// answer FAILED too, well before the function's own timeout.
func TestUnreachableDatabaseAnswersFailed(t *testing.T) {
	cf := newResponseURL(t)
	fn := cfn.LambdaWrap(handler(func(context.Context) (string, error) {
		return "postgres://u:pw@127.0.0.1:1/db?sslmode=disable&connect_timeout=2", nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := fn(ctx, event(cfn.RequestUpdate, cf.URL)); err != nil {
		t.Fatal(err)
	}
	resp := cf.last(t)
	if resp.Status != cfn.StatusFailed || strings.Contains(resp.Reason, "pw") {
		t.Fatalf("response %+v, want FAILED without the password", resp)
	}

	fn = cfn.LambdaWrap(handler(func(context.Context) (string, error) {
		return "", context.DeadlineExceeded
	}))
	if _, err := fn(ctx, event(cfn.RequestCreate, cf.URL)); err != nil {
		t.Fatal(err)
	}
	if resp := cf.last(t); resp.Status != cfn.StatusFailed || !strings.Contains(resp.Reason, "database credentials failed") {
		t.Fatalf("response %+v, want FAILED naming the credentials", resp)
	}
}
