package retryhttp

import (
	"context"
	"strconv"
	"time"
)

// Event is one of the things a Transport counts: the series of [Metrics]
// are counts of Events, and [WithRecorder] hands them to a function of
// yours, to count them in another metrics system (the module
// github.com/retryhttp/retryhttp/otel records them as OpenTelemetry
// metrics) or to follow a request's story. Its fields are the labels of the
// matching Prometheus series, unchanged.
type Event struct {
	Kind EventKind
	// Context is the context of the caller's request: its trace span, its
	// values.
	Context context.Context
	// Method is the method label: one of the nine methods of RFC 9110 and
	// RFC 5789 in upper case, or "OTHER".
	Method string
	// Code is an EventAttempt's status code, as the base returned it (any
	// number: the Prometheus label folds those outside 100-599 into
	// "other"), or 0 when the attempt got no response.
	Code int
	// Outcome is an EventRequest's outcome label ("ok", "exhausted", ...;
	// see Metrics).
	Outcome string
	// Reason is an EventRetry's reason label ("503", "connect", "reset",
	// "timeout", ...), and an EventRequest's Reason for giving up, as the
	// last Attempt has it (ReasonExhausted, ReasonCanceled, ...): empty when
	// the request did not give up (it succeeded, or its status is final).
	Reason string
	// Attempt is an EventAttempt's, an EventHedge's and an
	// EventTransparentRetry's attempt number, the number of the attempt an
	// EventRetry follows, and the number of attempts an EventRequest sent.
	Attempt int
	// Wait is an EventRetry's wait before the retry, and ServerWait says
	// that the server asked for it (the source label "retry_after") rather
	// than the backoff ("backoff"); and an EventPaced's wait for its
	// host's adaptive rate.
	Wait       time.Duration
	ServerWait bool
}

// EventKind says what an Event counts.
type EventKind uint8

// The kinds of Event, with the series of Metrics that counts each.
const (
	EventRequest          EventKind = iota + 1 // a RoundTrip ended (retryhttp_requests_total)
	EventAttempt                               // an attempt was sent and ended (retryhttp_attempts_total)
	EventRetry                                 // a retry was sent, after its wait (retryhttp_retries_total, retryhttp_retry_delay_seconds)
	EventBudgetRefusal                         // the retry budget refused a retry (retryhttp_budget_refusals_total); a hedge it does not pay for is simply not sent
	EventHeld                                  // an attempt was held until its host's quota refilled (retryhttp_held_requests_total)
	EventHedge                                 // a hedge was sent (retryhttp_hedges_total)
	EventHedgeWon                              // a hedge's response was the one returned (retryhttp_hedge_wins_total)
	EventTransparentRetry                      // net/http sent an attempt again on its own (retryhttp_transparent_retries_total)
	EventPaced                                 // an attempt waited for its host's adaptive rate, for Wait (retryhttp_paced_requests_total, retryhttp_pace_delay_seconds; see WithAdaptiveRate)
)

var eventKindNames = [...]string{"", "request", "attempt", "retry", "budget_refusal", "held", "hedge", "hedge_won", "transparent_retry", "paced"}

func (k EventKind) String() string {
	if int(k) < len(eventKindNames) && k != 0 {
		return eventKindNames[k]
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// WithRecorder calls f for every Event, exactly when the Transport's
// Metrics count it: a retry whose wait the caller canceled was never sent,
// and is no EventRetry. It may be given more than once: every recorder is
// called, in the order given, along with the Metrics of WithMetrics, if
// any.
//
// f is called in the goroutine of RoundTrip, or of a hedge's timer, for
// the Events of every request: it must be safe for concurrent use, and
// quick. Without recorders, the Transport builds no Event.
func WithRecorder(f func(Event)) Option {
	return optionFunc(func(t *Transport) {
		if f != nil {
			t.recorders = append(t.recorders, f)
		}
	})
}
