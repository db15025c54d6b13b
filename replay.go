package retryhttp

import (
	"errors"
	"io"
	"sync"
)

// DefaultReplayBuffer is how many bytes of a request body without GetBody a
// Transport keeps, by default, so that a retry can send them again. See
// [WithReplayBuffer].
const DefaultReplayBuffer = 64 << 10

var (
	errSuperseded    = errors.New("retryhttp: request body read by an attempt that a retry replaced")
	errNotReplayable = errors.New("retryhttp: request body passed the replay buffer and cannot be sent again")
)

// replayBody lets the attempts of one request share a body that has no
// GetBody, without reading it up front. Each attempt reads through its own
// view. What the views read from the source is recorded, while it fits in
// limit bytes, so a later view sends the same bytes again and then goes on
// with the source where the earlier views stopped. Once more than limit
// bytes have been read, the body can no longer be replayed and the request
// is not retried; the attempt in flight still streams the whole body.
//
// A transport may go on reading or closing an attempt's body after
// RoundTrip returned (net/http does, from its write loop). Views are
// therefore numbered: only the newest may read, and an older one gets
// errSuperseded. The source is closed once, when the request is done and no
// attempt holds a view open.
type replayBody struct {
	src   io.ReadCloser
	limit int

	readMu sync.Mutex // held across src.Read, so mu is never held while blocked on src

	mu       sync.Mutex // guards the fields below
	buf      []byte     // the bytes read from src, while a view may need them
	read     int64      // bytes read from src so far
	eof      bool       // src returned io.EOF
	err      error      // src failed otherwise: sticky, and no replay
	overflow bool       // read passed limit: buf is gone
	gen      int        // number of the newest view
	open     bool       // the newest view was not closed yet
	done     bool       // the request is over: the newest view is the last

	closeOnce sync.Once
	closeErr  error
}

func newReplayBody(src io.ReadCloser, limit int) *replayBody {
	return &replayBody{src: src, limit: limit}
}

// view returns a new reader of the whole body and retires the previous one.
// It fails when the body cannot be replayed any more.
func (b *replayBody) view() (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.overflow || b.err != nil || b.done {
		return nil, errNotReplayable
	}
	b.gen++
	b.open = true
	return &bodyView{b: b, gen: b.gen}, nil
}

// replayable reports whether a new view could send the body again.
func (b *replayBody) replayable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.overflow && b.err == nil
}

// finish marks the request as over. The source is closed now, or when the
// attempt that still holds the newest view closes it.
func (b *replayBody) finish() {
	b.mu.Lock()
	b.done = true
	open := b.open
	b.mu.Unlock()
	if !open {
		b.closeSrc()
	}
}

func (b *replayBody) closeSrc() error {
	b.closeOnce.Do(func() { b.closeErr = b.src.Close() })
	return b.closeErr
}

// bodyView is one attempt's reader of a replayBody.
type bodyView struct {
	b      *replayBody
	gen    int
	off    int64 // bytes this view returned
	closed bool  // guarded by b.mu
}

func (v *bodyView) Read(p []byte) (int, error) {
	b := v.b
	for {
		b.mu.Lock()
		if n, err, ok := v.serveLocked(p); ok {
			b.mu.Unlock()
			return n, err
		}
		b.mu.Unlock()

		// This view is at the front: read on from the source. Only one
		// reader at a time; re-check after waiting, since another view may
		// have read while this one waited.
		b.readMu.Lock()
		b.mu.Lock()
		if v.off < b.read || v.gen != b.gen || b.eof || b.err != nil {
			b.mu.Unlock()
			b.readMu.Unlock()
			continue
		}
		b.mu.Unlock()

		n, err := b.src.Read(p)

		b.mu.Lock()
		stale := v.gen != b.gen
		b.record(p[:n], err, !stale)
		if !stale {
			v.off += int64(n)
		}
		b.mu.Unlock()
		b.readMu.Unlock()
		if stale {
			return 0, errSuperseded
		}
		return n, err
	}
}

// serveLocked answers a Read that needs no new bytes from the source. ok is
// false when the view is at the front and must read the source.
func (v *bodyView) serveLocked(p []byte) (n int, err error, ok bool) {
	b := v.b
	switch {
	case v.gen != b.gen:
		return 0, errSuperseded, true
	case v.closed:
		return 0, errors.New("retryhttp: read of a closed request body"), true
	case v.off < b.read:
		if v.off >= int64(len(b.buf)) {
			return 0, errNotReplayable, true // cannot happen while buf holds all that was read
		}
		n = copy(p, b.buf[v.off:])
		v.off += int64(n)
		if b.overflow && v.off == b.read {
			b.buf = nil // caught up: nothing behind it will be read again
		}
		return n, nil, true
	case b.eof:
		return 0, io.EOF, true
	case b.err != nil:
		return 0, b.err, true
	}
	return 0, nil, false
}

// record keeps what the source returned, while it fits in the limit. Past
// the limit the body can no longer be replayed, and the buffer goes, but not
// before the newest view has the bytes: when a superseded view's read (still
// in flight when the retry began) crossed the limit, the newest view, behind
// it, still needs them; they are one Read's worth at most.
func (b *replayBody) record(p []byte, err error, byNewest bool) {
	if b.read+int64(len(p)) > int64(b.limit) {
		b.overflow = true
	}
	switch {
	case !b.overflow:
		b.buf = append(b.buf, p...)
	case byNewest: // the newest view is at the front: it needs nothing kept
		b.buf = nil
	case b.buf != nil:
		b.buf = append(b.buf, p...)
	}
	b.read += int64(len(p))
	if err == io.EOF {
		b.eof = true
	} else if err != nil {
		b.err = err
	}
}

// Close retires the view. Closing the last attempt's view after the request
// is over closes the source.
func (v *bodyView) Close() error {
	b := v.b
	b.mu.Lock()
	if v.closed {
		b.mu.Unlock()
		return nil
	}
	v.closed = true
	current := v.gen == b.gen
	if current {
		b.open = false
	}
	last := current && b.done
	b.mu.Unlock()
	if last {
		return b.closeSrc()
	}
	return nil
}
