package retryhttp

// Why a Transport stopped retrying a request whose last attempt failed: the
// Reason of the last Attempt an observer sees, of an *Error, and of the log
// record "retryhttp: giving up". A request whose last attempt succeeded, or
// got a status that is not retried (such as 404), did not give up: its
// Reason is empty.
const (
	ReasonExhausted  = "exhausted"   // Policy.MaxAttempts attempts were made
	ReasonMethod     = "method"      // not idempotent, and the server may have seen it
	ReasonBody       = "body"        // the body cannot be sent again (GetBody failed, or it passed the replay buffer)
	ReasonRetryAfter = "retry_after" // the server asked for a wait above Policy.MaxRetryAfter
	ReasonDeadline   = "deadline"    // the context's deadline passed, or would before the next attempt
	ReasonBudget     = "budget"      // the retry budget refused
	ReasonPermanent  = "permanent"   // the error is not one a retry can fix
	ReasonClassifier = "classifier"  // the Classifier said DoNotRetry
	ReasonCanceled   = "canceled"    // the context was canceled
	ReasonHook       = "hook"        // the WithBeforeRetry function returned an error
	ReasonThrottled  = "throttled"   // not sent: the host's quota is spent, or its adaptive rate has no token, past the deadline or MaxRetryAfter (see ErrThrottled)
)

// stopReason says why a request ends after an attempt, or that it goes on.
type stopReason uint8

const (
	stopNone           stopReason = iota // not stopped: a retry follows
	stopFinal                            // the attempt succeeded, or its status is final
	stopExhausted                        // MaxAttempts reached while still failing
	stopMethod                           // not idempotent, and the server may have seen it
	stopBody                             // the body cannot be sent again
	stopRetryAfter                       // Retry-After above MaxRetryAfter
	stopDeadline                         // the next wait would end after the deadline
	stopDeadlinePassed                   // the context's deadline passed
	stopBudget                           // the retry budget refused
	stopPermanent                        // a failure no retry can fix
	stopClassifier                       // the Classifier said DoNotRetry
	stopCanceled                         // the context was canceled
	stopHook                             // the WithBeforeRetry function failed
	stopThrottled                        // not sent: the host's quota is spent for too long
	stopPaced                            // not sent: the host's adaptive rate has no token for too long
)

// stops maps each stopReason to its Reason and to the outcome label of
// retryhttp_requests_total, which stays as coarse as it always was.
var stops = [...]struct {
	reason  string
	outcome outcome
}{
	stopNone:           {"", outcomeNone},
	stopFinal:          {"", outcomeOK},
	stopExhausted:      {ReasonExhausted, outcomeExhausted},
	stopMethod:         {ReasonMethod, outcomeNotRetryable},
	stopBody:           {ReasonBody, outcomeNotRetryable},
	stopRetryAfter:     {ReasonRetryAfter, outcomeTooLate},
	stopDeadline:       {ReasonDeadline, outcomeTooLate},
	stopDeadlinePassed: {ReasonDeadline, outcomeCanceled},
	stopBudget:         {ReasonBudget, outcomeBudget},
	stopPermanent:      {ReasonPermanent, outcomeNotRetryable},
	stopClassifier:     {ReasonClassifier, outcomeNotRetryable},
	stopCanceled:       {ReasonCanceled, outcomeCanceled},
	stopHook:           {ReasonHook, outcomeNotRetryable},
	stopThrottled:      {ReasonThrottled, outcomeThrottled},
	stopPaced:          {ReasonThrottled, outcomeThrottled},
}

func (s stopReason) reason() string   { return stops[s].reason }
func (s stopReason) outcome() outcome { return stops[s].outcome }

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
	outcomeThrottled                   // not sent: the host's quota is spent
)

var outcomeNames = [...]string{
	outcomeNone:         "none",
	outcomeOK:           "ok",
	outcomeExhausted:    "exhausted",
	outcomeNotRetryable: "not_retryable",
	outcomeTooLate:      "too_late",
	outcomeCanceled:     "canceled",
	outcomeBudget:       "budget",
	outcomeThrottled:    "throttled",
}

func (o outcome) String() string { return outcomeNames[o] }
