package s3blob

import (
	"bytes"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

func TestReadHead(t *testing.T) {
	b, c, cfg := newBlob(t)
	ctx := t.Context()
	obj := genBytes(5, 1000)
	putSmall(t, b, "head/obj", obj)
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &cfg.Bucket, Key: aws.String("head/empty"), Body: bytes.NewReader(nil)}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key      string
		n        int64
		want     []byte
		wantSize int64
	}{
		{"head/obj", 512, obj[:512], 1000},
		{"head/obj", 1000, obj, 1000},
		{"head/obj", 4096, obj, 1000},
		{"head/obj", 1, obj[:1], 1000},
		{"head/empty", 512, []byte{}, 0},
	} {
		head, size, err := b.ReadHead(ctx, tc.key, tc.n)
		if err != nil {
			t.Fatalf("%s %d: %v", tc.key, tc.n, err)
		}
		if !bytes.Equal(head, tc.want) || size != tc.wantSize {
			t.Errorf("%s %d: %d bytes, size %d; want %d bytes, size %d", tc.key, tc.n, len(head), size, len(tc.want), tc.wantSize)
		}
	}
	if _, _, err := b.ReadHead(ctx, "head/none", 512); !errors.Is(err, upload.ErrNotFound) {
		t.Fatalf("missing object: %v, want ErrNotFound", err)
	}
}

func TestRangeTotal(t *testing.T) {
	for in, want := range map[string]int64{"bytes 0-511/1048576": 1048576, "bytes 0-0/1": 1, "bytes */0": 0} {
		if got, ok := rangeTotal(in); !ok || got != want {
			t.Errorf("rangeTotal(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "bytes 0-511/*", "bytes 0-511"} {
		if _, ok := rangeTotal(in); ok {
			t.Errorf("rangeTotal(%q) ok, want not", in)
		}
	}
}
