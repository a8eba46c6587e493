package s3blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/local/faultnet"
	"github.com/mocbuilders/moc-upload/shared/upload"
)

// frozenBlob is a Blob on a store that accepts connections and never
// answers, as a stopped process or a black-holed proxy behaves.
func frozenBlob(t *testing.T, cfg Config) *Blob {
	t.Helper()
	cfg.Bucket, cfg.Endpoint = "frozen", "http://"+faultnet.Silent(t).String()
	cfg.AccessKeyID, cfg.SecretAccessKey = "key", "secret"
	b, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
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
			err := faultnet.ReturnsWithin(t, 30*time.Second, call)
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
	err := faultnet.ReturnsWithin(t, 30*time.Second, func() error { _, err := b.Head(ctx, "k"); return err })
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
