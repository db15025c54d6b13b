package retryhttp

// outcome says how a RoundTrip ended. The names are the values of the
// outcome label of retryhttp_requests_total.
type outcome uint8

const (
	outcomeNone         outcome = iota // not ended: a retry follows
	outcomeOK                          // the last attempt needed no retry
	outcomeExhausted                   // MaxAttempts reached while still failing
	outcomeNotRetryable                // a failure the policy refuses to retry
	outcomeTooLate                     // the wait would pass MaxRetryAfter or the deadline
	outcomeCanceled                    // the caller's context ended
	outcomeBudget                      // the retry budget refused
)

var outcomeNames = [...]string{
	outcomeNone:         "none",
	outcomeOK:           "ok",
	outcomeExhausted:    "exhausted",
	outcomeNotRetryable: "not_retryable",
	outcomeTooLate:      "too_late",
	outcomeCanceled:     "canceled",
	outcomeBudget:       "budget",
}

func (o outcome) String() string { return outcomeNames[o] }
