package retryhttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"
)

// classify returns why an attempt failed, from its response or its error.
func classify(resp *http.Response, err error) failure {
	if err != nil {
		return classifyError(err)
	}
	f := classifyStatus(resp.StatusCode)
	if f.kind == failNone && resp.StatusCode == http.StatusForbidden && throttled(resp) {
		f = failure{kind: failStatus, code: resp.StatusCode} // a rate limit, retried like a 429
	}
	return f
}

// nextRequest returns the request for the next attempt: a copy of this
// attempt's (with the changes WithBeforeRetry functions made to it) that
// carries the next attempt's number in its context, with a fresh copy of
// the body. It fails when the body cannot be sent again: GetBody failed, or
// more of the body was read than the replay buffer holds.
func (r *run) nextRequest() (*http.Request, error) {
	ctx := context.WithValue(r.req.Context(), attemptKey{}, r.attempt+1)
	switch {
	case r.body != nil:
		return r.body.request(r.out, ctx)
	case !hasBody(r.req):
		return r.out.WithContext(ctx), nil
	case r.req.GetBody != nil:
		b, err := r.req.GetBody()
		if err == nil && b == nil {
			err = errors.New("GetBody returned a nil body")
		}
		if err != nil {
			return nil, err
		}
		return withBody(r.out, ctx, b, r.req.GetBody), nil
	}
	return nil, errors.New("the request has a body and no GetBody")
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

// withBody returns a shallow copy of req with ctx and another body, as
// net/http does for its own retries; req itself is left alone.
func withBody(req *http.Request, ctx context.Context, body io.ReadCloser, getBody func() (io.ReadCloser, error)) *http.Request {
	r := req.WithContext(ctx)
	r.Body = body
	r.GetBody = getBody
	return r
}

// maxDrain is how much of a discarded response body is read so that its
// connection can carry the next attempt, and maxDrainTime how long that may
// take. A longer body, or one that does not arrive promptly, is cut off and
// its connection closed instead.
const (
	maxDrain     = 64 << 10
	maxDrainTime = 100 * time.Millisecond
)

// discard drains a bounded part of a response the caller will not see and
// closes it, so its keep-alive connection is reused. The drain runs in a
// goroutine of its own and is given maxDrainTime: a body that stalls is
// closed then (which ends a net/http body's read in progress), and the
// Transport goes on even if the body's Read does not return. A panic in the
// body's Read reaches the caller while the Transport waits for the drain;
// one that comes later ends only the drain.
func discard(resp *http.Response) {
	body := resp.Body
	drained := make(chan any, 1)
	go func() {
		defer func() { drained <- recover() }()
		_, _ = io.CopyN(io.Discard, body, maxDrain)
	}()
	timer := time.NewTimer(maxDrainTime)
	select {
	case p := <-drained:
		timer.Stop()
		if p != nil {
			panic(p)
		}
	case <-timer.C:
	}
	_ = body.Close()
}

// closeBody closes the body of a request that will not be sent, as the
// RoundTripper contract asks.
func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// sleep waits d, or until ctx ends. It returns ctx.Err(), joined with the
// context's cause when that differs, so errors.Is(err, context.Canceled)
// holds either way.
func sleep(ctx context.Context, d time.Duration) error {
	if d > 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
			return nil
		case <-ctx.Done():
		}
	} else if ctx.Err() == nil {
		return nil
	}
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		err = errors.Join(err, cause)
	}
	return err
}
