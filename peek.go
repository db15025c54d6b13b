package retryhttp

import (
	"errors"
	"io"
	"net/http"
	"slices"
)

// PeekBody returns the first min(n, length of the body) bytes of resp's body
// without consuming them: after it, resp.Body still yields the whole body from
// its first byte, and closing it closes the original. A body shorter than n is
// not an error. For classifiers that read an error code from a body.
//
// PeekBody replaces resp.Body with a reader that serves the peeked bytes
// first; calling it again peeks further without reading anything twice. A
// read error other than io.EOF is returned with the bytes before it, and
// the body yields those bytes and then the same error. Peeking reads up to n
// bytes into memory: keep n to what a classifier needs (an error document's
// first few KiB). A nil Body is an empty one. PeekBody is not safe for use
// concurrently with reads of the body.
func PeekBody(resp *http.Response, n int) ([]byte, error) {
	if resp == nil {
		return nil, errors.New("retryhttp: PeekBody of a nil *http.Response")
	}
	if n < 0 {
		return nil, errors.New("retryhttp: PeekBody of a negative number of bytes")
	}
	if resp.Body == nil {
		resp.Body = http.NoBody
	}
	pb, ok := peekable(resp.Body)
	if !ok {
		pb = &peekedBody{src: resp.Body}
		if w, isWriter := resp.Body.(io.Writer); isWriter {
			resp.Body = peekedWriteBody{pb, w}
		} else {
			resp.Body = pb
		}
	}
	err := pb.fill(n)
	return slices.Clone(pb.buf[pb.off:min(pb.off+n, len(pb.buf))]), err
}

// peekedBody is a response body some of which was read ahead by PeekBody.
type peekedBody struct {
	src    io.ReadCloser
	buf    []byte // read from src ahead of the caller
	off    int    // how much of buf the caller has read
	eof    bool   // src is at its end
	err    error  // src failed while peeking: sticky
	closed bool
}

// peekedWriteBody is a peekedBody whose original is also an io.Writer: the
// body of a 101 Switching Protocols response.
type peekedWriteBody struct {
	*peekedBody
	w io.Writer
}

func (b peekedWriteBody) Write(p []byte) (int, error) { return b.w.Write(p) }

// peekable returns the peekedBody behind body, if it is one.
func peekable(body io.ReadCloser) (*peekedBody, bool) {
	switch b := body.(type) {
	case *peekedBody:
		return b, true
	case peekedWriteBody:
		return b.peekedBody, true
	}
	return nil, false
}

// fill reads from src until n bytes past off are buffered, or src ends.
func (b *peekedBody) fill(n int) error {
	if b.off > 0 { // drop what the caller has read
		b.buf = b.buf[:copy(b.buf, b.buf[b.off:])]
		b.off = 0
	}
	for len(b.buf) < n && !b.eof && b.err == nil {
		if len(b.buf) == cap(b.buf) {
			b.buf = slices.Grow(b.buf, min(n, max(512, 2*cap(b.buf)))-len(b.buf))
		}
		m, err := b.src.Read(b.buf[len(b.buf):min(n, cap(b.buf))])
		b.buf = b.buf[:len(b.buf)+m]
		if err == io.EOF {
			b.eof = true
		} else if err != nil {
			b.err = err
		}
	}
	return b.err
}

func (b *peekedBody) Read(p []byte) (int, error) {
	if b.off < len(b.buf) {
		n := copy(p, b.buf[b.off:])
		b.off += n
		if b.off == len(b.buf) { // all served: let the memory go
			b.buf, b.off = nil, 0
		}
		return n, nil
	}
	switch {
	case b.eof:
		return 0, io.EOF
	case b.err != nil:
		return 0, b.err
	}
	return b.src.Read(p)
}

// Close closes the original body, once.
func (b *peekedBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	return b.src.Close()
}
