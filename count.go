package retryhttp

import (
	"context"
	"net/http"
	"time"
)

// event is an Event as the Transport counts it: labels by index, built on
// the stack. count is the one place that counts: every series of the
// Metrics and every recorder's Event comes from here, so that they always
// agree. Callers check t.counted first, so that a Transport that counts
// nothing builds no event.
type event struct {
	kind       EventKind
	method     int            // index in methodNames
	attempt    int            // see Event.Attempt
	resp       *http.Response // EventAttempt: the response, or nil for an error
	stop       stopReason     // EventRequest: why it ended
	f          failure        // EventRetry: what the retry follows
	wait       time.Duration  // EventRetry, EventPaced
	serverWait bool           // EventRetry
}

// count counts e in the Metrics, then hands it to the recorders.
func (t *Transport) count(ctx context.Context, e event) {
	if t.metrics != nil {
		t.metrics.count(&e)
	}
	if t.recorders != nil {
		pub := e.public(ctx)
		for _, f := range t.recorders {
			f(pub)
		}
	}
}

// public returns the Event a recorder sees for e.
func (e *event) public(ctx context.Context) Event {
	pub := Event{Kind: e.kind, Context: ctx, Method: methodNames[e.method], Attempt: e.attempt}
	switch e.kind {
	case EventAttempt:
		if e.resp != nil {
			pub.Code = e.resp.StatusCode
		}
	case EventRequest:
		pub.Outcome, pub.Reason = e.stop.outcome().String(), e.stop.reason()
	case EventRetry:
		pub.Reason = reasonLabel(e.f.reasonIndex())
		pub.Wait, pub.ServerWait = e.wait, e.serverWait
	case EventPaced:
		pub.Wait = e.wait
	}
	return pub
}
