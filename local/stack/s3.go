package stack

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// The local S3 server's fixed development credentials and region.
const (
	DevAccessKey = "mocdev"
	DevSecretKey = "mocdevsecret"
	DevRegion    = "us-east-1"
)

// versitygwPackage is what the tools module builds into .bin/versitygw.
const versitygwPackage = "github.com/versity/versitygw/cmd/versitygw"

// S3Server is an S3-compatible server: one started by StartS3, or one
// described by DevS3.
type S3Server struct {
	Endpoint  string // e.g. http://127.0.0.1:7070; use path-style addressing
	AccessKey string
	SecretKey string
	Region    string
	proc      *process
}

// DevS3 describes a local S3 server started earlier on port, for example
// by another `make local`, with the development credentials.
func DevS3(port int) *S3Server {
	return &S3Server{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port),
		AccessKey: DevAccessKey, SecretKey: DevSecretKey, Region: DevRegion}
}

// StartS3 runs versitygw with its posix backend (a bucket is a folder of
// dataDir, an object a file) as a child process listening on
// 127.0.0.1:port (0: a free one) with the development credentials, and returns once it
// answers HTTP (at most 60 seconds).
//
// The binary is $VERSITYGW when set, else .bin/versitygw in the
// repository, which is built from the tools module when missing (about two
// minutes, once). Object metadata goes in extended attributes, or in the
// sidecar folder dataDir+".meta" on file systems without them.
//
// The server gets SIGTERM when this process dies; Stop stops it earlier.
func StartS3(ctx context.Context, dataDir string, port int, logw io.Writer) (*S3Server, error) {
	return startOnFreePort(port, func(port int) (*S3Server, error) {
		return startS3(ctx, dataDir, port, logw)
	})
}

func startS3(ctx context.Context, dataDir string, port int, logw io.Writer) (*S3Server, error) {
	if dataDir == "" || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("start versitygw: need a data folder and a port, got %q and %d", dataDir, port)
	}
	bin, err := VersitygwBinary(ctx)
	if err != nil {
		return nil, err
	}
	if PortOpen(fmt.Sprintf("127.0.0.1:%d", port)) {
		return nil, fmt.Errorf("start versitygw: port %d on 127.0.0.1 is already in use: stop what listens there or choose another port", port)
	}
	dataDir, err = filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	args := []string{"--port", "127.0.0.1:" + strconv.Itoa(port), "--quiet", "posix"}
	if !xattrsWork(dataDir) {
		meta := dataDir + ".meta"
		if err := os.MkdirAll(meta, 0o755); err != nil {
			return nil, err
		}
		args = append(args, "--sidecar", meta)
	}
	args = append(args, dataDir)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dataDir
	cmd.Env = append(withoutEnv(os.Environ(), "ROOT_ACCESS_KEY", "ROOT_SECRET_KEY"),
		"ROOT_ACCESS_KEY="+DevAccessKey, "ROOT_SECRET_KEY="+DevSecretKey)
	proc, err := start("versitygw", cmd, logw)
	if err != nil {
		return nil, err
	}
	srv := DevS3(port)
	srv.proc = proc
	client := &http.Client{Timeout: time.Second}
	err = proc.waitReady(ctx, 60*time.Second, func(ctx context.Context) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.Endpoint, nil)
		if err != nil {
			return false
		}
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// Any S3 answer (403 for an anonymous request) means it serves;
		// make sure the answer is versitygw's and not another server's.
		return !proc.exited()
	})
	if err != nil {
		return nil, err
	}
	return srv, nil
}

// Stop ends a server started by StartS3 (SIGTERM, then SIGKILL after 10
// seconds). It does nothing for a server described by DevS3.
func (s *S3Server) Stop() error {
	if s == nil {
		return nil
	}
	return s.proc.stop(syscall.SIGTERM, 10*time.Second)
}

// xattrsWork reports whether dir's file system stores user extended
// attributes, which versitygw's default metadata store needs.
func xattrsWork(dir string) bool {
	const name = "user.moc-stack-probe"
	err := syscall.Setxattr(dir, name, []byte("1"), 0)
	if errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EOPNOTSUPP) {
		return false
	}
	_ = syscall.Removexattr(dir, name)
	return true
}

func withoutEnv(env []string, names ...string) []string {
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			drop = drop || k == n
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

// VersitygwBinary returns the versitygw server binary: $VERSITYGW when set,
// else .bin/versitygw, built when missing (see ToolBinary).
func VersitygwBinary(ctx context.Context) (string, error) {
	return ToolBinary(ctx, Tool{Name: "versitygw", Package: versitygwPackage, Env: "VERSITYGW", BuildTime: "about two minutes"})
}

// Tool is a program of the tools module (tools/go.mod) that the stack or
// the tests run.
type Tool struct {
	Name      string // file name in .bin/
	Package   string // the main package tools/go.mod builds
	Env       string // variable that points at a binary elsewhere
	BuildTime string // what to tell the user while building
}

var buildMu sync.Mutex

// GoCommand finds the go command: on PATH, else in /usr/local/go/bin.
func GoCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/local/go/bin/go"); err == nil {
		return "/usr/local/go/bin/go", nil
	}
	return "", errors.New("the go command is not on PATH (nor in /usr/local/go/bin)")
}

// ToolBinary returns the tool's binary: $Env when set, else
// <repository>/.bin/<Name>, which it builds from the tools module when
// missing. Concurrent callers, in this and other processes (go test runs
// packages in parallel; scripts/deps.sh takes the same lock), wait for one
// build.
func ToolBinary(ctx context.Context, t Tool) (string, error) {
	if p := os.Getenv(t.Env); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", t.Env, p, err)
		}
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("find %s (or set %s): %w", t.Name, t.Env, err)
	}
	binDir := filepath.Join(root, ".bin")
	bin := filepath.Join(binDir, t.Name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(filepath.Join(binDir, "."+t.Name+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // another process built it while we waited
	}
	goCmd, err := GoCommand()
	if err != nil {
		return "", fmt.Errorf("building %s: %w: run `make deps` or set %s", t.Name, err, t.Env)
	}
	fmt.Fprintf(os.Stderr, "stack: building %s into %s (%s, once)...\n", t.Name, bin, t.BuildTime)
	tmp, err := os.CreateTemp(binDir, "."+t.Name+"-*.tmp")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	cmd := exec.CommandContext(ctx, goCmd, "build", "-o", tmp.Name(), t.Package)
	cmd.Dir = filepath.Join(root, "tools")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s (`make deps` builds it too): %w\n%s", t.Name, err, strings.TrimSpace(string(out)))
	}
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// lockFile takes an exclusive lock on path, waiting for other holders.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// EnsureBucket creates bucket on the S3 server at endpoint (path-style
// addressing, static credentials) unless it exists and is the caller's.
func EnsureBucket(ctx context.Context, endpoint, accessKey, secretKey, region, bucket string) error {
	c := client(endpoint, accessKey, secretKey, region)
	in := &s3.CreateBucketInput{Bucket: aws.String(bucket)}
	if region != "" && region != "us-east-1" {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{
			LocationConstraint: types.BucketLocationConstraint(region),
		}
	}
	_, err := c.CreateBucket(ctx, in)
	var owned *types.BucketAlreadyOwnedByYou
	var exists *types.BucketAlreadyExists
	var apiErr smithy.APIError
	switch {
	case err == nil, errors.As(err, &owned):
		return nil
	case errors.As(err, &exists),
		errors.As(err, &apiErr) && apiErr.ErrorCode() == "BucketAlreadyExists":
		// Some servers say so of the caller's own buckets too: fine when
		// the bucket answers the caller.
		if _, herr := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); herr == nil {
			return nil
		}
	case errors.As(err, &apiErr) && apiErr.ErrorCode() == "BucketAlreadyOwnedByYou":
		return nil
	}
	return fmt.Errorf("create bucket %s at %s: %w", bucket, endpoint, err)
}

func client(endpoint, accessKey, secretKey, region string) *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
	})
}

// BucketCORSRule is template.yaml's UploadBucket CORS rule for origins:
// browsers PUT files and parts to presigned URLs and GET presigned
// downloads, and read each part's ETag.
func BucketCORSRule(origins []string) types.CORSRule {
	return types.CORSRule{
		AllowedMethods: []string{"PUT", "GET", "HEAD"},
		AllowedOrigins: origins,
		AllowedHeaders: []string{"*"},
		ExposeHeaders:  []string{"ETag"},
		MaxAgeSeconds:  aws.Int32(3000),
	}
}

// PutBucketCORS gives bucket, on the S3 server at endpoint, the CORS
// configuration of BucketCORSRule(origins), replacing any other; no
// origins deletes the bucket's CORS configuration. versitygw then answers
// browsers' preflight (OPTIONS) requests and adds Access-Control-* headers
// to its answers as S3 does.
func PutBucketCORS(ctx context.Context, endpoint, accessKey, secretKey, region, bucket string, origins []string) error {
	c := client(endpoint, accessKey, secretKey, region)
	if len(origins) == 0 {
		if _, err := c.DeleteBucketCors(ctx, &s3.DeleteBucketCorsInput{Bucket: aws.String(bucket)}); err != nil {
			return fmt.Errorf("delete the CORS configuration of bucket %s at %s: %w", bucket, endpoint, err)
		}
		return nil
	}
	_, err := c.PutBucketCors(ctx, &s3.PutBucketCorsInput{
		Bucket:            aws.String(bucket),
		CORSConfiguration: &types.CORSConfiguration{CORSRules: []types.CORSRule{BucketCORSRule(origins)}},
	})
	if err != nil {
		return fmt.Errorf("put the CORS configuration of bucket %s at %s: %w", bucket, endpoint, err)
	}
	return nil
}

// ReuseS3 checks that what listens on 127.0.0.1:port is an S3 server
// (an anonymous GET / answers S3's XML: an Error, or the bucket list)
// that takes the development credentials (a signed ListBuckets: another
// `make local`'s versitygw, DevS3), within a few seconds, and returns it.
// Otherwise the error names the port, what answers there
// (DescribeListener, or the S3 error) and portVar, the variable that
// moves the stack to another port.
func ReuseS3(ctx context.Context, port int, portVar string) (*S3Server, error) {
	srv := DevS3(port)
	ctx, cancel := context.WithTimeout(ctx, reuseTimeout)
	defer cancel()
	notS3 := func() error {
		return fmt.Errorf("port %d on 127.0.0.1, where the stack looks for its S3 server, is taken by %s: stop it, or set %s to a free port, where the stack starts its own",
			port, DescribeListener(fmt.Sprintf("127.0.0.1:%d", port)), portVar)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.Endpoint+"/", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, notS3()
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if !s3Answer(body) {
		return nil, notS3()
	}
	c := s3.New(s3.Options{
		BaseEndpoint:     aws.String(srv.Endpoint),
		Region:           srv.Region,
		UsePathStyle:     true,
		Credentials:      credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
		RetryMaxAttempts: 1,
	})
	if _, err := c.ListBuckets(ctx, &s3.ListBucketsInput{}); err != nil {
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) {
			return nil, fmt.Errorf("port %d on 127.0.0.1 is an S3 server that refuses the stack's development credentials (%s: %s): stop it, or set %s to another port, where the stack starts its own",
				port, apiErr.ErrorCode(), apiErr.ErrorMessage(), portVar)
		}
		return nil, fmt.Errorf("port %d on 127.0.0.1 is an S3 server, but listing its buckets failed: %w", port, err)
	}
	return srv, nil
}

// s3Answer reports whether body is S3's XML answer to GET /: an Error
// (403 AccessDenied, anonymously) or the bucket list.
func s3Answer(body []byte) bool {
	d := xml.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := d.Token()
		if err != nil {
			return false
		}
		if el, ok := tok.(xml.StartElement); ok {
			return el.Name.Local == "Error" || el.Name.Local == "ListAllMyBucketsResult"
		}
	}
}

// Port is the server's port on 127.0.0.1 (0 when Endpoint has none).
func (s *S3Server) Port() int {
	_, p, _ := strings.Cut(strings.TrimPrefix(s.Endpoint, "http://"), ":")
	n, _ := strconv.Atoi(strings.TrimRight(p, "/"))
	return n
}
