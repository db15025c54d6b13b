package retryhttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"
)

// attempt is one attempt of a request (or one copy of a hedged attempt):
// what it sends, what it got, and what was learned while it went. The loop
// in roundTrip makes one per attempt and hands it down the pipeline; each
// layer fills in its part.
type attempt struct {
	number int           // 1 for the first attempt; a hedged attempt's copies count on from it
	out    *http.Request // the attempt's request, as the gate readied it
	sent   *http.Request // what the base got: out, or a copy with the attempt's context
	hedge  bool          // a hedge: an extra copy, sent while an earlier one waited

	host     *hostState    // its host's quota, when the host has one
	admitted bool          // it counts among its host's requests in flight
	held     time.Duration // how long it waited for its host (its hold, its adaptive rate)
	rate     *rateState    // its host's adaptive rate, when it took a token of it
	rateGen  uint32        // the rate's gen when it did

	resp *http.Response
	err  error
	took time.Duration // from sending until the response headers or the error, when timed
	ev   connEvidence  // what its connWatch saw

	judged   bool     // the Classifier was asked about resp or err already (a hedge's copy, as it answered)
	decision Decision // and what it said

	others []attempt // the other copies of a hedged attempt, which do not decide it
}

// release gives back the attempt's place among its host's requests in
// flight: it was not sent after all, or its answer taught the host
// nothing.
func (a *attempt) release() {
	if a.admitted {
		a.host.answered(true, nil, time.Time{}, time.Time{})
		a.admitted = false
	}
}

// giveBackToken gives back the token of its host's adaptive rate that the
// attempt took: it was not sent after all.
func (a *attempt) giveBackToken() {
	if a.rate != nil {
		a.rate.giveBack()
		a.rate = nil
	}
}

// report describes attempt a, with the verdict that followed it, as
// observers and WithBeforeRetry functions see it.
func report(a *attempt, v *verdict) Attempt {
	r := Attempt{
		Request:  a.sent,
		Number:   a.number,
		Response: a.resp,
		Err:      a.err,
		Duration: a.took,
		Held:     a.held,
		Hedge:    a.hedge,
		Retry:    v.stop == stopNone,
	}
	if r.Request == nil { // not sent: its host refused it
		r.Request = a.out
	}
	if r.Retry {
		r.Wait, r.ServerWait, r.Reason = v.wait, v.serverWait, v.f.reason()
	} else {
		r.Reason = v.stop.reason()
	}
	return r
}

// nextRequest returns the request for the next attempt: a copy of this
// attempt's (with the changes WithBeforeRetry functions made to it) that
// carries the next attempt's number in its context, with a fresh copy of
// the body. It fails when the body cannot be sent again: GetBody failed, or
// more of the body was read than the replay buffer holds.
func (c *call) nextRequest(a *attempt) (*http.Request, error) {
	ctx := context.WithValue(c.ctx, attemptKey{}, c.attempts+1)
	switch {
	case c.body != nil:
		return c.body.request(a.out, ctx)
	case !hasBody(c.req):
		return a.out.WithContext(ctx), nil
	case c.req.GetBody != nil:
		b, err := c.req.GetBody()
		if err == nil && b == nil {
			err = errors.New("GetBody returned a nil body")
		}
		if err != nil {
			return nil, err
		}
		return withBody(a.out, ctx, b, c.req.GetBody), nil
	}
	return nil, errors.New("the request has a body and no GetBody")
}

// withBody returns a shallow copy of req with ctx and another body, as
// net/http does for its own retries; req itself is left alone.
func withBody(req *http.Request, ctx context.Context, body io.ReadCloser, getBody func() (io.ReadCloser, error)) *http.Request {
	r := req.WithContext(ctx)
	r.Body = body
	r.GetBody = getBody
	return r
}
