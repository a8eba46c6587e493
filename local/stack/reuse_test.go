package stack

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/local/faultnet"
)

// impostor is a program on a port where the stack looks for one of its
// services: what it does with a connection, and what ReusePostgres and
// ReuseS3 must say of it.
type impostor struct {
	name  string
	start func(t *testing.T) int // listens, returns the port
	says  string                 // in the error: what answers there
}

var impostors = []impostor{
	{"silent", func(t *testing.T) int {
		return faultnet.Silent(t).Port // the hang `make local` had
	}, "accepts connections but answers neither PostgreSQL nor HTTP"},
	{"web page", func(t *testing.T) int {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Server", "dev-web/1.0")
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<html>hello</html>"))
		}))
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().(*net.TCPAddr).Port
	}, "an HTTP server answering 200 OK (content-type: text/html, server: dev-web/1.0)"},
	{"JSON API", func(t *testing.T) int {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"message":"Not Found"}`))
		}))
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().(*net.TCPAddr).Port
	}, "an HTTP server answering 404 Not Found (content-type: application/json)"},
	{"greeter", func(t *testing.T) int {
		return faultnet.Serve(t, func(c net.Conn) {
			defer c.Close()
			_, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
			time.Sleep(100 * time.Millisecond) // let the client read it before the close
		}).Port
	}, `a server that greets with "SSH-2.0-OpenSSH_9.2"`},
}

// What is not the stack's PostgreSQL or S3 on its port is refused at
// once, the error naming the port, what answers there and the variable
// to change; never a hang, never an XML parse error.
func TestReuseRefusesWhatIsNotTheService(t *testing.T) {
	for _, imp := range impostors {
		t.Run(imp.name, func(t *testing.T) {
			t.Parallel() // each waits out its impostor's silence
			port := imp.start(t)
			for _, c := range []struct {
				service, variable string
				reuse             func() error
			}{
				{"PostgreSQL", "LOCAL_PG_PORT", func() error {
					_, err := ReusePostgres(testContext(t), port, "LOCAL_PG_PORT")
					return err
				}},
				{"S3", "LOCAL_S3_PORT", func() error {
					_, err := ReuseS3(testContext(t), port, "LOCAL_S3_PORT")
					return err
				}},
			} {
				begin := time.Now()
				err := c.reuse()
				took := time.Since(begin)
				if err == nil {
					t.Fatalf("%s: reused %s", c.service, imp.name)
				}
				msg := err.Error()
				for _, want := range []string{fmt.Sprintf("port %d", port), imp.says, c.variable} {
					if !strings.Contains(msg, want) {
						t.Errorf("%s: %q does not say %q", c.service, msg, want)
					}
				}
				// The checks' own bound, and DescribeListener's two seconds.
				if took > reuseTimeout+3*time.Second {
					t.Errorf("%s: took %v to refuse", c.service, took)
				}
			}
		})
	}
}

// The stack's own services, started earlier (another `make local`), are
// reused.
func TestReuseTakesTheStacksOwnServices(t *testing.T) {
	ctx := testContext(t)
	dir := serviceDir(t)
	pg, err := StartPostgres(ctx, PostgresOptions{DataDir: filepath.Join(dir, "pg"), Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	url, err := ReusePostgres(ctx, pg.Port, "LOCAL_PG_PORT")
	if err != nil || url != pg.URL {
		t.Errorf("ReusePostgres = %q, %v; want %s", url, err, pg.URL)
	}
	s3srv, err := StartS3(ctx, filepath.Join(dir, "s3"), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s3srv.Stop()
	port := s3srv.Port()
	got, err := ReuseS3(ctx, port, "LOCAL_S3_PORT")
	if err != nil || got.Endpoint != s3srv.Endpoint {
		t.Errorf("ReuseS3 = %+v, %v; want %s", got, err, s3srv.Endpoint)
	}
	// Each is not the other.
	if _, err := ReusePostgres(ctx, port, "LOCAL_PG_PORT"); err == nil || !strings.Contains(err.Error(), "HTTP server") {
		t.Errorf("ReusePostgres on the S3 port: %v", err)
	}
	if _, err := ReuseS3(ctx, pg.Port, "LOCAL_S3_PORT"); err == nil || !strings.Contains(err.Error(), "LOCAL_S3_PORT") {
		t.Errorf("ReuseS3 on the PostgreSQL port: %v", err)
	}
}
