package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// The local S3 server's fixed development credentials.
const (
	DevAccessKey = "mocdev"
	DevSecretKey = "mocdevsecret"
	DevRegion    = "us-east-1"
)

// S3Server is a running S3-compatible server.
type S3Server struct {
	Endpoint, AccessKey, SecretKey, Region string
	proc                                   *process
}

// DevS3 describes a local S3 server started earlier on port (by another
// `make local`), with the development credentials.
func DevS3(port int) *S3Server {
	return &S3Server{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port),
		AccessKey: DevAccessKey, SecretKey: DevSecretKey, Region: DevRegion}
}

// StartS3 runs versitygw (posix backend: objects are files under dataDir)
// on 127.0.0.1:port and waits until it answers HTTP.
func StartS3(ctx context.Context, dataDir string, port int, logw io.Writer) (*S3Server, error) {
	bin, err := versitygw()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--port", "127.0.0.1:"+strconv.Itoa(port), "--quiet", "posix", dataDir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+DevAccessKey, "ROOT_SECRET_KEY="+DevSecretKey)
	proc, err := start("versitygw", cmd, logw)
	if err != nil {
		return nil, err
	}
	srv := DevS3(port)
	srv.proc = proc
	client := &http.Client{Timeout: time.Second}
	err = proc.waitReady(ctx, 60*time.Second, func() bool {
		resp, err := client.Get(srv.Endpoint)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	if err != nil {
		return nil, err
	}
	return srv, nil
}

// Stop ends the server.
func (s *S3Server) Stop() error {
	if s.proc == nil {
		return nil
	}
	return s.proc.stop(syscall.SIGTERM, 10*time.Second)
}

var buildMu sync.Mutex

// versitygw finds the server binary: $VERSITYGW, else .bin/versitygw in the
// repository, which it builds from the tools module when missing.
func versitygw() (string, error) {
	if p := os.Getenv("VERSITYGW"); p != "" {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, ".bin", "versitygw")
	buildMu.Lock()
	defer buildMu.Unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	fmt.Fprintln(os.Stderr, "building versitygw into .bin/ (about two minutes, once)…")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, "github.com/versity/versitygw/cmd/versitygw")
	cmd.Dir = filepath.Join(root, "tools")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build versitygw (run `make deps`): %w\n%s", err, out)
	}
	// Another process may have built it meanwhile; a rename is atomic either way.
	return bin, os.Rename(tmp, bin)
}

// EnsureBucket creates bucket unless it exists.
func EnsureBucket(ctx context.Context, endpoint, accessKey, secretKey, region, bucket string) error {
	c := s3.New(s3.Options{
		BaseEndpoint: aws.String(endpoint), Region: region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
	})
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "BucketAlreadyOwnedByYou", "BucketAlreadyExists":
			return nil
		}
	}
	return err
}
