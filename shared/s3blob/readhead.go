package s3blob

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// ReadHead returns up to n first bytes of key and the object's size, from
// one ranged GET: the answer's Content-Range ("bytes 0-511/1048576")
// carries the size, so no HeadObject is needed. An empty object has no
// byte to range over; S3 answers InvalidRange, and a HeadObject tells its
// size.
func (b *Blob) ReadHead(ctx context.Context, key string, n int64) ([]byte, int64, error) {
	if n <= 0 {
		return nil, 0, fmt.Errorf("s3: read the head of %s: invalid length %d", key, n)
	}
	ctx, cancel := b.bound(ctx, b.cfg.OperationTimeout)
	defer cancel()
	out, err := b.api.GetObject(ctx, &s3.GetObjectInput{
		Bucket: &b.cfg.Bucket,
		Key:    &key,
		Range:  aws.String(fmt.Sprintf("bytes=0-%d", n-1)),
	})
	if err != nil {
		if apiCode(err) == "InvalidRange" {
			size, err := b.Head(ctx, key)
			return []byte{}, size, err
		}
		return nil, 0, wrap(err, "s3: read the head of %s", key)
	}
	defer out.Body.Close()
	size, ok := rangeTotal(aws.ToString(out.ContentRange))
	if !ok {
		// A store that ignored the Range sends the whole object.
		size = aws.ToInt64(out.ContentLength)
	}
	head, err := io.ReadAll(io.LimitReader(out.Body, n))
	if err != nil {
		return nil, 0, wrap(err, "s3: read the head of %s", key)
	}
	return head, size, nil
}

// rangeTotal is the complete length in a Content-Range header
// ("bytes 0-511/1048576" → 1048576); false when there is none.
func rangeTotal(contentRange string) (int64, bool) {
	_, total, ok := strings.Cut(contentRange, "/")
	if !ok {
		return 0, false
	}
	size, err := strconv.ParseInt(total, 10, 64)
	return size, err == nil && size >= 0
}
