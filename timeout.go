package retryhttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ErrAttemptTimeout is the error, as errors.Is reports it, of an attempt
// that Policy.AttemptTimeout cut off. It is also a net.Error whose Timeout
// method reports true.
var ErrAttemptTimeout = errors.New("retryhttp: attempt timed out")

// attemptTimeoutError is the error of an attempt that its timeout ended:
// stalled while its body was being sent, or else while it connected or
// waited for the response headers.
type attemptTimeoutError struct {
	after   time.Duration
	stalled bool
}

func (e *attemptTimeoutError) Error() string {
	if e.stalled {
		return "retryhttp: attempt timed out: its request body made no progress for " + e.after.String() + " (Policy.AttemptTimeout)"
	}
	return "retryhttp: attempt timed out after " + e.after.String() + " (Policy.AttemptTimeout) before its response headers"
}
func (e *attemptTimeoutError) Timeout() bool        { return true }
func (e *attemptTimeoutError) Temporary() bool      { return true }
func (e *attemptTimeoutError) Is(target error) bool { return target == ErrAttemptTimeout }

// attemptBound is an attempt's timeout: a timer that cancels the attempt's
// context, not a deadline, so that once the headers are in, the caller may
// read the body for as long as the caller's own context allows. Whichever
// comes first, the timer or the base's answer, decides: an answer that
// came in time is never taken for a timeout.
//
// The timer bounds the time without progress, not the attempt's: it runs
// from the start (connecting, sending the headers), and while a request
// body is being sent it starts again with every read of the body, so that
// only a stall (no bytes taken for the timeout) ends a slow upload that
// goes on; once the body has been read to its end, it bounds the wait for
// the response headers.
type attemptBound struct {
	timer   *time.Timer
	cancel  context.CancelCauseFunc
	d       time.Duration
	timeout *attemptTimeoutError         // set by the timer before it wins the state
	state   atomic.Int32                 // boundWaiting, then boundAnswered or boundTimedOut
	last    atomic.Int64                 // when there was last progress, in monotonic nanoseconds
	sending atomic.Bool                  // the body is being sent: no progress is then a stall
	reading atomic.Pointer[progressBody] // the body whose Read is in progress, if any
}

const (
	boundWaiting = iota
	boundAnswered
	boundTimedOut
)

// monotonic is the origin of the attempt bounds' monotonic clock. The
// bound reads the runtime's clock, not the Transport's seam (t.now): its
// timer is a runtime timer, which a fake clock cannot move, and a stall is
// measured against that timer.
var monotonic = time.Now()

func sinceMonotonic() int64 { return int64(time.Since(monotonic)) }

// boundAttempt returns a context for an attempt that must make progress
// within d: connect, send its body, and have its response headers.
func boundAttempt(ctx context.Context, d time.Duration) (context.Context, *attemptBound) {
	b := &attemptBound{d: d}
	b.last.Store(sinceMonotonic())
	ctx, b.cancel = context.WithCancelCause(ctx)
	b.timer = time.AfterFunc(d, b.check)
	return ctx, b
}

// check runs when the timer fires: it ends the attempt if nothing moved
// for d, or else waits for the rest of d since the last progress.
func (b *attemptBound) check() {
	if idle := time.Duration(sinceMonotonic() - b.last.Load()); idle < b.d {
		b.timer.Reset(b.d - idle)
		return
	}
	if b.state.Load() != boundWaiting {
		return
	}
	b.timeout = &attemptTimeoutError{after: b.d, stalled: b.sending.Load()}
	if b.state.CompareAndSwap(boundWaiting, boundTimedOut) {
		b.cancel(b.timeout)
		if p := b.reading.Load(); p != nil {
			// The body's own source stalled, inside a Read that the
			// transport waits for whatever its context says (net/http's
			// HTTP/1 client waits for its write loop): close the body to
			// end it.
			p.abort()
		}
	}
}

// watchBody makes req's body, and the copies its GetBody makes, count
// their reads as the attempt's progress. req is the attempt's own copy.
func (b *attemptBound) watchBody(req *http.Request) {
	if !hasBody(req) {
		return
	}
	req.Body = &progressBody{ReadCloser: req.Body, b: b}
	if getBody := req.GetBody; getBody != nil {
		req.GetBody = func() (io.ReadCloser, error) {
			body, err := getBody()
			if err != nil || body == nil || body == http.NoBody {
				return body, err
			}
			return &progressBody{ReadCloser: body, b: b}, nil
		}
	}
}

// progressBody is a request body whose reads are an attempt's progress.
type progressBody struct {
	io.ReadCloser
	b    *attemptBound
	once sync.Once
}

func (p *progressBody) Read(buf []byte) (int, error) {
	p.b.sending.Store(true)
	p.b.reading.Store(p)
	n, err := p.ReadCloser.Read(buf)
	p.b.reading.CompareAndSwap(p, nil)
	if n > 0 || err != nil {
		p.b.last.Store(sinceMonotonic())
	}
	if err != nil { // the body is sent: the wait for the headers starts
		p.b.sending.Store(false)
	}
	return n, err
}

// Close closes the body once: the attempt's timeout may have closed it
// already.
func (p *progressBody) Close() error {
	var err error
	p.once.Do(func() { err = p.ReadCloser.Close() })
	return err
}

// abort ends a Read of the body that its source does not end: the source
// is closed (a replay buffer's, whose views share it), then the body.
func (p *progressBody) abort() {
	if a, ok := p.ReadCloser.(interface{ abortSource() }); ok {
		a.abortSource()
	}
	_ = p.Close()
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
