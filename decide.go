package retryhttp

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// This file holds every decision to stop a request or go on: decide, after
// each attempt, and decideHold, before an attempt whose host is held. (The
// other ways a request ends are not decisions but events: its context ends
// during a wait, or a WithBeforeRetry function returns an error.)
//
// Five words say what happened, each at its own level:
//   - failure (classify.go): what went wrong with one attempt, by the
//     Transport's own rules;
//   - Decision (classifier.go): what a Classifier said of an attempt;
//   - stopReason (outcome.go): why a request stops, from decide;
//   - Reason (outcome.go): stopReason's name, for Attempt, *Error and logs;
//   - outcome (outcome.go): the coarse label of retryhttp_requests_total.

// verdict is what decide says after an attempt: stop (and why), or retry
// after a wait with the next attempt's request, paid for from the budget.
type verdict struct {
	stop       stopReason    // stopNone: a retry follows
	f          failure       // what went wrong with the attempt
	from       int           // the attempt's number (of the copy that decided a hedged attempt)
	wait       time.Duration // the wait before the retry (or the one that would end too late)
	serverWait bool          // the wait is the server's (Retry-After, ...), not the backoff
	next       *http.Request // the retry's request, with a fresh body
	paid       receipt       // what the retry took from the budget
	bodyErr    error         // why the body cannot be sent again (stopBody)
}

// settled reports whether attempt a needs no verdict beyond stopFinal: it
// got a response below 400, and no Classifier is asked. It is decide's
// shortcut for the common answer, cheap enough to be inlined.
func (t *Transport) settled(a *attempt) bool {
	return a.err == nil && a.resp.StatusCode < 400 && t.classifier == nil
}

// decide says whether and when a request is sent again after attempt a
// (prevWait: the wait before it, for the decorrelated jitter). It asks, in
// order: the Classifier and the Transport's own rules (is this a failure a
// retry may fix?), the context, MaxAttempts and the method (may it be
// retried?), the server and the Policy (how long to wait, within
// MaxRetryAfter and the deadline?), the budget, and the body (can it be
// sent again?).
func (t *Transport) decide(c *call, a *attempt, prevWait time.Duration) verdict {
	f := classify(a.resp, a.err)
	switch {
	case f.kind == failTimeout && f.unsent:
		f.unsent = a.ev.unsent // only on evidence that no connection was assigned
	case f.unsent && a.ev.sawConn:
		f.unsent = false // a connection was assigned before the dial failed: the server may have seen it
	}
	final := false
	if t.classifier != nil {
		d := a.decision
		if !a.judged { // a hedged attempt's copies were judged as they answered
			d = t.classifier(a.sent, a.resp, a.err)
			if t.rate != nil {
				t.paceFrom(a, d)
			}
		}
		f, final = decideWith(d, f, a.resp)
	}
	v := verdict{f: f, from: a.number}
	if v.stop = c.stop(a, f, final); v.stop != stopNone {
		return v
	}
	v.wait, v.serverWait, v.stop = t.nextWait(c, a.resp, prevWait)
	if v.stop != stopNone {
		return v
	}
	if t.budget != nil {
		var ok bool
		if v.paid, ok = t.budget.spend(t.now()); !ok {
			if t.counted {
				t.count(c.ctx, event{kind: EventBudgetRefusal, method: c.method})
			}
			v.stop = stopBudget
			return v
		}
	}
	if v.next, v.bodyErr = c.nextRequest(a); v.bodyErr != nil {
		t.budget.refund(v.paid) // the retry will not be sent
		v.stop = stopBody
	}
	return v
}

// stop returns why the request must end after attempt a failed with f
// (final: a Classifier said DoNotRetry), or stopNone when a retry is
// allowed so far.
func (c *call) stop(a *attempt, f failure, final bool) stopReason {
	ctxErr := c.ctx.Err()
	switch {
	case a.err != nil && ctxErr != nil:
		return ctxStop(ctxErr)
	case final && f.retryable(): // the Classifier stopped what the Transport would retry
		return stopClassifier
	case final || !f.retryable():
		if a.err != nil {
			return stopPermanent
		}
		return stopFinal
	case ctxErr != nil:
		return ctxStop(ctxErr)
	case c.attempts >= c.p.MaxAttempts:
		return stopExhausted
	case !mayRetry(a.out, f):
		return stopMethod
	}
	return stopNone
}

// ctxStop says why a request whose context ended with err stops.
func ctxStop(err error) stopReason {
	if errors.Is(err, context.DeadlineExceeded) {
		return stopDeadlinePassed
	}
	return stopCanceled
}

// nextWait returns the wait before the next attempt: what the response
// asks for (Retry-After, retry-after-ms, or the reset of a spent rate
// limit: see readSignals), plus a little jitter (fromServer is then true),
// or else the Policy's backoff. It stops the request when the server asks
// for more than MaxRetryAfter, or when the wait would not end before the
// context's deadline.
func (t *Transport) nextWait(c *call, resp *http.Response, prevWait time.Duration) (wait time.Duration, fromServer bool, s stopReason) {
	p := c.p
	now := t.now()
	deadline, hasDeadline := c.ctx.Deadline()
	if resp != nil {
		if sig := readSignals(resp.Header, true, now); sig.hasWait {
			if sig.wait > p.MaxRetryAfter {
				return sig.wait, true, stopRetryAfter
			}
			if hasDeadline && !now.Add(sig.wait).Before(deadline) {
				return sig.wait, true, stopDeadline
			}
			return jitteredBefore(sig.wait, p.BaseDelay, t.rand, now, deadline, hasDeadline), true, stopNone
		}
	}
	wait = p.Delay(c.attempts-1, prevWait, t.rand)
	if hasDeadline && !now.Add(wait).Before(deadline) {
		return wait, false, stopDeadline
	}
	return wait, false, stopNone
}

// decideHold says whether an attempt whose host is held until then waits
// for it, and how long (jittered, as a Retry-After wait is), or is not sent
// (stopThrottled, with a *ThrottledError): a request without retries never
// waits, nor one whose wait would pass MaxRetryAfter or its deadline.
func (t *Transport) decideHold(c *call, out *http.Request, until, now time.Time) (time.Duration, stopReason, error) {
	asked := until.Sub(now)
	deadline, hasDeadline := c.ctx.Deadline()
	if c.p.MaxAttempts == 1 || asked > c.p.MaxRetryAfter || (hasDeadline && !until.Before(deadline)) {
		u := out.URL
		return 0, stopThrottled, &ThrottledError{Host: u.Scheme + "://" + u.Host, Until: until}
	}
	return jitteredBefore(asked, c.p.BaseDelay, t.rand, now, deadline, hasDeadline), stopNone, nil
}

// decidePace says whether an attempt that must wait for its host's
// adaptive rate (see WithAdaptiveRate) waits, or is not sent (stopPaced,
// with a *ThrottledError): when the wait would pass MaxRetryAfter or the
// deadline. Unlike a hold, the wait is not jittered (the rate spaces the
// requests out already), and a request without retries waits too: pacing
// is how fast requests go, not a retry.
func (t *Transport) decidePace(c *call, out *http.Request, wait time.Duration, now time.Time) (stopReason, error) {
	until := now.Add(wait)
	if deadline, ok := c.ctx.Deadline(); wait > c.p.MaxRetryAfter || (ok && !until.Before(deadline)) {
		u := out.URL
		return stopPaced, &ThrottledError{Host: u.Scheme + "://" + u.Host, Until: until, Adaptive: true}
	}
	return stopNone, nil
}

// explain says in words why the request stopped, for the log record and
// the *Error: what happened, and what would have allowed a retry.
func (t *Transport) explain(c *call, v *verdict, s stopReason) string {
	switch s {
	case stopMethod:
		return "not retried: " + methodOf(c.req) + " is not idempotent and the server may have seen it; " +
			"an Idempotency-Key header or ContextWithIdempotent allows retries"
	case stopBody:
		var re *replayError
		if errors.As(v.bodyErr, &re) {
			return "not retried: " + re.Error()[len("retryhttp: "):]
		}
		if c.body != nil {
			return "not retried: the request body cannot be sent again: reading it failed: " + v.bodyErr.Error()
		}
		return "not retried: the request body cannot be sent again: GetBody failed: " + v.bodyErr.Error()
	case stopRetryAfter:
		return "not retried: the server asked for a wait above MaxRetryAfter (" + c.p.MaxRetryAfter.String() + ")"
	case stopDeadline:
		return "not retried: the next wait (" + v.wait.Round(time.Millisecond).String() + ") would end after the context's deadline"
	case stopDeadlinePassed:
		return "the context's deadline passed"
	case stopBudget:
		return "not retried: the retry budget is spent (too many retries for the recent requests)"
	case stopClassifier:
		return "not retried: the Classifier said DoNotRetry"
	case stopCanceled:
		return "the context was canceled"
	case stopHook:
		return "not retried: the WithBeforeRetry function failed"
	case stopPaced:
		return "the host's adaptive rate has no room for it before the context's deadline or MaxRetryAfter (" + c.p.MaxRetryAfter.String() + ")"
	case stopThrottled:
		if c.p.MaxAttempts == 1 {
			return "the host's quota is spent, and a request without retries does not wait for it"
		}
		return "the host's quota is spent until after the context's deadline or MaxRetryAfter (" + c.p.MaxRetryAfter.String() + ")"
	case stopExhausted:
		return "exhausted: all the attempts the Policy allows"
	case stopPermanent:
		return "not retried: the error is not one a retry can fix"
	}
	return ""
}
