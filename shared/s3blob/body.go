package s3blob

import (
	"errors"
	"fmt"
	"io"
)

// errNotRewindable is returned when the SDK wants to resend a part body of
// which bytes were already read. The SDK only retries after a retryable
// failure, so it means the store could not be reached.
var errNotRewindable = errors.New("s3blob: part body was partly sent and cannot be replayed")

// partBody is UploadPart's request body: it reads exactly size bytes of an
// unseekable source and remembers a read error of the source.
//
// It is an io.Seeker only on the surface: seeking moves a virtual position
// and succeeds while nothing has been read, so the SDK learns the length
// (Seek to the end and back) and can retry an attempt that failed before
// sending any byte (connection refused, 503 to Expect: 100-continue). Going
// back after bytes were read fails with errNotRewindable.
type partBody struct {
	src  io.Reader
	size int64
	pos  int64 // position the SDK believes it is at
	read int64 // bytes read from src
	err  error // first failure of src (not io.EOF)
}

func newPartBody(src io.Reader, size int64) *partBody {
	return &partBody{src: src, size: size}
}

func (p *partBody) Read(b []byte) (int, error) {
	if p.pos != p.read {
		return 0, errNotRewindable
	}
	if p.read >= p.size {
		return 0, io.EOF
	}
	if rest := p.size - p.read; int64(len(b)) > rest {
		b = b[:rest]
	}
	n, err := p.src.Read(b)
	p.read += int64(n)
	p.pos = p.read
	switch {
	case err == io.EOF && p.read < p.size:
		err = fmt.Errorf("body ended after %d of %d bytes: %w", p.read, p.size, io.ErrUnexpectedEOF)
		p.err = err
	case err == io.EOF:
		// The last bytes came with EOF.
	case err != nil:
		p.err = err
	case p.read == p.size:
		err = io.EOF
	}
	return n, err
}

func (p *partBody) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = p.pos + offset
	case io.SeekEnd:
		abs = p.size + offset
	default:
		return p.pos, fmt.Errorf("s3blob: seek: invalid whence %d", whence)
	}
	if abs < 0 || abs > p.size {
		return p.pos, fmt.Errorf("s3blob: seek to %d outside 0..%d", abs, p.size)
	}
	if abs < p.read {
		return p.pos, errNotRewindable
	}
	p.pos = abs
	return abs, nil
}

// readErr is the source's failure, if it had one.
func (p *partBody) readErr() error { return p.err }
