package retryhttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
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

// connWatch records, through httptrace, whether a connection was ever
// assigned to an attempt. For a request that is not idempotent, an error
// that says "the connection could not be made" (a refused dial, a timeout
// while waiting for a connection) means the server never saw it only if
// no connection was assigned before: net/http's HTTP/2 client resends a
// request on its own after a PROTOCOL_ERROR reset, and if that resend finds
// the server gone, its dial error is what comes back.
type connWatch struct {
	got   atomic.Bool
	trace httptrace.ClientTrace
}

func (w *connWatch) gotConn(httptrace.GotConnInfo) { w.got.Store(true) }

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
	if r.watchConn {
		watch = new(connWatch)
		watch.trace.GotConn = watch.gotConn
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
	r.sawConn = watch != nil && watch.got.Load()
	if t.timed {
		r.took = time.Since(start)
	}
	return resp, err
}

// attemptBound is an attempt's timeout: a timer that cancels the attempt's
// context, not a deadline, so that once the headers are in, the caller may
// read the body for as long as the caller's own context allows.
type attemptBound struct {
	timer   *time.Timer
	cancel  context.CancelCauseFunc
	timeout *attemptTimeoutError
}

// boundAttempt returns a context for an attempt that must have its response
// headers within d.
func boundAttempt(ctx context.Context, d time.Duration) (context.Context, *attemptBound) {
	b := &attemptBound{timeout: &attemptTimeoutError{after: d}}
	ctx, b.cancel = context.WithCancelCause(ctx)
	b.timer = time.AfterFunc(d, func() { b.cancel(b.timeout) })
	return ctx, b
}

// settle settles what an attempt with a timeout returned: when the timer
// fired before the headers came, the attempt's error is the timeout,
// whatever came back (unless the caller's context ended first); otherwise
// the attempt's context lives on with the response's body, and is released
// when that is closed.
func (b *attemptBound) settle(caller context.Context, resp *http.Response, err error) (*http.Response, error) {
	if b.timer.Stop() { // the headers (or an error) came in time
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
	b.cancel(b.timeout)
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
