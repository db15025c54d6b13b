// Package retryhttpotel traces and measures a retryhttp Transport with
// OpenTelemetry, as the HTTP semantic conventions say retries should look:
// one CLIENT span per attempt that goes over the wire, no extra logical
// span, and http.request.resend_count on the spans of the attempts after
// the first.
//
//	rt := retryhttp.New(retryhttpotel.NewBase(nil), retryhttpotel.WithEvents())
//
// NewBase traces each attempt with otelhttp and sets the resend count;
// WithEvents adds a "retryhttp.retry" event to the caller's span for each
// retry and a "retryhttp.give_up" event when the Transport gives up;
// NewMetrics records the Transport's Prometheus series as OpenTelemetry
// metrics. All three may be used together, with retryhttp's own WithMetrics
// and WithLogger, in any order.
//
// Retry at one layer: a Transport in the base of another numbers its
// first attempt with the outer attempt's number (see
// retryhttp.AttemptFromContext), so the resend counts of nested
// Transports repeat, and WithEvents on both adds both layers' events to
// the caller's span.
//
// This is a Go module of its own, so that the retryhttp library does not
// depend on OpenTelemetry.
package retryhttpotel
