package s3blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// frozenS3 is a store that accepts connections and never answers, as a
// stopped process or a black-holed proxy behaves. It returns its endpoint.
func frozenS3(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never read or written
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}

func frozenBlob(t *testing.T, cfg Config) *Blob {
	t.Helper()
	cfg.Bucket, cfg.Endpoint = "frozen", frozenS3(t)
	cfg.AccessKeyID, cfg.SecretAccessKey = "key", "secret"
	b, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// returnsWithin runs call and fails the test if it has not returned by
// limit: a call that hangs on a frozen store is the bug. The limit is a
// generous bound on the test, not a measurement.
func returnsWithin(t *testing.T, limit time.Duration, call func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("the call still waits on a frozen store after %s", limit)
		return nil
	}
}

// Every call to a frozen store ends at its timeout as unavailable storage
// (the API's retryable 503), never hangs.
func TestFrozenStoreTimesOut(t *testing.T) {
	b := frozenBlob(t, Config{OperationTimeout: 200 * time.Millisecond, TransferTimeout: 300 * time.Millisecond})
	ctx := context.Background() // no deadline of its own
	calls := map[string]func() error{
		"create": func() error { _, err := b.CreateMultipartUpload(ctx, "k", "application/pdf"); return err },
		"upload part": func() error {
			_, err := b.UploadPart(ctx, "k", "u", 1, strings.NewReader("hello"), 5, "")
			return err
		},
		"complete": func() error {
			return b.CompleteMultipartUpload(ctx, "k", "u", []upload.CompletedPart{{PartNumber: 1, ETag: "e"}})
		},
		"abort":      func() error { return b.AbortMultipartUpload(ctx, "k", "u") },
		"list parts": func() error { _, err := b.ListParts(ctx, "k", "u"); return err },
		"head":       func() error { _, err := b.Head(ctx, "k"); return err },
		"delete":     func() error { return b.DeleteObject(ctx, "k") },
		"put":        func() error { return b.PutObject(ctx, "k", "image/png", []byte("x")) },
		"open":       func() error { _, err := b.Open(ctx, "k"); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := returnsWithin(t, 30*time.Second, call)
			if !errors.Is(err, upload.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want ErrUnavailable from the call's deadline", err)
			}
		})
	}
}

// Under Lambda the context carries the invocation's deadline: a call to a
// frozen store ends DeadlineReserve before it, while the caller still has
// time to answer, however long the configured timeout.
func TestFrozenStoreEndsBeforeCallersDeadline(t *testing.T) {
	b := frozenBlob(t, Config{OperationTimeout: time.Hour, TransferTimeout: time.Hour, DeadlineReserve: 500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := returnsWithin(t, 30*time.Second, func() error { _, err := b.Head(ctx, "k"); return err })
	if !errors.Is(err, upload.ErrUnavailable) {
		t.Errorf("err = %v, want ErrUnavailable", err)
	}
	if ctx.Err() != nil {
		t.Errorf("the call returned after the caller's deadline (%v): no time was left to answer", ctx.Err())
	}
}

// A body opened from the store keeps its call's deadline while it is
// read: the whole object arrives through it.
func TestOpenBodyIsBounded(t *testing.T) {
	b, _, _ := newBlob(t)
	data := genBytes(7, 100)
	putSmall(t, b, "open/obj", data)
	body, err := b.Open(t.Context(), "open/obj")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := body.(*boundBody); !ok {
		t.Fatalf("Open returned %T, want the bounded body", body)
	}
	got, err := io.ReadAll(body)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v; want the object", len(got), err)
	}
	if err := body.Close(); err != nil {
		t.Fatal(err)
	}
}
