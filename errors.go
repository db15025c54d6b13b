package retryhttp

import "strconv"

// PolicyError reports a field of a [Policy], or an option of [New], that holds
// an unusable value. [Policy.Validate] returns one for each bad field, and a
// Transport built with a bad Policy returns them from every RoundTrip.
type PolicyError struct {
	Field  string // the field, such as "BaseDelay"
	Reason string // what is wrong with its value
}

func (e *PolicyError) Error() string {
	return "retryhttp: invalid Policy." + e.Field + ": " + e.Reason
}

// Error is the error RoundTrip returns when the last attempt of a request
// ended without a response, or when the request ended after a retry was
// planned (the context ended during the wait, or a WithBeforeRetry function
// failed). It says how many attempts were sent and why no retry followed,
// and unwraps to the cause, so errors.Is and errors.As see through it:
// errors.Is(err, context.Canceled), errors.As(err, new(*net.OpError)).
//
// When the last attempt got a response, RoundTrip returns that response
// and a nil error instead, whatever its status.
type Error struct {
	// Attempts is the number of attempts sent, the first one included.
	Attempts int
	// Err is the last attempt's error or, if the context ended during a
	// wait, the context's error, or the error of the WithBeforeRetry
	// function that stopped the retries.
	Err error
	// Waiting is true when the context ended during a wait before a retry,
	// or before the first attempt while its host was held (see
	// ErrThrottled; Attempts is then 0).
	Waiting bool
	// Reason says why no retry followed: ReasonExhausted, ReasonMethod,
	// ReasonBody, ReasonDeadline, ReasonBudget, ReasonPermanent,
	// ReasonClassifier, ReasonCanceled, ReasonHook or ReasonThrottled.
	Reason string

	detail string // Reason in words, with what would have allowed a retry
}

func (e *Error) Error() string {
	s := "retryhttp: "
	switch {
	case e.Waiting && e.Attempts == 0:
		s += "canceled while waiting for its host, "
	case e.Waiting:
		s += "canceled while waiting to retry, "
	}
	if e.Attempts == 0 {
		s += "not sent"
	} else {
		s += "after " + strconv.Itoa(e.Attempts) + " attempt"
		if e.Attempts != 1 {
			s += "s"
		}
	}
	if e.detail != "" && !e.Waiting {
		s += " (" + e.detail + ")"
	}
	if e.Err == nil {
		return s
	}
	return s + ": " + e.Err.Error()
}

// Unwrap returns the cause, for errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Err }
