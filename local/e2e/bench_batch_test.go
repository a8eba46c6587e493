package e2e

import (
	"bytes"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/local/gateway"
)

// BenchmarkBatch3Parts sends the three parts of one file — 5 MiB, 5 MiB
// and 64 KiB: every part but the last is 5 MiB and a batch carries one
// file's parts, so three parts are at least 10 MiB — through the local
// gateway without AWS's payload limits (a 10 MiB batch is over Lambda's
// 6 MB), behind a simulated network round trip per HTTP request (rtt).
//
//   - via=singles (baseline): three PUT …/parts/{n}, one after another;
//   - via=batch: one POST …/parts/batch with the three parts as
//     multipart/form-data;
//   - via=singles-at-once, for comparison: the three PUTs at the same
//     time, on three connections.
//
// Each sub-benchmark uploads the parts of one file again and again (a part
// uploaded again replaces the last).
func BenchmarkBatch3Parts(b *testing.B) {
	data := pdfBytes(2*benchPartSize + 64<<10)
	ranges := benchRanges(len(data))
	body, contentType := benchBatchBody(b, data)
	gw, err := st.Gateway(gateway.Options{})
	if err != nil {
		b.Fatal(err)
	}
	var srvs []*httptest.Server
	for _, rtt := range []time.Duration{0, 50 * time.Millisecond} {
		srvs = append(srvs, httptest.NewServer(benchRTT{gw, rtt}))
	}
	defer func() {
		for _, srv := range srvs {
			srv.Close()
		}
	}()
	benchRoundsRun(b, func(b *testing.B) {
		for i, rtt := range []time.Duration{0, 50 * time.Millisecond} {
			srv := srvs[i]
			b.Run(fmt.Sprintf("rtt=%s", rtt), func(b *testing.B) {
				b.Run("via=singles", func(b *testing.B) {
					user, sessionID, files := benchPDFs(b, 1, len(data))
					b.SetBytes(int64(len(data)))
					for b.Loop() {
						for n, r := range ranges {
							if _, err := benchCall(srv.URL, user, "PUT", partPath(sessionID, files[0].id, n+1), "application/octet-stream", data[r[0]:r[1]], 200); err != nil {
								b.Fatal(err)
							}
						}
					}
					benchDrop(b, benchCompleted(b, user, srv.URL, sessionID, files), len(data))
				})
				b.Run("via=batch", func(b *testing.B) {
					user, sessionID, files := benchPDFs(b, 1, len(data))
					b.SetBytes(int64(len(data)))
					for b.Loop() {
						d, err := benchCall(srv.URL, user, "POST", benchFilePath(sessionID, files[0].id)+"/parts/batch", contentType, body, 200)
						if err != nil {
							b.Fatal(err)
						}
						if parts, _ := d["parts"].([]any); len(parts) != len(ranges) {
							b.Fatalf("batch stored %v", d)
						}
					}
					benchDrop(b, benchCompleted(b, user, srv.URL, sessionID, files), len(data))
				})
				b.Run("via=singles-at-once", func(b *testing.B) {
					user, sessionID, files := benchPDFs(b, 1, len(data))
					b.SetBytes(int64(len(data)))
					for b.Loop() {
						err := benchParallel(len(ranges), func(i int) error {
							r := ranges[i]
							_, err := benchCall(srv.URL, user, "PUT", partPath(sessionID, files[0].id, i+1), "application/octet-stream", data[r[0]:r[1]], 200)
							return err
						})
						if err != nil {
							b.Fatal(err)
						}
					}
					benchDrop(b, benchCompleted(b, user, srv.URL, sessionID, files), len(data))
				})
			})
		}
	})
}

// benchCompleted completes the benchmark's file (not timed), so that
// benchDrop can check it holds every byte.
func benchCompleted(b *testing.B, user, base, sessionID string, files []benchFile) []benchFile {
	b.Helper()
	if _, err := benchCall(base, user, "POST", benchFilePath(sessionID, files[0].id)+"/complete", "application/json", nil, 200); err != nil {
		b.Fatal(err)
	}
	return files
}

// benchBatchBody is the multipart/form-data body of a batch of every part of
// data, and its Content-Type.
func benchBatchBody(b *testing.B, data []byte) ([]byte, string) {
	b.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for n, r := range benchRanges(len(data)) {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="part%d"; filename="blob"`, n+1))
		h.Set("Content-Type", "application/octet-stream")
		pw, err := w.CreatePart(h)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = pw.Write(data[r[0]:r[1]])
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes(), w.FormDataContentType()
}

// benchRTT puts a network round trip in front of h: each request reaches h
// rtt/2 late and its response leaves rtt/2 late, as for a client rtt away
// from the API. The bytes themselves flow at loopback speed.
type benchRTT struct {
	h   http.Handler
	rtt time.Duration
}

func (d benchRTT) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if d.rtt == 0 {
		d.h.ServeHTTP(w, r)
		return
	}
	time.Sleep(d.rtt / 2)
	d.h.ServeHTTP(&benchLate{ResponseWriter: w, delay: d.rtt / 2}, r)
}

// benchLate holds the response back by delay.
type benchLate struct {
	http.ResponseWriter
	delay  time.Duration
	waited bool
}

func (l *benchLate) wait() {
	if !l.waited {
		l.waited = true
		time.Sleep(l.delay)
	}
}

func (l *benchLate) WriteHeader(status int) {
	l.wait()
	l.ResponseWriter.WriteHeader(status)
}

func (l *benchLate) Write(p []byte) (int, error) {
	l.wait()
	return l.ResponseWriter.Write(p)
}
