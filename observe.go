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
	Held     time.Duration // how long the attempt waited for its host's quota before it was sent
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

// WithBeforeRetry calls f after every wait (the backoff, and the hold of the
// retry's host while its quota is spent) immediately before each retry,
// with the request about to be sent: a copy whose Header and URL f may change
// (refresh a token, re-sign, fail over to another host; set next.Host too
// when the request names one), and which already carries its attempt number
// (see AttemptFromContext); the caller's request is never changed. prev is
// the attempt that failed, as observers saw it. f is never called for a
// retry its host refuses (ErrThrottled) before f runs. When f moves the
// request to another host, or to another hold scope (WithHoldKey), that
// one's hold applies: if the retry must wait for it, the functions run
// again after the wait (at most 3 times in all), and if that host refuses,
// the request ends with ErrThrottled although f ran.
//
// An error from f stops the retries: RoundTrip returns an error for which
// errors.Is(err, thatError) holds (the last response was closed when the
// wait began), with Reason "hook", and the retry is not charged to the
// budget. It may be given more than once: the functions run in the order
// given, and the first error stops. f must be safe for concurrent use.
func WithBeforeRetry(f func(next *http.Request, prev Attempt) error) Option {
	return optionFunc(func(t *Transport) {
		if f != nil {
			t.beforeRetry = append(t.beforeRetry, f)
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

// observe reports an attempt that has ended to the log and the observers.
func (t *Transport) observe(r *run, resp *http.Response, err error, s stopReason) {
	if t.logger != nil {
		switch s {
		case stopNone:
			t.logRetry(r, resp, err)
		case stopFinal:
		default:
			t.logGiveUp(r, resp, err, s)
		}
	}
	if len(t.observers) == 0 {
		return
	}
	a := r.report(resp, err, s)
	for _, f := range t.observers {
		f(a)
	}
}

// observeCopy reports to the observers a copy of a hedged attempt whose
// outcome does not decide the attempt.
func (t *Transport) observeCopy(c *hedgeCopy, hedge bool) {
	if len(t.observers) == 0 {
		return
	}
	a := Attempt{Request: c.req, Number: c.number, Response: c.resp, Err: c.err, Duration: c.took, Hedge: hedge}
	for _, f := range t.observers {
		f(a)
	}
}
