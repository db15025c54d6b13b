package retryhttpotel

import (
	"context"
	"net/http"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/retryhttp/retryhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// NewBase returns a RoundTripper to pass to retryhttp.New as its base: it
// traces each attempt with otelhttp (opts are otelhttp's: its tracer and
// meter providers, its propagators, its span names) and sets
// http.request.resend_count on the spans of retries, from
// retryhttp.AttemptFromContext: absent on the first attempt, 1 on the
// second, and so on (a hedge, being an attempt too, has its own count).
// Trace context goes out on each attempt through otelhttp's propagators:
// those given in opts, or the global ones (otel.SetTextMapPropagator).
//
// A nil base means the same default base as retryhttp.New(nil): a fresh
// cleanhttp.DefaultPooledTransport(). The RoundTripper is safe for
// concurrent use, and passes CloseIdleConnections on to base.
func NewBase(base http.RoundTripper, opts ...otelhttp.Option) http.RoundTripper {
	if base == nil {
		base = cleanhttp.DefaultPooledTransport()
	}
	return &tracedBase{
		traced: otelhttp.NewTransport(resendCount{base}, opts...),
		base:   base,
	}
}

// tracedBase is otelhttp's Transport over resendCount, with the base's
// CloseIdleConnections, which otelhttp's Transport does not pass on.
type tracedBase struct {
	traced http.RoundTripper
	base   http.RoundTripper
}

func (b *tracedBase) RoundTrip(req *http.Request) (*http.Response, error) {
	if n := retryhttp.AttemptFromContext(req.Context()); n > 1 {
		// A retry: tell resendCount its count, and which span is the
		// caller's, so that it sets the count only on a span otelhttp
		// started (a filter of otelhttp's may start none).
		parent := trace.SpanContextFromContext(req.Context()).SpanID()
		req = req.WithContext(context.WithValue(req.Context(), resendKey{}, resend{count: n - 1, parent: parent}))
	}
	return b.traced.RoundTrip(req)
}

// CloseIdleConnections closes the base's idle connections, when it can.
func (b *tracedBase) CloseIdleConnections() {
	if c, ok := b.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

type resendKey struct{}

// resend is what tracedBase tells resendCount about a retry.
type resend struct {
	count  int
	parent trace.SpanID // the span in the context before otelhttp's
}

// resendCount runs inside otelhttp's span: it sets the span's resend count
// on a retry.
type resendCount struct{ base http.RoundTripper }

func (r resendCount) RoundTrip(req *http.Request) (*http.Response, error) {
	if v, ok := req.Context().Value(resendKey{}).(resend); ok {
		if span := trace.SpanFromContext(req.Context()); span.SpanContext().SpanID() != v.parent {
			span.SetAttributes(semconv.HTTPRequestResendCount(v.count))
		}
	}
	return r.base.RoundTrip(req)
}
