package retryhttp

import (
	"errors"
	"net/http"
)

// end ends a request, for every way one ends, and says why s:
//   - sent: after attempt a, which the verdict v stopped: the response as
//     it came, or an *Error that unwraps to a's error;
//   - not sent, with no attempt before (its host refused it, or its
//     context ended while it waited for the host): observers see the
//     attempt that was not sent, with cause;
//   - not sent, after attempts that were (the context ended during the
//     wait, a WithBeforeRetry function failed, the retry's host refused
//     it): the last attempt was reported with a retry to follow, so the
//     retry's request is closed, the budget gets the retry back, and only
//     the log says why.
//
// The request is counted once here, its replay buffer finished, and its
// body closed when no attempt took it over.
func (t *Transport) end(c *call, a *attempt, v *verdict, s stopReason, cause error, sent bool) (*http.Response, error) {
	if !sent && c.attempts > 0 { // the retry v paid for, not sent after all
		t.budget.refund(v.paid)
		if b := v.next.Body; b != nil && b != http.NoBody && b != c.req.Body {
			b.Close()
		}
	}
	switch {
	case c.body != nil:
		c.body.finish(a.resp != nil)
	case !sent && c.attempts == 0:
		closeBody(c.req)
	}
	if t.counted {
		t.count(c.ctx, event{kind: EventRequest, method: c.method, stop: s, attempt: c.attempts})
	}
	if a.resp != nil {
		return a.resp, nil
	}
	waiting := false
	switch {
	case sent:
		if s == stopCanceled || s == stopDeadlinePassed {
			if ctxErr := c.ctx.Err(); ctxErr != nil && !errors.Is(cause, ctxErr) {
				cause = errors.Join(cause, ctxErr)
			}
		}
	case c.attempts == 0:
		waiting = s == stopCanceled || s == stopDeadlinePassed
		if t.watched {
			a.err = cause
			t.observe(c, a, &verdict{stop: s})
		}
	default:
		waiting = s == stopCanceled || s == stopDeadlinePassed
		t.logGiveUp(c, a.out, nil, cause, s, v)
	}
	return nil, &Error{Attempts: c.attempts, Err: cause, Waiting: waiting, Reason: s.reason(), detail: t.explain(c, v, s)}
}
