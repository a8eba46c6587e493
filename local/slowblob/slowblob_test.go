package slowblob

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A request whose context ends during the delay returns the context's
// error at once, without reaching the store (nil here: reaching it would
// panic).
func TestDelayEndsWithTheContext(t *testing.T) {
	b := Blob{Delay: time.Hour}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := b.ReadHead(ctx, "key", 8)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("ReadHead: %v, want the context's deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadHead waited out its delay although its context had ended")
	}
}
