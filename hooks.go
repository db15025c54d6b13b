package retryhttp

import "net/http"

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

// runBeforeRetry runs the WithBeforeRetry functions on attempt a, a retry
// about to be sent, after every wait (its host's too): they see the request
// as it will go out, and a fresh token they set does not wait for the host.
// It returns why the request stops instead, with the error to report: the
// function's (stopHook) or, when a function sent the retry to another host
// that is held, what admitting it there says.
func (t *Transport) runBeforeRetry(c *call, a *attempt, prev Attempt) (stopReason, error) {
	// The functions may change the next request's Header and URL: give it
	// its own, so no other request sees the changes.
	next := a.out
	if next.Header != nil {
		next.Header = next.Header.Clone()
	} else {
		next.Header = http.Header{} // a request built by hand may have none
	}
	var before hostKey
	if next.URL != nil {
		u := *next.URL
		next.URL = &u
		before = t.hostKey(next)
	}
	for pass := 1; ; pass++ {
		for _, f := range t.beforeRetry {
			if err := f(next, prev); err != nil {
				return stopHook, err
			}
		}
		if next.URL == nil || (t.hosts.n.Load() == 0 && !t.paced()) {
			return stopNone, nil
		}
		key := t.hostKey(next)
		if key == before {
			return stopNone, nil
		}
		// Moved to another host, or another hold scope (a new credential
		// under WithHoldKey): the retry goes to that one's hold and takes
		// a token of that one's adaptive rate, giving back what it took
		// of the first. When it had to wait there, the functions run
		// again, so that they stay the last thing before the send; up to
		// 3 times, for functions that move the request on every run.
		a.release()
		a.giveBackToken()
		held := a.held
		s, err := t.readmit(c, a)
		if s != stopNone || a.held == held || pass == 3 {
			return s, err
		}
		before = key
	}
}
