package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/coder/websocket"

	"github.com/mocbuilders/moc-upload/shared/progress"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// BenchmarkPartEvents uploads one 1 MiB part (a file of one part, as most
// images are) through the local gateway without AWS's payload limits
// (server), again and again, to a session followed by watchers real
// WebSocket clients connected to the local WebSocket API (wsURL):
//
//   - watchers=0 (baseline): nobody follows the session; the service still
//     lists the session's connections (none) after recording the part;
//   - watchers=1: one client, reading its events;
//   - watchers=100: a hundred clients of the same session.
//
// sec/op is the upload request's latency, from the client's request to
// its answer: the service posts the event to every connection (the
// management API, PostToConnection) before it answers. After each request,
// not timed, every client must have received exactly that part's
// upload.part.completed event (the benchmark fails otherwise);
// fanout-ms/op is the time from the request's start to the last client
// receiving it. p50-ms and fanout-p50-ms are the medians of the same, less
// sensitive than means to other work on a shared machine; notify-p50-ms
// the median time the request spends telling the session's connections
// (upload.Progress's Announce: listing them, then posting to each).
func BenchmarkPartEvents(b *testing.B) {
	const size = 1 * mib
	data := pdfBytes(size)
	// Warm-up, not measured: the stack's first requests are slower.
	user, sessionID, files := benchPDFs(b, 1, size)
	for range 30 {
		if _, err := benchCall(server.URL, user, "PUT", partPath(sessionID, files[0].id, 1), "application/octet-stream", data, 200); err != nil {
			b.Fatal(err)
		}
	}
	benchRoundsRun(b, func(b *testing.B) {
		for _, n := range []int{0, 1, 100} {
			b.Run(fmt.Sprintf("watchers=%d", n), func(b *testing.B) { benchPartEvents(b, data, n) })
		}
	})
}

// benchPartEvents is one variant of BenchmarkPartEvents: n clients.
func benchPartEvents(b *testing.B, data []byte, n int) {
	benchForgetSpans()
	user, sessionID, files := benchPDFs(b, 1, len(data))
	fileID := files[0].id
	ws := benchWatchers(b, user, sessionID, n)
	path := partPath(sessionID, fileID, 1)
	notify := &benchTimedProgress{Progress: st.App.Service.Progress}
	st.App.Service.Progress = notify
	defer func() { st.App.Service.Progress = notify.Progress }()
	b.SetBytes(int64(len(data)))
	var requests, fanouts []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := benchCall(server.URL, user, "PUT", path, "application/octet-stream", data, 200); err != nil {
			b.Fatal(err)
		}
		requests = append(requests, time.Since(start))
		if n == 0 {
			continue
		}
		b.StopTimer()
		fanouts = append(fanouts, benchDelivered(b, ws, sessionID, fileID).Sub(start))
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(benchMedianMS(requests), "p50-ms")
	b.ReportMetric(notify.medianMS(), "notify-p50-ms")
	if n > 0 {
		benchNothingPending(b, ws)
		var sum time.Duration
		for _, d := range fanouts {
			sum += d
		}
		b.ReportMetric(float64(sum.Microseconds())/1000/float64(len(fanouts)), "fanout-ms/op")
		b.ReportMetric(benchMedianMS(fanouts), "fanout-p50-ms")
	}
	// The part stays in an open multipart upload; drop it.
	_, _ = s3c.AbortMultipartUpload(context.Background(), &s3.AbortMultipartUploadInput{
		Bucket: aws.String(st.Config.S3Bucket), Key: aws.String(files[0].key), UploadId: aws.String(files[0].uploadID)})
}

// benchWatcher is a WebSocket client of the local WebSocket API; each
// message it reads is stamped with the time it was read.
type benchWatcher struct {
	conn *websocket.Conn
	msgs <-chan wsMessage
}

// benchWatchers connects n clients as user to follow sessionID, all at
// once, and closes them when b ends.
func benchWatchers(b *testing.B, user, sessionID string, n int) []*benchWatcher {
	b.Helper()
	q := url.Values{"sessionId": {sessionID}, "token": {user}}
	ws := make([]*benchWatcher, n)
	err := benchPool(n, 8, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, _, err := websocket.Dial(ctx, wsURL+"?"+q.Encode(), nil)
		if err != nil {
			return fmt.Errorf("client %d: %w", i, err)
		}
		ws[i] = &benchWatcher{conn: conn, msgs: readMessages(conn, 16)}
		return nil
	})
	b.Cleanup(func() {
		var wg sync.WaitGroup
		for _, w := range ws {
			if w != nil {
				wg.Go(func() { _ = w.conn.Close(websocket.StatusNormalClosure, "") })
			}
		}
		wg.Wait()
	})
	if err != nil {
		b.Fatal(err)
	}
	return ws
}

// benchDelivered waits until every client has received one message, the
// upload.part.completed event of part 1 of fileID, and returns when the
// last one read it. It fails b unless all of them did within 10 s.
func benchDelivered(b *testing.B, ws []*benchWatcher, sessionID, fileID string) time.Time {
	b.Helper()
	var last time.Time
	received := 0
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for i, w := range ws {
		select {
		case msg, ok := <-w.msgs:
			if !ok {
				b.Fatalf("client %d: connection closed", i)
			}
			m := msg.m
			if m["type"] != progress.TypePartCompleted || m["sessionId"] != sessionID || m["fileId"] != fileID || m["partNumber"] != float64(1) {
				b.Fatalf("client %d received %v, want part 1 of %s", i, m, fileID)
			}
			received++
			if msg.at.After(last) {
				last = msg.at
			}
		case <-timeout.C:
			b.Fatalf("%d of %d clients received the part's event within 10 s", received, len(ws))
		}
	}
	if received != len(ws) {
		b.Fatalf("%d of %d clients received the part's event", received, len(ws))
	}
	return last
}

// benchNothingPending fails b when a client has a message waiting (an
// event delivered twice, say): each client pings, and the next message it
// reads must be the pong.
func benchNothingPending(b *testing.B, ws []*benchWatcher) {
	b.Helper()
	err := benchPool(len(ws), 8, func(i int) error {
		w := ws[i]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.conn.Write(ctx, websocket.MessageText, []byte(`{"action":"ping"}`)); err != nil {
			return fmt.Errorf("client %d: %w", i, err)
		}
		select {
		case msg, ok := <-w.msgs:
			if !ok || msg.m["type"] != "pong" {
				return fmt.Errorf("client %d: a message was waiting: %v", i, msg.m)
			}
		case <-ctx.Done():
			return fmt.Errorf("client %d: no pong within 10 s", i)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// benchTimings collects the durations of calls made from several
// goroutines.
type benchTimings struct {
	mu sync.Mutex
	ds []time.Duration
}

// since records the time since start.
func (t *benchTimings) since(start time.Time) {
	d := time.Since(start)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ds = append(t.ds, d)
}

// medianMS is the median duration, in milliseconds.
func (t *benchTimings) medianMS() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return benchMedianMS(t.ds)
}

// benchMedianMS is the median of ds, in milliseconds.
func benchMedianMS(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[len(s)/2].Microseconds()) / 1000
}

// benchForgetSpans drops the spans the package's OTLP receiver (traces)
// kept: it keeps every span the stack exports, for the tests, and over a
// benchmark run they would grow the heap by hundreds of MiB (each
// PostToConnection is a span), making the process's GC ever slower. The
// stack still makes and exports its spans. Benchmarks run after the tests.
func benchForgetSpans() { traces.Forget() }

// BenchmarkPostToConnection is one event posted to one connection through
// the local WebSocket API's management API, what the part upload of
// BenchmarkPartEvents waits for per connection, with a real client
// reading the messages:
//
//   - via=http (baseline): a plain net/http POST /@connections/{id};
//   - via=sdk: PostToConnection with the client the service uses
//     (progress.NewClient: aws-sdk-go-v2 apigatewaymanagementapi, with its
//     otelaws middleware).
//
// Each post returns once the gateway has written the message to the
// client; the benchmark then waits, not timed, for the client to read it.
func BenchmarkPostToConnection(b *testing.B) {
	endpoint := "http" + strings.TrimSuffix(strings.TrimPrefix(wsURL, "ws"), "/")
	cli, err := progress.NewClient(context.Background(), progress.ClientConfig{Endpoint: endpoint})
	if err != nil {
		b.Fatal(err)
	}
	data := []byte(`{"type":"upload.part.completed","sessionId":"s","fileId":"f","partNumber":1,"etag":"e","totalParts":1,"completedParts":1,"percentComplete":100}`)
	post := map[string]func(id string) error{
		"http": func(id string) error {
			resp, err := benchHTTP.Post(endpoint+"/@connections/"+url.PathEscape(id), "application/json", bytes.NewReader(data))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("POST @connections: %d", resp.StatusCode)
			}
			return nil
		},
		"sdk": func(id string) error {
			_, err := cli.PostToConnection(context.Background(), &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: &id, Data: data})
			return err
		},
	}
	benchRoundsRun(b, func(b *testing.B) {
		for _, via := range []string{"http", "sdk"} {
			b.Run("via="+via, func(b *testing.B) {
				benchForgetSpans()
				user, sessionID, _ := benchPDFs(b, 1, mib)
				w := benchWatchers(b, user, sessionID, 1)[0]
				var id string
				if err := db.QueryRow(context.Background(), `SELECT connection_id FROM websocket_connections WHERE session_id = $1`, sessionID).Scan(&id); err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if err := post[via](id); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					select {
					case m := <-w.msgs:
						if m.m["type"] != progress.TypePartCompleted {
							b.Fatalf("client received %v", m.m)
						}
					case <-time.After(10 * time.Second):
						b.Fatal("the client received nothing within 10 s")
					}
					b.StartTimer()
				}
			})
		}
	})
}

// benchTimedProgress times the service's Announce calls.
type benchTimedProgress struct {
	upload.Progress
	benchTimings
}

func (p *benchTimedProgress) Announce(ctx context.Context, ev upload.Events) {
	defer p.since(time.Now())
	p.Progress.Announce(ctx, ev)
}
