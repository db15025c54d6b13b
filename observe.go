package retryhttp

import (
	"context"
	"net/http"
	"time"
)

// Attempt describes one attempt that has ended.
type Attempt struct {
	Request  *http.Request  // as sent (a retry's request is a copy of the caller's)
	Number   int            // 1 for the first attempt
	Response *http.Response // nil when Err is set; an observer must not read or close its body
	Err      error
	Duration time.Duration // from sending until the response headers or the error
	Held     time.Duration // how long the attempt waited for its host before it was sent: its quota (a hold), and its adaptive rate (see WithAdaptiveRate)
	// Hedge says the attempt is a hedge: an extra copy of the request, sent
	// while an earlier copy was still waiting for its response (see
	// Hedging). The copies of a hedged attempt that do not decide it are
	// reported too, with Retry false and no Reason: one that was canceled
	// because another copy won has Err ErrHedgeLost.
	Hedge bool
	Retry bool          // another attempt follows
	Wait  time.Duration // the wait before it, when Retry
	// ServerWait says, when Retry, that Wait is what the server asked
	// for (Retry-After, retry-after-ms, or the reset of a spent rate
	// limit), plus a little jitter, rather than the Policy's backoff.
	ServerWait bool
	// Reason says, when Retry, why: the reason label of
	// retryhttp_retries_total ("503", "connect", "reset", "timeout", ...).
	// Otherwise it says why the Transport gave up on a failed attempt
	// (ReasonExhausted, ReasonMethod, ...), and is empty when the attempt
	// succeeded or its status is final (a 404 is not a give-up).
	Reason string
}

// WithObserver calls f after every attempt, in the goroutine of RoundTrip,
// before RoundTrip returns: after a failed attempt that is retried, before
// the wait (Retry is true and Wait says how long); after the last attempt,
// with Reason saying why the Transport gave up, if it did. It may be given
// more than once: every observer is called, in the order given. A request
// that the Transport does not send at all because its host's quota is
// spent (ErrThrottled) is reported as an attempt with that Err, Reason
// "throttled", and no Duration.
//
// When the Transport gives up after an attempt was already reported with
// Retry true (the context ended during the wait, or a WithBeforeRetry
// function failed), no further Attempt is reported: the reason goes to the
// log record and the *Error.
//
// f is called for the attempts of every request and must be safe for
// concurrent use. It must not read or close Attempt.Response.Body, nor
// keep Attempt.Request or Attempt.Response past its return. Without
// observers, the Transport measures no durations.
func WithObserver(f func(Attempt)) Option {
	return optionFunc(func(t *Transport) {
		if f != nil {
			t.observers = append(t.observers, f)
		}
	})
}

type attemptKey struct{}

// AttemptFromContext returns the number of the attempt that a request sent
// by a Transport belongs to, for base RoundTrippers (tracing, headers such
// as AWS's amz-sdk-request: attempt=N): 1 when the context carries none, as
// on every first attempt.
func AttemptFromContext(ctx context.Context) int {
	if n, ok := ctx.Value(attemptKey{}).(int); ok {
		return n
	}
	return 1
}

// observe reports attempt a, which verdict v followed, to the log and the
// observers.
func (t *Transport) observe(c *call, a *attempt, v *verdict) {
	if t.logger != nil {
		switch v.stop {
		case stopNone:
			t.logRetry(c, a, v)
		case stopFinal:
		default:
			t.logGiveUp(c, a.out, a.resp, a.err, v.stop, v)
		}
	}
	if len(t.observers) == 0 {
		return
	}
	r := report(a, v)
	for _, f := range t.observers {
		f(r)
	}
}

// observeCopy reports to the observers a copy of a hedged attempt whose
// outcome does not decide the attempt.
func (t *Transport) observeCopy(a *attempt) {
	r := Attempt{Request: a.sent, Number: a.number, Response: a.resp, Err: a.err, Duration: a.took, Held: a.held, Hedge: a.hedge}
	if r.Request == nil {
		r.Request = a.out
	}
	for _, f := range t.observers {
		f(r)
	}
}
