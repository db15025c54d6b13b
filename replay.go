package retryhttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"sync"
)

// DefaultReplayBuffer is how many bytes of a request body without GetBody a
// Transport keeps, by default, so that a retry can send them again. See
// [WithReplayBuffer].
const DefaultReplayBuffer = 64 << 10

var (
	errSuperseded = errors.New("retryhttp: request body read by an attempt that a retry replaced")
	errBodyClosed = errors.New("retryhttp: read of a closed request body")
	errStalled    = errors.New("retryhttp: the request body made no progress for the attempt timeout, and was closed")
)

// replayError says that a body could not be sent again because more of it
// was read than the replay buffer holds.
type replayError struct{ limit int }

func (e *replayError) Error() string {
	return "retryhttp: the request body passed the replay buffer of " + strconv.Itoa(e.limit) +
		" bytes and cannot be sent again; give the request a GetBody, or raise WithReplayBuffer"
}

// replayBody lets the attempts of one request share a body that has no
// GetBody, without reading it up front. Every reader of the body gets a
// view of its own. What the views read from the source is recorded, while
// it fits in limit bytes, so a later view sends the same bytes again and
// then goes on with the source where the earlier views stopped. Once more
// than limit bytes have been read, a view that is behind can no longer be
// served and fails with a *replayError; the view in front still streams the
// whole body.
//
// Views belong to attempts. attemptView starts an attempt: the views of
// earlier attempts are superseded and get errSuperseded, so that a write
// loop still sending a finished attempt's body (net/http's may go on after
// RoundTrip returned) can never take bytes from the retry. copyView, the
// GetBody a base transport sees, makes another view of the current attempt
// and supersedes nothing: a signing middleware may read a copy before the
// attempt's own body is sent, and net/http's HTTP/2 client resends a
// refused stream with one.
//
// The source is closed exactly once, when the request is over and nothing
// can read it any more: at once when the request ended without a response;
// otherwise when the source was read to its end (the views are then served
// from the buffer), or when every view of the last attempt is done with it:
// closed, read to its end, or dropped. A base may drop a view without
// closing it (net/http does with a GetBody copy it made for a resend that
// found no connection, or when the context ends during its own backoff): a
// dropped view is released when the garbage collector finds it unreachable.
type replayBody struct {
	src   io.ReadCloser
	limit int

	readMu sync.Mutex // held across src.Read, so mu is never held while blocked on src

	mu       sync.Mutex // guards the fields below
	buf      []byte     // the bytes read from src, while they fit (see record)
	read     int64      // bytes read from src so far
	eof      bool       // src returned io.EOF
	err      error      // src failed otherwise: sticky, and no replay
	overflow bool       // read passed limit: views behind buf fail
	gen      int        // the current attempt; its views may read
	open     int        // views of the current attempt not yet released
	done     bool       // the request is over: no new views
	srcDone  bool       // src was closed, or is being closed
}

func newReplayBody(src io.ReadCloser, limit int) *replayBody {
	return &replayBody{src: src, limit: limit}
}

// attemptView starts the next attempt and returns its view of the whole
// body. It fails when the body cannot be sent again.
func (b *replayBody) attemptView() (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.unusableLocked(); err != nil {
		return nil, err
	}
	b.gen++
	b.open = 0
	return b.newViewLocked(), nil
}

// copyView returns another view of the current attempt's body: the
// GetBody of the requests a Transport hands its base.
func (b *replayBody) copyView() (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.unusableLocked(); err != nil {
		return nil, err
	}
	return b.newViewLocked(), nil
}

// newViewLocked makes a view of the current attempt. Its state lives apart
// from the handle the base holds, so that a handle the base drops can be
// noticed: a cleanup releases the state once the handle is unreachable.
func (b *replayBody) newViewLocked() io.ReadCloser {
	b.open++
	s := &viewState{b: b, gen: b.gen}
	v := &bodyView{s: s}
	runtime.AddCleanup(v, (*viewState).dropped, s)
	return v
}

// unusableLocked returns why no new view can read the whole body, or nil.
func (b *replayBody) unusableLocked() error {
	switch {
	case b.done:
		return errors.New("retryhttp: GetBody called after the request ended")
	case b.err != nil:
		return b.err
	case b.overflow:
		return &replayError{limit: b.limit}
	}
	return nil
}

// finish marks the request as over. With a response, the source is closed
// when nothing can read it any more (the transport may still be sending
// the body); without one, every view is retired and the source is closed
// now.
func (b *replayBody) finish(response bool) {
	b.mu.Lock()
	b.done = true
	if !response {
		b.gen++ // retire every view
		b.open = 0
	}
	closeSrc := b.closableLocked()
	b.mu.Unlock()
	if closeSrc {
		_ = b.src.Close()
	}
}

// closableLocked reports whether the source must be closed now, and if so
// marks it closed: the request is over, and no view will read the source
// again, since every view of the last attempt is released or the source
// is at its end.
func (b *replayBody) closableLocked() bool {
	if !b.done || b.srcDone || (b.open > 0 && !b.eof && b.err == nil) {
		return false
	}
	b.srcDone = true
	return true
}

// releaseLocked records that a view is done with the source, and reports
// whether the caller must now close the source.
func (b *replayBody) releaseLocked(s *viewState) (closeSrc bool) {
	if s.released {
		return false
	}
	s.released = true
	if s.gen == b.gen {
		b.open--
	}
	return b.closableLocked()
}

// viewState is one reader's place in a replayBody.
type viewState struct {
	b        *replayBody
	gen      int
	off      int64 // bytes this view returned
	closed   bool  // guarded by b.mu
	released bool  // closed, at its end, or dropped: guarded by b.mu
}

// dropped releases a view whose handle the garbage collector found
// unreachable: nobody will read or close it.
func (s *viewState) dropped() {
	b := s.b
	b.mu.Lock()
	closeSrc := b.releaseLocked(s)
	b.mu.Unlock()
	if closeSrc {
		_ = b.src.Close()
	}
}

// bodyView is the handle of a view, as the base transport holds it.
type bodyView struct{ s *viewState }

func (v *bodyView) Read(p []byte) (int, error) {
	s := v.s
	b := s.b
	for {
		b.mu.Lock()
		if n, err, ok := s.serveLocked(p); ok {
			closeSrc := err != nil && b.releaseLocked(s)
			b.mu.Unlock()
			if closeSrc {
				_ = b.src.Close()
			}
			return n, err
		}
		b.mu.Unlock()

		// This view is at the front: read on from the source. Only one
		// reader at a time; re-check after waiting, since another view may
		// have read while this one waited.
		b.readMu.Lock()
		b.mu.Lock()
		if s.off != b.read || s.gen != b.gen || s.closed || b.eof || b.err != nil || b.srcDone {
			b.mu.Unlock()
			b.readMu.Unlock()
			continue
		}
		b.mu.Unlock()

		n, err := b.src.Read(p)

		b.mu.Lock()
		stale := s.gen != b.gen
		b.record(p[:n], err, stale || b.open > 1)
		if !stale {
			s.off += int64(n)
		}
		closeSrc := false
		if err != nil && !stale {
			closeSrc = b.releaseLocked(s)
		}
		closeSrc = closeSrc || b.closableLocked()
		b.mu.Unlock()
		b.readMu.Unlock()
		if closeSrc {
			_ = b.src.Close()
		}
		runtime.KeepAlive(v)
		if stale {
			return 0, errSuperseded
		}
		return n, err
	}
}

// serveLocked answers a Read that needs no new bytes from the source. ok is
// false when the view is at the front and must read the source.
func (s *viewState) serveLocked(p []byte) (n int, err error, ok bool) {
	b := s.b
	switch {
	case s.gen != b.gen:
		return 0, errSuperseded, true
	case s.closed:
		return 0, errBodyClosed, true
	case s.off < b.read:
		if s.off >= int64(len(b.buf)) {
			return 0, &replayError{limit: b.limit}, true // another view read past the buffer
		}
		n = copy(p, b.buf[s.off:])
		s.off += int64(n)
		if b.overflow && s.off == b.read && b.open == 1 {
			b.buf = nil // the only view caught up: nothing behind it will be read
		}
		return n, nil, true
	case b.eof:
		return 0, io.EOF, true
	case b.err != nil:
		return 0, b.err, true
	case b.srcDone:
		return 0, errBodyClosed, true
	}
	return 0, nil, false
}

// record keeps what the source returned while it fits in the limit. When
// views are behind the reader (copies of the current attempt, or all of
// them when the reader is a superseded attempt's write loop), the Read that
// crosses the limit is kept whole, so that they can still catch up to where
// the source is; after it nothing more is kept, and a view that falls
// behind the buffer fails. The buffer never holds more than the limit plus
// one Read.
func (b *replayBody) record(p []byte, err error, behind bool) {
	if !b.overflow {
		crossing := b.read+int64(len(p)) > int64(b.limit)
		if !crossing || behind {
			b.buf = append(b.buf, p...)
		} else {
			b.buf = nil // nobody will read it again
		}
		b.overflow = crossing
	}
	b.read += int64(len(p))
	if err == io.EOF {
		b.eof = true
	} else if err != nil {
		b.err = err
	}
}

// Close retires the view. Closing the last open view of the last attempt
// after the request is over closes the source.
func (v *bodyView) Close() error {
	s := v.s
	b := s.b
	b.mu.Lock()
	if s.closed {
		b.mu.Unlock()
		return nil
	}
	s.closed = true
	closeSrc := b.releaseLocked(s)
	b.mu.Unlock()
	if closeSrc {
		return b.src.Close()
	}
	return nil
}

// abortSource closes the source while a view's Read of it may be in
// progress, when that Read stalled past an attempt's timeout: the request
// cannot go on without it. The source counts as closed from then on.
func (v *bodyView) abortSource() {
	b := v.s.b
	b.mu.Lock()
	closeSrc := !b.srcDone
	b.srcDone = true
	if b.err == nil && !b.eof {
		b.err = errStalled
	}
	b.mu.Unlock()
	if closeSrc {
		_ = b.src.Close()
	}
}

// request returns a copy of req with ctx for the next attempt, reading the
// body through a new view. Its GetBody makes more views of the same
// attempt, for the base transport's own resends and for middlewares that
// read a copy, but only when req is idempotent: net/http's HTTP/2 client
// resends a request through GetBody after a PROTOCOL_ERROR reset too, when
// the server may have processed it, so a request that is not idempotent
// gets none, as it has none without retryhttp. Nor does a body whose
// declared length is above the replay buffer: a copy of it could not be
// read whole without taking the body from the attempt (a signing
// middleware that reads a copy first would break the attempt), so the base
// sees no GetBody, as without retryhttp.
func (b *replayBody) request(req *http.Request, ctx context.Context) (*http.Request, error) {
	v, err := b.attemptView()
	if err != nil {
		return nil, err
	}
	var getBody func() (io.ReadCloser, error)
	if idempotent(req) && req.ContentLength <= int64(b.limit) {
		getBody = b.copyView
	}
	return withBody(req, ctx, v, getBody), nil
}
