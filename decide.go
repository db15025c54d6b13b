package retryhttp

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// decide is the one place that says whether and when a request is sent
// again after an attempt. It returns why the request stops, or stopNone
// with r's step filled in: the wait, and the next attempt's request, paid
// for from the budget. It asks, in order: the Classifier and the
// Transport's own rules (is this a failure a retry may fix?), the context,
// MaxAttempts and the method (may it be retried?), the server and the
// Policy (how long to wait, within MaxRetryAfter and the deadline?), the
// budget, and the body (can it be sent again?).
func (t *Transport) decide(r *run, resp *http.Response, err error) stopReason {
	f := classify(resp, err)
	switch {
	case f.kind == failTimeout && f.unsent:
		f.unsent = r.unsent // only on evidence that no connection was assigned
	case f.unsent && r.sawConn:
		f.unsent = false // a connection was assigned before the dial failed: the server may have seen it
	}
	final := false
	if t.classifier != nil {
		d := r.decision
		if !r.judged { // a hedged attempt's copies were judged as they answered
			d = t.classifier(r.sent, resp, err)
		}
		r.judged = false
		f, final = decideWith(d, f, resp)
	}
	if s := r.stop(f, final, err); s != stopNone {
		return s
	}
	if r.st == nil {
		r.st = new(step)
	}
	r.st.f, r.st.from = f, r.number()
	wait, retryAfter, s := t.nextWait(r, resp)
	r.st.wait, r.st.retryAfter, r.st.paid = wait, retryAfter, receipt{}
	if s != stopNone {
		return s
	}
	if t.budget != nil {
		var ok bool
		if r.st.paid, ok = t.budget.spend(t.now()); !ok {
			t.metrics.refused()
			if t.recorders != nil {
				t.recordOther(EventBudgetRefusal, r.req.Context(), r.method, 0)
			}
			return stopBudget
		}
	}
	if r.st.next, r.st.bodyErr = r.nextRequest(); r.st.bodyErr != nil {
		t.budget.refund(r.st.paid) // the retry will not be sent
		return stopBody
	}
	return stopNone
}

// stop returns why the request must end after an attempt that failed with
// f (final: a Classifier said DoNotRetry), or stopNone when a retry is
// allowed so far.
func (r *run) stop(f failure, final bool, err error) stopReason {
	ctxErr := r.req.Context().Err()
	switch {
	case err != nil && ctxErr != nil:
		return ctxStop(ctxErr)
	case final && f.retryable(): // the Classifier stopped what the Transport would retry
		return stopClassifier
	case final || !f.retryable():
		if err != nil {
			return stopPermanent
		}
		return stopFinal
	case ctxErr != nil:
		return ctxStop(ctxErr)
	case r.attempt >= r.p.MaxAttempts:
		return stopExhausted
	case !mayRetry(r.out, f):
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
func (t *Transport) nextWait(r *run, resp *http.Response) (wait time.Duration, fromServer bool, s stopReason) {
	p := r.p
	now := t.now()
	deadline, hasDeadline := r.req.Context().Deadline()
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
	wait = p.Delay(r.attempt-1, r.st.wait, t.rand)
	if hasDeadline && !now.Add(wait).Before(deadline) {
		return wait, false, stopDeadline
	}
	return wait, false, stopNone
}

// report describes the current attempt, as observers and WithBeforeRetry
// functions see it.
func (r *run) report(resp *http.Response, err error, s stopReason) Attempt {
	a := Attempt{
		Request:  r.sent,
		Number:   r.number(),
		Response: resp,
		Err:      err,
		Duration: r.took,
		Held:     r.held,
		Hedge:    r.shownHedge,
		Retry:    s == stopNone,
	}
	if a.Retry {
		a.Wait, a.ServerWait, a.Reason = r.st.wait, r.st.retryAfter, r.st.f.reason()
	} else {
		a.Reason = s.reason()
	}
	return a
}

// explain says in words why the request stopped, for the log record and
// the *Error: what happened, and what would have allowed a retry.
func (t *Transport) explain(r *run, s stopReason) string {
	switch s {
	case stopMethod:
		return "not retried: " + methodOf(r.req) + " is not idempotent and the server may have seen it; " +
			"an Idempotency-Key header or ContextWithIdempotent allows retries"
	case stopBody:
		var re *replayError
		if errors.As(r.st.bodyErr, &re) {
			return "not retried: " + re.Error()[len("retryhttp: "):]
		}
		if r.body != nil {
			return "not retried: the request body cannot be sent again: reading it failed: " + r.st.bodyErr.Error()
		}
		return "not retried: the request body cannot be sent again: GetBody failed: " + r.st.bodyErr.Error()
	case stopRetryAfter:
		return "not retried: the server asked for a wait above MaxRetryAfter (" + r.p.MaxRetryAfter.String() + ")"
	case stopDeadline:
		return "not retried: the next wait (" + r.st.wait.Round(time.Millisecond).String() + ") would end after the context's deadline"
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
	case stopThrottled:
		if r.p.MaxAttempts == 1 {
			return "the host's quota is spent, and a request without retries does not wait for it"
		}
		return "the host's quota is spent until after the context's deadline or MaxRetryAfter (" + r.p.MaxRetryAfter.String() + ")"
	case stopExhausted:
		return "exhausted: all the attempts the Policy allows"
	case stopPermanent:
		return "not retried: the error is not one a retry can fix"
	}
	return ""
}
