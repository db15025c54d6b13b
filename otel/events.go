package retryhttpotel

import (
	"github.com/retryhttp/retryhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Event names and attribute keys of WithEvents.
const (
	EventRetry  = "retryhttp.retry"
	EventGiveUp = "retryhttp.give_up"

	AttemptKey  = attribute.Key("retryhttp.attempt")  // the attempt that failed (1 for the first)
	ReasonKey   = attribute.Key("retryhttp.reason")   // why: a retry's reason label, or the Reason for giving up
	WaitKey     = attribute.Key("retryhttp.wait")     // the wait before the retry, in seconds
	AttemptsKey = attribute.Key("retryhttp.attempts") // on a give-up: how many attempts were sent
)

// WithEvents returns a retryhttp Option that adds an event to the caller's
// span (the span in the request's context) for each retry, as it is sent:
// "retryhttp.retry", with the attempt that failed (retryhttp.attempt), why
// (retryhttp.reason: "503", "connect", "reset", "timeout", ...) and the
// wait before the retry in seconds (retryhttp.wait); and one when the
// Transport gives up on a failed attempt: "retryhttp.give_up", with the
// reason (retryhttp.reason: retryhttp.ReasonExhausted, ReasonCanceled, ...)
// and the attempts sent (retryhttp.attempts). A retry whose wait was
// canceled was not sent: its request has a give-up event with reason
// "canceled" instead. A request that succeeded, or got a final status such
// as 404, has no give-up event. Nothing is added to a span that is not
// recording.
func WithEvents() retryhttp.Option {
	return retryhttp.WithRecorder(spanEvents)
}

func spanEvents(e retryhttp.Event) {
	switch {
	case e.Kind == retryhttp.EventRetry:
		span := trace.SpanFromContext(e.Context)
		if !span.IsRecording() {
			return
		}
		span.AddEvent(EventRetry, trace.WithAttributes(
			AttemptKey.Int(e.Attempt),
			ReasonKey.String(e.Reason),
			WaitKey.Float64(e.Wait.Seconds()),
		))
	case e.Kind == retryhttp.EventRequest && e.Reason != "":
		span := trace.SpanFromContext(e.Context)
		if !span.IsRecording() {
			return
		}
		span.AddEvent(EventGiveUp, trace.WithAttributes(
			ReasonKey.String(e.Reason),
			AttemptsKey.Int(e.Attempt),
		))
	}
}
