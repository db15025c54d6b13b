package retryhttp

import (
	"net/http"
	"strconv"
)

// Decision is what a Classifier says about one attempt's outcome.
type Decision int

const (
	UseDefault Decision = iota // the Transport's own rules decide
	Retry                      // retry this attempt's outcome, as far as the method, the body, the Policy and the budget allow
	DoNotRetry                 // return this response (or error) now
	// Throttled retries this attempt's outcome as Retry does, and takes it
	// for the host throttling: with WithAdaptiveRate, the host's rate is
	// cut, as for a bare 429 (a response or an error alike). For an API that throttles with a status of its
	// own (a 400 ThrottlingException, say). Without WithAdaptiveRate, it
	// is Retry.
	Throttled
)

var decisionNames = [...]string{UseDefault: "UseDefault", Retry: "Retry", DoNotRetry: "DoNotRetry", Throttled: "Throttled"}

// String returns "UseDefault", "Retry", "DoNotRetry" or "Throttled".
func (d Decision) String() string {
	if d < 0 || int(d) >= len(decisionNames) {
		return "Decision(" + strconv.Itoa(int(d)) + ")"
	}
	return decisionNames[d]
}

// A Classifier sees each attempt's outcome before the Transport's own rules;
// req is the request as sent for that attempt. It adds an API's own rules
// to the Transport's: S3's "400 RequestTimeout", a GitHub secondary rate
// limit (403 with Retry-After), a 409 an API documents as transient, or a
// 200 whose body carries an error (read it with PeekBody, which leaves the
// body whole for the caller).
//
// Retry never overrides safety: a request that is not idempotent is still
// not sent again once the server may have seen it, a body that cannot be
// replayed is still not retried, and MaxAttempts, the context's deadline,
// MaxRetryAfter and the budget still apply. A retry a Classifier asked for
// carries the reason its status or error would have ("409", "200",
// "reset"; "error" for an error the Transport never retries), so metric
// labels stay bounded. DoNotRetry returns the response, or the error, at
// once; a failure it stops gives up with Reason "classifier".
//
// A Classifier is called at most once per attempt, in the goroutine of
// RoundTrip, or for the response of a hedge (see Hedging) in the hedge's
// own goroutine, and must be safe for concurrent use by the goroutines that
// share the Transport. It must not close the response body; reading it is
// fine through PeekBody. A panic in a Classifier propagates out of
// RoundTrip, wherever it was called.
type Classifier func(req *http.Request, resp *http.Response, err error) Decision

// WithClassifier makes the Transport ask c about each attempt's outcome
// before its own rules. To combine several, use Classifiers. Absent or nil:
// the Transport's own rules alone.
func WithClassifier(c Classifier) Option {
	return optionFunc(func(t *Transport) { t.classifier = c })
}

// DefaultClassifier is the Transport's own rules as a Classifier: Retry for
// status 408, 429, 500, 502, 503 and 504 and for the errors a retry may fix
// (refused or reset connections, timeouts of the attempt), DoNotRetry for
// everything else. It never returns UseDefault, so a Classifier can start
// from it and change one answer:
//
//	func(req *http.Request, resp *http.Response, err error) retryhttp.Decision {
//		if resp != nil && resp.StatusCode == http.StatusConflict {
//			return retryhttp.Retry
//		}
//		return retryhttp.DefaultClassifier(req, resp, err)
//	}
//
// Like every Decision, its Retry is subject to the method, the body, the
// Policy and the budget.
func DefaultClassifier(req *http.Request, resp *http.Response, err error) Decision {
	if resp == nil && err == nil {
		return DoNotRetry
	}
	if classify(resp, err).retryable() {
		return Retry
	}
	return DoNotRetry
}

// Classifiers returns a Classifier that asks each of cs in turn and returns
// the first Decision other than UseDefault, or UseDefault when all say so:
// an SDK's error codes, then its throttling rules, say. Nil entries are
// skipped.
func Classifiers(cs ...Classifier) Classifier {
	cs = append([]Classifier(nil), cs...)
	return func(req *http.Request, resp *http.Response, err error) Decision {
		for _, c := range cs {
			if c == nil {
				continue
			}
			if d := c(req, resp, err); d != UseDefault {
				return d
			}
		}
		return UseDefault
	}
}

// decideWith folds a Classifier's Decision into f, the Transport's own
// classification of the attempt: Retry (and Throttled) makes any outcome retryable (with
// the reason its status, or "error", names), DoNotRetry makes it final.
func decideWith(d Decision, f failure, resp *http.Response) (failure, bool) {
	switch d {
	case Retry, Throttled:
		if f.retryable() {
			return f, false
		}
		if resp != nil {
			return failure{kind: failStatus, code: resp.StatusCode}, false
		}
		return failure{kind: failOther}, false
	case DoNotRetry:
		return f, true
	}
	return f, false
}
