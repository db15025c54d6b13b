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
type attemptTimeoutError struct {
	after  time.Duration
	unsent bool // no connection was ever assigned to the request
}

func (e *attemptTimeoutError) Error() string {
	return "retryhttp: attempt timed out after " + e.after.String() + " (Policy.AttemptTimeout) before its response headers"
}
func (e *attemptTimeoutError) Timeout() bool        { return true }
func (e *attemptTimeoutError) Temporary() bool      { return true }
func (e *attemptTimeoutError) Is(target error) bool { return target == ErrAttemptTimeout }

// sendWithin makes one attempt that must have its response headers within
// d. The bound is a timer that cancels the attempt's context, not a
// deadline, so that once the headers are in the caller may read the body
// for as long as the caller's own context allows; the attempt's context is
// released when that body is closed.
//
// For a request that is not idempotent, whether the server may have seen
// it decides whether it is retried: the attempt watches, through
// httptrace, whether a connection was ever assigned to it.
func (t *Transport) sendWithin(r *run, d time.Duration) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(r.out.Context())
	timeout := &attemptTimeoutError{after: d}
	var gotConn *atomic.Bool
	if !idempotent(r.out) {
		gotConn = new(atomic.Bool)
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			GotConn: func(httptrace.GotConnInfo) { gotConn.Store(true) },
		})
	}
	timer := time.AfterFunc(d, func() { cancel(timeout) })
	r.sent = r.out.WithContext(ctx)
	resp, err := checked(t.base.RoundTrip(r.sent))
	if timer.Stop() { // the headers (or an error) came in time
		if resp == nil {
			cancel(nil)
			return nil, err
		}
		resp.Body = cancelOnClose(resp.Body, cancel)
		return resp, nil
	}
	// The timer fired. Whatever came back is cut off by now.
	if resp != nil {
		resp.Body.Close()
	}
	cancel(timeout)
	if r.req.Context().Err() != nil && err != nil {
		return nil, err // the caller's context ended first: not the attempt's timeout
	}
	timeout.unsent = gotConn != nil && !gotConn.Load()
	return nil, timeout
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
