package retryhttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"
)

// ErrAttemptTimeout is the error, as errors.Is reports it, of an attempt
// that Policy.AttemptTimeout cut off. It is also a net.Error whose Timeout
// method reports true.
var ErrAttemptTimeout = errors.New("retryhttp: attempt timed out")

// attemptTimeoutError is the error of an attempt that its timeout ended.
type attemptTimeoutError struct{ after time.Duration }

func (e *attemptTimeoutError) Error() string {
	return "retryhttp: attempt timed out after " + e.after.String() + " (Policy.AttemptTimeout) before its response headers"
}
func (e *attemptTimeoutError) Timeout() bool        { return true }
func (e *attemptTimeoutError) Temporary() bool      { return true }
func (e *attemptTimeoutError) Is(target error) bool { return target == ErrAttemptTimeout }

// connWatch records, through httptrace, whether an attempt asked for a
// connection and whether one was assigned to it. For a request that is not
// idempotent, an error that says "the connection could not be made" means
// the server never saw it only if no connection was assigned before:
// net/http's HTTP/2 client resends a request on its own after a
// PROTOCOL_ERROR reset, and if that resend finds the server gone, its dial
// error is what comes back. And an attempt timeout means the same only
// when the base said it was waiting for a connection and never got one: a
// base that does not report connections (not net/http) gives no such
// evidence, and its request may have been sent.
//
// Watches are pooled: a request that needs one (see watchesConn) pays only
// for the trace's context and the request's copy that carries it.
type connWatch struct {
	asked, got atomic.Bool
	trace      httptrace.ClientTrace
}

var connWatches = sync.Pool{New: func() any {
	w := new(connWatch)
	w.trace.GetConn = func(string) { w.asked.Store(true) }
	w.trace.GotConn = func(httptrace.GotConnInfo) { w.got.Store(true) }
	return w
}}

// newConnWatch returns a watch for an attempt with ctx, from the pool
// (pooled is then true) unless ctx carries a trace of the caller's:
// httptrace then composes the caller's hooks into the watch's, which makes
// it that request's alone.
func newConnWatch(ctx context.Context) (w *connWatch, pooled bool) {
	if httptrace.ContextClientTrace(ctx) != nil {
		w = connWatches.New().(*connWatch)
		return w, false
	}
	w = connWatches.Get().(*connWatch)
	w.asked.Store(false)
	w.got.Store(false)
	return w, true
}

// unsent reports whether the watch shows that no connection was assigned
// although one was asked for.
func (w *connWatch) unsent() bool { return w.asked.Load() && !w.got.Load() }

// watchesConn reports whether the attempts of req need a connWatch: a
// request that is not idempotent, which net/http may resend on its own
// (it has no body, or a GetBody), or which an attempt timeout may cut off
// before or after its connection was made.
func watchesConn(req *http.Request, p *Policy) bool {
	return !idempotent(req) && (p.AttemptTimeout > 0 || !hasBody(req) || req.GetBody != nil)
}

// sendWatched makes an attempt that needs more than the base's RoundTrip:
// a duration for observers, a connWatch, or the Policy's AttemptTimeout.
//
// The attempt timeout is a timer that cancels the attempt's context, not a
// deadline, so that once the headers are in the caller may read the body
// for as long as the caller's own context allows; the attempt's context is
// released when that body is closed.
func (t *Transport) sendWatched(r *run) (resp *http.Response, err error) {
	var start time.Time
	if t.timed {
		start = time.Now()
	}
	ctx := r.out.Context()
	var watch *connWatch
	pooled := false
	if r.watchConn {
		watch, pooled = newConnWatch(ctx)
		ctx = httptrace.WithClientTrace(ctx, &watch.trace)
	}
	var bound *attemptBound
	if d := r.p.AttemptTimeout; d > 0 {
		ctx, bound = boundAttempt(ctx, d)
	}
	r.sent = r.out
	if ctx != r.out.Context() {
		r.sent = r.out.WithContext(ctx)
	}
	resp, err = checked(t.base.RoundTrip(r.sent))
	if bound != nil {
		resp, err = bound.settle(r.req.Context(), resp, err)
	}
	r.sawConn, r.unsent = false, false
	if watch != nil {
		// The trace's hooks are called only while a connection is being
		// found, which is over when RoundTrip returns: the watch may serve
		// another request now.
		r.sawConn, r.unsent = watch.got.Load(), watch.unsent()
		if pooled {
			connWatches.Put(watch)
		}
	}
	if t.timed {
		r.took = time.Since(start)
	}
	return resp, err
}

// attemptBound is an attempt's timeout: a timer that cancels the attempt's
// context, not a deadline, so that once the headers are in, the caller may
// read the body for as long as the caller's own context allows. Whichever
// comes first, the timer or the base's answer, decides: an answer that
// came in time is never taken for a timeout.
type attemptBound struct {
	timer   *time.Timer
	cancel  context.CancelCauseFunc
	timeout *attemptTimeoutError
	state   atomic.Int32 // boundWaiting, then boundAnswered or boundTimedOut
}

const (
	boundWaiting = iota
	boundAnswered
	boundTimedOut
)

// boundAttempt returns a context for an attempt that must have its response
// headers within d.
func boundAttempt(ctx context.Context, d time.Duration) (context.Context, *attemptBound) {
	b := &attemptBound{timeout: &attemptTimeoutError{after: d}}
	ctx, b.cancel = context.WithCancelCause(ctx)
	b.timer = time.AfterFunc(d, func() {
		if b.state.CompareAndSwap(boundWaiting, boundTimedOut) {
			b.cancel(b.timeout)
		}
	})
	return ctx, b
}

// settle settles what an attempt with a timeout returned: when the timer
// fired before the base answered, the attempt's error is the timeout,
// whatever came back (unless the caller's context ended first); otherwise
// the attempt's context lives on with the response's body, and is released
// when that is closed.
func (b *attemptBound) settle(caller context.Context, resp *http.Response, err error) (*http.Response, error) {
	if b.state.CompareAndSwap(boundWaiting, boundAnswered) { // in time
		b.timer.Stop()
		if resp == nil {
			b.cancel(nil)
			return nil, err
		}
		resp.Body = cancelOnClose(resp.Body, b.cancel)
		return resp, nil
	}
	if resp != nil { // the timer fired: whatever came back is cut off by now
		resp.Body.Close()
	}
	if caller.Err() != nil && err != nil {
		return nil, err // the caller's context ended first: not the attempt's timeout
	}
	return nil, b.timeout
}

// cancelOnClose returns body with cancel called once it is closed. A body
// that is also an io.Writer (a 101 Switching Protocols response) keeps its
// Write method.
func cancelOnClose(body io.ReadCloser, cancel context.CancelCauseFunc) io.ReadCloser {
	c := cancelBody{ReadCloser: body, cancel: cancel}
	if w, ok := body.(io.Writer); ok {
		return &cancelWriteBody{cancelBody: c, w: w}
	}
	return &c
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}

type cancelWriteBody struct {
	cancelBody
	w io.Writer
}

func (b *cancelWriteBody) Write(p []byte) (int, error) { return b.w.Write(p) }
