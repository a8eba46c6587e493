package e2e

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/mocbuilders/moc-upload/local/logbuf"
	"github.com/mocbuilders/moc-upload/shared/postgres"
	"github.com/mocbuilders/moc-upload/shared/progress"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// watcher is a real WebSocket client following one session through the
// local WebSocket API.
type watcher struct {
	t    *testing.T
	conn *websocket.Conn
	msgs <-chan wsMessage
}

// wsMessage is a message a client read: its JSON ({"unparsed": …} when it
// is not a JSON object) and when it was read.
type wsMessage struct {
	m  map[string]any
	at time.Time
}

// readMessages reads conn's messages into the channel it returns (of
// size buffered), until the connection ends; it then closes the channel.
func readMessages(conn *websocket.Conn, size int) <-chan wsMessage {
	msgs := make(chan wsMessage, size)
	go func() {
		defer close(msgs)
		for {
			_, data, err := conn.Read(context.Background())
			if err != nil {
				return
			}
			at := time.Now()
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				m = map[string]any{"unparsed": string(data)}
			}
			msgs <- wsMessage{m, at}
		}
	}()
	return msgs
}

// dialWS connects as user to follow sessionID; the error carries the
// refused upgrade's status.
func dialWS(t *testing.T, token, sessionID string) (*watcher, *http.Response, error) {
	t.Helper()
	q := url.Values{}
	if sessionID != "" {
		q.Set("sessionId", sessionID)
	}
	if token != "" {
		q.Set("token", token)
	}
	return dialWSQuery(t, q.Encode())
}

// dialWSQuery connects with the query string rawQuery, as it is.
func dialWSQuery(t *testing.T, rawQuery string) (*watcher, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, wsURL+"?"+rawQuery, nil)
	if err != nil {
		return nil, resp, err
	}
	w := &watcher{t: t, conn: conn, msgs: readMessages(conn, 100)}
	t.Cleanup(func() { conn.Close(websocket.StatusNormalClosure, "") })
	return w, resp, nil
}

func watch(t *testing.T, user, sessionID string) *watcher {
	t.Helper()
	w, _, err := dialWS(t, user, sessionID)
	if err != nil {
		t.Fatalf("connect as %s to %s: %v", user, sessionID, err)
	}
	return w
}

// next is the next message, waiting at most 10 seconds.
func (w *watcher) next() map[string]any {
	w.t.Helper()
	select {
	case m, ok := <-w.msgs:
		if !ok {
			w.t.Fatal("connection closed")
		}
		return m.m
	case <-time.After(10 * time.Second):
		w.t.Fatal("no message within 10 s")
	}
	return nil
}

// nothingPending proves that no message is waiting: a ping is answered
// after everything posted to the connection before it, so the next message
// must be its pong.
func (w *watcher) nothingPending() {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.conn.Write(ctx, websocket.MessageText, []byte(`{"action":"ping"}`)); err != nil {
		w.t.Fatal(err)
	}
	if m := w.next(); m["type"] != "pong" {
		w.t.Fatalf("a message was waiting: %v", m)
	}
}

func wantPart(t *testing.T, m map[string]any, sessionID, fileID string, part, completed, total int) {
	t.Helper()
	if m["type"] != "upload.part.completed" || m["sessionId"] != sessionID || m["fileId"] != fileID ||
		m["partNumber"] != float64(part) || m["completedParts"] != float64(completed) ||
		m["totalParts"] != float64(total) || m["percentComplete"] != float64(completed*100/total) ||
		m["etag"] == "" || len(m) != 8 {
		t.Fatalf("event %v, want part %d of file %s, %d/%d", m, part, fileID, completed, total)
	}
}

// WS-HP-001: a subscriber receives one upload.part.completed per part, with
// the right counts whatever the order and path of the parts, and the
// finalized session; a second connection of the session gets the same; a
// client of another session gets nothing.
func TestWebSocketProgress(t *testing.T) {
	user := userFor(t)
	c := newClient(t, user)
	pdf := pdfBytes(11 * mib) // 3 parts
	img := pngBytes(t)
	sessionID := createSession(t, c, pdfDecl("a.pdf", len(pdf)), pngDecl("b.png", len(img)))
	otherSession := createSession(t, c, pdfDecl("o.pdf", 10))
	first, second := watch(t, user, sessionID), watch(t, user, sessionID)
	bystander := watch(t, user, otherSession)

	pdfID := registerFile(t, c, sessionID, pdfDecl("a.pdf", len(pdf)))["fileId"].(string)
	imgID := registerFile(t, c, sessionID, pngDecl("b.png", len(img)))["fileId"].(string)
	// Out of order, one part twice, one through S3 directly.
	c.put(partPath(sessionID, pdfID, 2), pdf[5*mib:10*mib]).data(t, 200)
	c.put(partPath(sessionID, pdfID, 1), pdf[:5*mib]).data(t, 200)
	c.put(partPath(sessionID, pdfID, 1), pdf[:5*mib]).data(t, 200)
	p := c.json("GET", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+pdfID+"/parts/3/url", nil).data(t, 200)
	if status, _, msg := sendPresigned(t, "PUT", p["url"].(string), p["headers"], pdf[10*mib:]); status != 200 {
		t.Fatalf("PUT part 3: %d %s", status, msg)
	}
	c.put(partPath(sessionID, imgID, 1), img).data(t, 200)
	moc := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Watched"}).data(t, 201)

	for _, w := range []*watcher{first, second} {
		wantPart(t, w.next(), sessionID, pdfID, 2, 1, 3)
		wantPart(t, w.next(), sessionID, pdfID, 1, 2, 3)
		wantPart(t, w.next(), sessionID, pdfID, 1, 2, 3)
		wantPart(t, w.next(), sessionID, imgID, 1, 1, 1)
		// Part 3 went straight to S3: finalize learns of it.
		wantPart(t, w.next(), sessionID, pdfID, 3, 3, 3)
		if m := w.next(); m["type"] != "upload.session.finalized" || m["sessionId"] != sessionID ||
			m["mocId"] != moc["id"] || m["status"] != "success" || len(m) != 4 {
			t.Fatalf("finalized event %v", m)
		}
		w.nothingPending()
	}
	bystander.nothingPending()
}

// Refused upgrades. A missing or blank token is refused here; locally the
// token is the user id, so the rejection of a bad JWT (malformed, expired,
// wrong audience, signed with another key) is covered by shared/auth's
// unit tests of the authorizer against a local JWKS server.
func TestWebSocketConnectRefusals(t *testing.T) {
	user := userFor(t)
	c := newClient(t, user)
	sessionID := createSession(t, c, pdfDecl("a.pdf", 10))
	expired := createSession(t, c, pdfDecl("a.pdf", 10))
	if _, err := db.Exec(context.Background(), `UPDATE upload_sessions SET expires_at = now() - interval '1 second' WHERE id = $1`, expired); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, token, session string
		query                string // sent as is instead of token and session
		status               int
	}{
		{name: "no token", session: sessionID, status: 401},
		{name: "blank token", query: "sessionId=" + sessionID + "&token=%20", status: 401},
		{name: "empty token", query: "sessionId=" + sessionID + "&token=", status: 401},
		{name: "another user's session", token: "e2e-someone-else", session: sessionID, status: 403},
		{name: "unknown session", token: user, session: "00000000-0000-4000-8000-000000000000", status: 403},
		{name: "no session", token: user, status: 400},
		{name: "not a session id", token: user, session: "nope", status: 400},
		{name: "expired session", token: user, session: expired, status: 410},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unchanged(t, func() {
				dial := func() (*watcher, *http.Response, error) { return dialWS(t, tc.token, tc.session) }
				if tc.query != "" {
					dial = func() (*watcher, *http.Response, error) { return dialWSQuery(t, tc.query) }
				}
				_, resp, err := dial()
				if err == nil || resp == nil || resp.StatusCode != tc.status {
					status := 0
					if resp != nil {
						status = resp.StatusCode
					}
					t.Fatalf("connect: %v, status %d; want refused with %d", err, status, tc.status)
				}
			})
		})
	}
	// The one that is the user's is accepted and answers pings.
	watch(t, user, sessionID).nothingPending()
}

// A closed connection's row goes away ($disconnect).
func TestWebSocketDisconnectForgetsConnection(t *testing.T) {
	user := userFor(t)
	sessionID := createSession(t, newClient(t, user), pdfDecl("a.pdf", 10))
	w := watch(t, user, sessionID)
	w.nothingPending()
	connections := func() int {
		var n int
		if err := db.QueryRow(context.Background(), `SELECT count(*) FROM websocket_connections WHERE session_id = $1`, sessionID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := connections(); n != 1 {
		t.Fatalf("%d connection rows, want 1", n)
	}
	if err := w.conn.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); connections() != 0; {
		if time.Now().After(deadline) {
			t.Fatal("the connection row is still there 10 s after the client closed")
		}
		time.Sleep(20 * time.Millisecond) // polling the database, not waiting for an event
	}
}

// With the WebSocket endpoint down, or none configured, uploads and
// finalize succeed, and each request that records something logs exactly
// one warning, however many events it had: a part, a batch of three, a
// finalize that learns of a part PUT straight to S3 and then announces
// the finalized session.
func TestWebSocketEndpointDown(t *testing.T) {
	t.Run("endpoint down", func(t *testing.T) {
		ctx := context.Background()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := "http://" + ln.Addr().String()
		ln.Close() // nothing listens there any more
		client, err := progress.NewClient(ctx, progress.ClientConfig{Endpoint: dead})
		if err != nil {
			t.Fatal(err)
		}
		store, err := postgres.Open(ctx, st.Config.DatabaseURL)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		logs := &logbuf.Buffer{}
		notifier := progress.New(store, client)
		notifier.Logger = slog.New(slog.NewTextHandler(logs, nil))
		useProgress(t, notifier)
		// The finalize's one warning counts its two posts: the part it
		// learnt, then the finalized event.
		oneWarningPerRequest(t, logs, true, "posts=2")
	})
	t.Run("no endpoint", func(t *testing.T) {
		logs := &logbuf.Buffer{}
		useProgress(t, progress.Disabled{Logger: slog.New(slog.NewTextHandler(logs, nil))})
		oneWarningPerRequest(t, logs, false, "dropped=2")
	})
}

// useProgress makes the local stack's service announce to p for the test.
func useProgress(t *testing.T, p upload.Progress) {
	old := st.App.Service.Progress
	st.App.Service.Progress = p
	t.Cleanup(func() { st.App.Service.Progress = old })
}

// oneWarningPerRequest uploads and finalizes a session, checking after
// each request the warnings logged to logs so far: one per request that
// recorded something, none for one that did not. finalizeWarning is in
// the finalize's warning. With watched, a client follows the session, so
// that there is a connection to post to.
func oneWarningPerRequest(t *testing.T, logs *logbuf.Buffer, watched bool, finalizeWarning string) {
	t.Helper()
	user := userFor(t)
	c := newClient(t, user)
	pdf := pdfBytes(mib)
	batched, batchParts := threeParts()
	direct := pdfBytes(mib)
	sessionID := createSession(t, c, pdfDecl("a.pdf", len(pdf)), pdfDecl("b.pdf", len(batched)), pdfDecl("c.pdf", len(direct)))
	if watched {
		watch(t, user, sessionID) // a connection to post to
	}
	warnings := func(after string, want int) {
		t.Helper()
		if n := strings.Count(logs.String(), "level=WARN"); n != want {
			t.Fatalf("%d warnings after %s, want %d:\n%s", n, after, want, logs.String())
		}
	}
	a := registerFile(t, c, sessionID, pdfDecl("a.pdf", len(pdf)))["fileId"].(string)
	b := registerFile(t, c, sessionID, pdfDecl("b.pdf", len(batched)))["fileId"].(string)
	d := registerFile(t, c, sessionID, pdfDecl("c.pdf", len(direct)))["fileId"].(string)
	warnings("registering files", 0)

	c.put(partPath(sessionID, a, 1), pdf).data(t, 200)
	warnings("one part", 1)

	body, ct := batchForm(t, batchFormPart{name: "part1", data: batchParts[0]},
		batchFormPart{name: "part2", data: batchParts[1]}, batchFormPart{name: "part3", data: batchParts[2]})
	if entries := batchEntries(t, c.do("POST", batchPath(sessionID, b), ct, body).data(t, 200)); len(entries) != 3 {
		t.Fatalf("batch entries %v, want 3", entries)
	}
	warnings("a batch of three parts", 2)

	// A part PUT straight to S3: nothing is recorded until finalize
	// learns of it.
	p := c.json("GET", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+d+"/parts/1/url", nil).data(t, 200)
	if status, _, msg := sendPresigned(t, "PUT", p["url"].(string), p["headers"], direct); status != 200 {
		t.Fatalf("PUT part 1 to S3: %d %s", status, msg)
	}
	warnings("a part PUT to S3", 2)

	c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Unwatched"}).data(t, 201)
	warnings("finalize", 3)
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, finalizeWarning) {
		t.Errorf("finalize's warning %q, want it to name %s", last, finalizeWarning)
	}
}
