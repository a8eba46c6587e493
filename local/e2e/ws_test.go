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
)

// watcher is a real WebSocket client following one session through the
// local WebSocket API.
type watcher struct {
	t    *testing.T
	conn *websocket.Conn
	msgs chan map[string]any
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, wsURL+"?"+q.Encode(), nil)
	if err != nil {
		return nil, resp, err
	}
	w := &watcher{t: t, conn: conn, msgs: make(chan map[string]any, 100)}
	go func() {
		defer close(w.msgs)
		for {
			_, data, err := conn.Read(context.Background())
			if err != nil {
				return
			}
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				m = map[string]any{"unparsed": string(data)}
			}
			w.msgs <- m
		}
	}()
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
		return m
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

func TestWebSocketConnectRefusals(t *testing.T) {
	user := userFor(t)
	c := newClient(t, user)
	sessionID := createSession(t, c, pdfDecl("a.pdf", 10))
	for _, tc := range []struct {
		name, token, session string
		status               int
	}{
		{"no token", "", sessionID, 401},
		{"another user's session", "e2e-someone-else", sessionID, 403},
		{"unknown session", user, "00000000-0000-4000-8000-000000000000", 403},
		{"no session", user, "", 400},
		{"not a session id", user, "nope", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unchanged(t, func() {
				_, resp, err := dialWS(t, tc.token, tc.session)
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

// With the WebSocket endpoint down, uploads and finalize succeed, and each
// request logs one warning.
func TestWebSocketEndpointDown(t *testing.T) {
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
	old := st.App.Service.Progress
	st.App.Service.Progress = notifier
	t.Cleanup(func() { st.App.Service.Progress = old })

	user := userFor(t)
	c := newClient(t, user)
	pdf := pdfBytes(mib)
	sessionID := createSession(t, c, pdfDecl("a.pdf", len(pdf)))
	watch(t, user, sessionID) // a connection to post to, at an endpoint that is down
	fileID := registerFile(t, c, sessionID, pdfDecl("a.pdf", len(pdf)))["fileId"].(string)
	c.put(partPath(sessionID, fileID, 1), pdf).data(t, 200)
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Fatalf("%d warnings after one part, want 1:\n%s", n, logs.String())
	}
	c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Unwatched"}).data(t, 201)
	if n := strings.Count(logs.String(), "level=WARN"); n != 2 {
		t.Fatalf("%d warnings after finalize, want 2:\n%s", n, logs.String())
	}
}
