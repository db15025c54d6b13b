package retryhttp

import (
	"context"
	"net/http"
)

// call is one RoundTrip: the caller's request, its Policy, and what lasts
// from one attempt to the next. Each attempt has an attempt value of its
// own; the loop in roundTrip owns the count of attempts sent. A call lives
// on RoundTrip's stack, and the layers of the pipeline only read it (the
// copies of a hedged attempt are sent from several goroutines at once).
type call struct {
	req      *http.Request   // the caller's, never changed
	ctx      context.Context // req.Context()
	p        *Policy
	method   int         // the method's index, for metric labels
	body     *replayBody // the replay buffer, for a body without GetBody; nil otherwise
	watch    watchKind   // what the attempts watch their connections for (see connWatch)
	hedge    bool        // the request may be hedged (see mayHedge)
	noHedge  bool        // a response asked for a wait: no more hedges
	attempts int         // attempts sent so far, every copy of a hedged attempt included
}

// roundTrip runs the attempts of req under p, in this order, until a
// verdict stops them:
//
//	gate:   admit the attempt to its host (wait while it is held), and,
//	        for a retry, run the WithBeforeRetry functions;
//	send:   the pipeline (hedging, host bookkeeping, timing, the wire);
//	decide: retry or stop, and how long to wait (decide.go);
//	report: count and observe the attempt (and a hedged attempt's other
//	        copies);
//	wait:   then the next attempt, or end (end.go).
func (t *Transport) roundTrip(req *http.Request, p *Policy) (*http.Response, error) {
	c := call{req: req, ctx: req.Context(), p: p, method: methodIndex(req.Method)}
	switch {
	case !idempotentIndex(c.method) && watchesConn(req, p):
		c.watch = watchEvidence
	case t.counted:
		c.watch = watchCount
	}
	c.hedge = t.hedge != nil && hedgeable(req, p)
	out := req
	if p.MaxAttempts > 1 && hasBody(req) && req.GetBody == nil {
		c.body = newReplayBody(req.Body, t.replayLimit)
		out, _ = c.body.request(req, c.ctx) // a fresh replayBody always gives its first view
	}
	if t.budget != nil {
		t.budget.earn(t.now)
	}
	var (
		v    verdict  // the last attempt's: the wait and the request of the retry
		prev *Attempt // the attempt a retry follows, for the WithBeforeRetry functions (only then)
	)
	for {
		a := attempt{number: c.attempts + 1, out: out}
		if t.hosts.n.Load() != 0 || c.attempts > 0 || t.paced() { // a host is held, announced its quota or has a rate awake, or a retry
			if s, err := t.gate(&c, &a, prev); s != stopNone {
				return t.end(&c, &a, &v, s, err, false)
			}
		}
		if a.admitted || c.attempts > 0 {
			t.sendAdmitted(&c, &a, &v)
		} else {
			t.send(&c, &a)
		}
		if a.resp != nil && a.resp.Request != req {
			a.resp.Request = req // what a base (a tracing one, say) set it to may be its own copy
		}
		c.attempts += 1 + len(a.others)
		if a.others != nil {
			t.reportOthers(&c, a.others)
		}
		if t.counted {
			t.count(c.ctx, event{kind: EventAttempt, method: c.method, attempt: a.number, resp: a.resp})
		}
		if t.settled(&a) {
			v.stop = stopFinal // v's other fields are the last retry's: nothing reads them once stopped
		} else {
			v = t.decide(&c, &a, v.wait)
		}
		if t.watched {
			t.observe(&c, &a, &v)
		}
		if v.stop != stopNone {
			if a.resp != nil && c.body == nil && !t.counted {
				return a.resp, nil // the common end: nothing to count, finish or close
			}
			return t.end(&c, &a, &v, v.stop, a.err, true)
		}
		if len(t.beforeRetry) != 0 {
			r := report(&a, &v)
			prev = &r
		}
		if a.resp != nil {
			discard(a.resp)
		}
		if err := t.sleep(c.ctx, v.wait); err != nil {
			a = attempt{number: c.attempts + 1, out: v.next}
			return t.end(&c, &a, &v, ctxStop(c.ctx.Err()), err, false)
		}
		out = v.next
	}
}

// gate readies attempt a to be sent: admitted to its host (see admit),
// then given a token of the host's adaptive rate (see pace), and, for a retry, seen by the WithBeforeRetry functions after every wait,
// its host's included. It returns why the attempt is not sent instead. An
// attempt that is not sent gives its place among the host's requests in
// flight back, and so does one whose hook panics.
func (t *Transport) gate(c *call, a *attempt, prev *Attempt) (s stopReason, err error) {
	if s, err = t.readmit(c, a); s != stopNone {
		return s, err
	}
	if c.attempts > 0 && len(t.beforeRetry) != 0 {
		ran := false
		defer func() {
			if !ran || s != stopNone {
				a.release()
				a.giveBackToken()
			}
		}()
		s, err = t.runBeforeRetry(c, a, *prev)
		ran = true
	}
	return s, err
}

// readmit admits attempt a to its host's hold (see admit), then has it
// take a token of the host's adaptive rate (see pace), as far as either is
// in use. It returns why the attempt is not sent instead, and then holds
// neither a place at the host nor a token.
func (t *Transport) readmit(c *call, a *attempt) (s stopReason, err error) {
	if t.hosts.n.Load() != 0 {
		if s, err = t.admit(c, a); s != stopNone {
			return s, err
		}
	}
	if t.paced() {
		if s, err = t.pace(c, a); s != stopNone {
			a.release() // its place at a held host: it is not sent
		}
	}
	return s, err
}

// sendAdmitted sends attempt a, a retry or one admitted to its host: a
// retry counts once it is about to be sent, and a panic (of the base, of a
// recorder) gives a's place among its host's requests in flight back, or
// the host's quota would count it for good.
func (t *Transport) sendAdmitted(c *call, a *attempt, v *verdict) {
	defer a.release() // a no-op once the host layer has learned from the answer
	if c.attempts > 0 && t.counted {
		t.count(c.ctx, event{kind: EventRetry, method: c.method, attempt: v.from, f: v.f, wait: v.wait, serverWait: v.serverWait})
	}
	t.send(c, a)
}

// reportOthers counts and reports the copies of a hedged attempt that did
// not decide it: the losers of the race, or the copies that failed before
// the one whose failure decides.
func (t *Transport) reportOthers(c *call, others []attempt) {
	for i := range others {
		o := &others[i]
		if t.counted {
			t.count(c.ctx, event{kind: EventAttempt, method: c.method, attempt: o.number, resp: o.resp})
		}
		if len(t.observers) != 0 {
			t.observeCopy(o)
		}
	}
}
