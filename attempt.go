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
	return classifyStatus(resp.StatusCode)
}

// result is what RoundTrip returns when it stops after attempt: the response
// unchanged, or an *Error around err.
func result(ctx context.Context, resp *http.Response, err error, attempt int, o outcome) (*http.Response, error) {
	if resp != nil {
		return resp, nil
	}
	if o == outcomeCanceled {
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = errors.Join(err, ctxErr)
		}
	}
	return nil, &Error{Attempts: attempt, Err: err}
}

// nextRequest returns the request for the next attempt, with a fresh copy
// of the body. A request without a body is sent again as it is. It returns
// outcomeNotRetryable when the body cannot be sent again: GetBody failed,
// or the replay buffer overflowed.
func nextRequest(req *http.Request, body *replayBody) (next *http.Request, o outcome) {
	switch {
	case body != nil:
		v, err := body.view()
		if err != nil {
			return nil, outcomeNotRetryable
		}
		return withBody(req, v, body.view), outcomeNone
	case !hasBody(req):
		return req, outcomeNone
	case req.GetBody != nil:
		b, err := req.GetBody()
		if err != nil || b == nil {
			return nil, outcomeNotRetryable
		}
		return withBody(req, b, req.GetBody), outcomeNone
	}
	return nil, outcomeNotRetryable
}

// withBody returns a shallow copy of req with another body, as net/http does
// for its own retries; req itself is left alone.
func withBody(req *http.Request, body io.ReadCloser, getBody func() (io.ReadCloser, error)) *http.Request {
	r := new(http.Request)
	*r = *req
	r.Body = body
	r.GetBody = getBody
	return r
}

// maxDrain is how much of a discarded response body is read so that its
// connection can carry the next attempt. A longer body is cut off, and its
// connection closed instead.
const maxDrain = 64 << 10

// discard drains a bounded part of a response the caller will not see and
// closes it, so its keep-alive connection is reused.
func discard(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
	_ = resp.Body.Close()
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
