package retryhttp

import (
	"errors"
	"net/http"
	"net/http/httptrace"
)

// send sends one attempt, or one copy of a hedged attempt, through the
// pipeline: layers, each a method that does its part around the next one.
// From the top:
//
//	sendHedged  races copies of a slow attempt (hedging.go), with WithHedging
//	sendToHost  the host's quota learns from each answer (gate.go)
//	sendTimed   how long the attempt took, for observers and the adaptive hedge delay
//	sendWire    the base, within the attempt timeout, watching the connections
//
// A layer fills in its part of the attempt (the response, the error, the
// time it took, ...) and never stops a request: the verdicts are decide's.
// The layers call each other directly, not through an interface: a call
// and an attempt live on RoundTrip's stack, and an interface call would
// move them to the heap.
func (t *Transport) send(c *call, a *attempt) {
	if t.plain && c.watch == watchNone && c.p.AttemptTimeout <= 0 {
		// The common case: no hedging, no timing, no watch, no timeout.
		a.sent = a.out
		a.resp, a.err = t.base.RoundTrip(a.out)
		if a.err != nil || a.resp == nil || a.resp.Body == nil {
			a.resp, a.err = checked(a.resp, a.err)
		}
		t.learn(a)
		return
	}
	if t.hedge != nil {
		t.sendHedged(c, a)
		return
	}
	t.sendToHost(c, a)
}

// sendTimed measures how long an attempt took, with the Transport's clock,
// when observers or the adaptive hedge delay want it.
func (t *Transport) sendTimed(c *call, a *attempt) {
	if !t.timed {
		t.sendWire(c, a)
		return
	}
	start := t.now()
	t.sendWire(c, a)
	a.took = t.now().Sub(start)
}

// sendWire sends an attempt through the base: with a connWatch when the
// call asks for one (evidence that it was not sent, or net/http's resends
// to count), and within the Policy's AttemptTimeout. It holds the base to
// the RoundTripper contract: a response and no error, or an error and no
// response; a response's nil Body is an empty one, as http.Client treats
// it.
func (t *Transport) sendWire(c *call, a *attempt) {
	if c.watch == watchNone && c.p.AttemptTimeout <= 0 {
		a.sent = a.out
		a.resp, a.err = checked(t.base.RoundTrip(a.out))
		return
	}
	t.sendWatched(c, a)
}

// sendWatched sends an attempt that needs a connWatch or a timeout. The attempt
// timeout is a timer that cancels the attempt's context, not a deadline, so
// that once the headers are in the caller may read the body for as long as
// the caller's own context allows; the attempt's context is released when
// that body is closed.
func (t *Transport) sendWatched(c *call, a *attempt) {
	ctx := a.out.Context()
	var w *connWatch
	pooled := false
	if c.watch != watchNone {
		w, pooled = newConnWatch(ctx, c.watch)
		ctx = httptrace.WithClientTrace(ctx, &w.trace)
	}
	var bound *attemptBound
	if c.p.AttemptTimeout > 0 {
		ctx, bound = boundAttempt(ctx, c.p.AttemptTimeout)
	}
	a.sent = a.out
	if ctx != a.out.Context() {
		a.sent = a.out.WithContext(ctx)
	}
	if bound != nil {
		bound.watchBody(a.sent)
	}
	a.resp, a.err = checked(t.base.RoundTrip(a.sent))
	if bound != nil {
		a.resp, a.err = bound.settle(c.ctx, a.resp, a.err)
	}
	if w != nil {
		// The trace's hooks are called only while a connection is being
		// found, which is over when RoundTrip returns: the watch may serve
		// another request now.
		conns, unsent := w.seen()
		a.ev = connEvidence{sawConn: conns != 0, unsent: unsent}
		if t.counted {
			t.countResends(c, a.number, conns)
		}
		if pooled {
			connWatches.Put(w)
		}
	}
}

// connEvidence is what an attempt's connWatch saw.
type connEvidence struct {
	sawConn bool // a connection was assigned to the attempt
	unsent  bool // one was asked for, and none was assigned
}

// checked holds what a base returned to the RoundTripper contract.
func checked(resp *http.Response, err error) (*http.Response, error) {
	switch {
	case err == nil && resp == nil:
		return nil, errors.New("retryhttp: base RoundTripper returned a nil response and a nil error")
	case err != nil && resp != nil:
		if resp.Body != nil {
			resp.Body.Close() // as http.Client does: the error wins
		}
		return nil, err
	case resp != nil && resp.Body == nil:
		resp.Body = http.NoBody
	}
	return resp, err
}
