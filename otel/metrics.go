package retryhttpotel

import (
	"errors"
	"sync"

	"github.com/retryhttp/retryhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// ScopeName is the instrumentation scope of the meter NewMetrics uses.
const ScopeName = "github.com/retryhttp/retryhttp/otel"

// Attribute keys of NewMetrics' instruments, beside the semantic
// conventions' http.request.method, http.response.status_code and
// error.type.
const (
	OutcomeKey    = attribute.Key("retryhttp.outcome")     // a request's outcome: "ok", "exhausted", ...
	WaitSourceKey = attribute.Key("retryhttp.wait_source") // "backoff" or "retry_after"
)

// The names of NewMetrics' instruments.
const (
	MetricRequests       = "retryhttp.requests"        // {request}: RoundTrip calls, by outcome
	MetricAttempts       = "retryhttp.attempts"        // {attempt}: attempts sent, by status
	MetricRetries        = "retryhttp.retries"         // {retry}: retries sent, by reason
	MetricRetryDelay     = "retryhttp.retry.delay"     // s: the wait before each retry sent
	MetricBudgetRefusals = "retryhttp.budget.refusals" // {retry}: retries the budget refused
	MetricHeld           = "retryhttp.held_requests"   // {attempt}: attempts held until their host's quota refilled
	MetricPaced          = "retryhttp.paced_requests"  // {attempt}: attempts that waited for their host's adaptive rate
	MetricPaceDelay      = "retryhttp.pace.delay"      // s: each such wait
	MetricHedges         = "retryhttp.hedges"          // {hedge}: hedges sent
	MetricHedgeWins      = "retryhttp.hedge.wins"      // {hedge}: hedges whose response was returned

	MetricTransparentRetries = "retryhttp.transparent_retries" // {retry}: attempts net/http sent again on its own
)

// delayBoundaries are the wait histograms' bucket boundaries, in seconds:
// those of retryhttp_retry_delay_seconds and retryhttp_pace_delay_seconds,
// from 1 ms to 60 s.
var delayBoundaries = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60}

// NewMetrics returns a retryhttp Option that records the Transport's series
// (see retryhttp.Metrics) with an OpenTelemetry meter from mp, under the
// scope ScopeName: requests by outcome, attempts by status, retries by
// reason, the waits before them, budget refusals, held requests, requests
// paced by their host's adaptive rate and their waits (see
// retryhttp.WithAdaptiveRate), hedges and their wins, and net/http's
// transparent retries (see retryhttp.EventTransparentRetry). The attribute
// values are those of the Prometheus labels (so a method outside the nine
// standard ones is "OTHER", where the semantic conventions write "_OTHER"):
//
//	retryhttp.requests        {request}  http.request.method, retryhttp.outcome
//	retryhttp.attempts        {attempt}  http.request.method, and http.response.status_code
//	                                     (100-599), or error.type "_OTHER" (no response,
//	                                     or a status outside 100-599: Prometheus's
//	                                     "error" and "other")
//	retryhttp.retries         {retry}    http.request.method, retryhttp.reason
//	retryhttp.retry.delay     s          retryhttp.wait_source ("backoff", "retry_after")
//	retryhttp.budget.refusals {retry}
//	retryhttp.held_requests   {attempt}  http.request.method
//	retryhttp.paced_requests  {attempt}  http.request.method
//	retryhttp.pace.delay      s
//	retryhttp.hedges          {hedge}    http.request.method
//	retryhttp.hedge.wins      {hedge}    http.request.method
//	retryhttp.transparent_retries {retry} http.request.method
//
// A nil mp means the global MeterProvider (otel.GetMeterProvider). The
// measurements carry the caller's request context, so exemplars link them
// to its trace. Any number of Transports may use one Option, or several
// made from one mp: their counts add up. The error is that of creating an
// instrument.
func NewMetrics(mp metric.MeterProvider) (retryhttp.Option, error) {
	r, err := newRecorder(mp)
	if err != nil {
		return nil, err
	}
	return retryhttp.WithRecorder(r.record), nil
}

// newRecorder makes NewMetrics' instruments with a meter from mp (nil: the
// global MeterProvider).
func newRecorder(mp metric.MeterProvider) (*recorder, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(ScopeName)
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	r := &recorder{
		requests: counter(MetricRequests, "{request}", "Requests sent through a retryhttp Transport, by how they ended."),
		attempts: counter(MetricAttempts, "{attempt}", "Attempts sent, the first ones included, by status code."),
		retries:  counter(MetricRetries, "{retry}", "Retries sent, by the status code or connection failure that caused them."),
		refusals: counter(MetricBudgetRefusals, "{retry}", "Retries the retry budget refused."),
		held:     counter(MetricHeld, "{attempt}", "Attempts held back because their host's quota was spent, until it refilled."),
		paced:    counter(MetricPaced, "{attempt}", "Attempts that waited for their host's adaptive rate, which slows down when the host throttles."),
		hedges:   counter(MetricHedges, "{hedge}", "Hedges sent: extra copies of slow idempotent requests."),
		wins:     counter(MetricHedgeWins, "{hedge}", "Hedges whose response was the one returned."),
		resends: counter(MetricTransparentRetries, "{retry}",
			"Attempts net/http sent again on its own, unseen by the retry policy: attempts plus these is what the servers received."),
		opts: map[optKey][]metric.AddOption{},
	}
	var err error
	r.delay, err = m.Float64Histogram(MetricRetryDelay, metric.WithUnit("s"),
		metric.WithDescription("Waits before the retries sent, from the backoff or from the server's Retry-After."),
		metric.WithExplicitBucketBoundaries(delayBoundaries...))
	errs = append(errs, err)
	r.pace, err = m.Float64Histogram(MetricPaceDelay, metric.WithUnit("s"),
		metric.WithDescription("Waits of the attempts that waited for their host's adaptive rate."),
		metric.WithExplicitBucketBoundaries(delayBoundaries...))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	r.delayBy[0] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(WaitSourceKey.String("backoff")))}
	r.delayBy[1] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(WaitSourceKey.String("retry_after")))}
	return r, nil
}

// recorder records the Events of Transports in OpenTelemetry instruments.
type recorder struct {
	requests, attempts, retries, refusals, held, paced, hedges, wins, resends metric.Int64Counter
	delay, pace                                                               metric.Float64Histogram
	delayBy                                                                   [2][]metric.RecordOption

	mu   sync.RWMutex
	opts map[optKey][]metric.AddOption // the attribute sets in use, made once each
}

// optKey names an attribute set: the kind of Event, the method, and the
// outcome, reason or status code.
type optKey struct {
	kind   retryhttp.EventKind
	method string
	label  string
	code   int
}

func (r *recorder) record(e retryhttp.Event) {
	switch e.Kind {
	case retryhttp.EventRequest:
		r.requests.Add(e.Context, 1, r.optsFor(optKey{kind: e.Kind, method: e.Method, label: e.Outcome})...)
	case retryhttp.EventAttempt:
		code := e.Code
		if code < 100 || code > 599 {
			code = 0 // the label is bounded: any other number is "_OTHER", as no response is
		}
		r.attempts.Add(e.Context, 1, r.optsFor(optKey{kind: e.Kind, method: e.Method, code: code})...)
	case retryhttp.EventRetry:
		r.retries.Add(e.Context, 1, r.optsFor(optKey{kind: e.Kind, method: e.Method, label: e.Reason})...)
		s := 0
		if e.ServerWait {
			s = 1
		}
		r.delay.Record(e.Context, e.Wait.Seconds(), r.delayBy[s]...)
	case retryhttp.EventBudgetRefusal:
		r.refusals.Add(e.Context, 1)
	case retryhttp.EventHeld:
		r.held.Add(e.Context, 1, r.optsFor(optKey{kind: e.Kind, method: e.Method})...)
	case retryhttp.EventPaced:
		r.paced.Add(e.Context, 1, r.optsFor(optKey{kind: e.Kind, method: e.Method})...)
		r.pace.Record(e.Context, e.Wait.Seconds())
	case retryhttp.EventHedge:
		r.hedges.Add(e.Context, 1, r.optsFor(optKey{kind: e.Kind, method: e.Method})...)
	case retryhttp.EventHedgeWon:
		r.wins.Add(e.Context, 1, r.optsFor(optKey{kind: e.Kind, method: e.Method})...)
	case retryhttp.EventTransparentRetry:
		r.resends.Add(e.Context, 1, r.optsFor(optKey{kind: e.Kind, method: e.Method})...)
	}
}

// optsFor returns the measurement options with the attribute set k names,
// making it on first use. The sets are bounded as the Prometheus labels
// are: methods, outcomes and reasons come from fixed lists, codes are
// 100-599.
func (r *recorder) optsFor(k optKey) []metric.AddOption {
	r.mu.RLock()
	o, ok := r.opts[k]
	r.mu.RUnlock()
	if ok {
		return o
	}
	attrs := []attribute.KeyValue{semconv.HTTPRequestMethodKey.String(k.method)}
	switch k.kind {
	case retryhttp.EventRequest:
		attrs = append(attrs, OutcomeKey.String(k.label))
	case retryhttp.EventAttempt:
		if k.code != 0 {
			attrs = append(attrs, semconv.HTTPResponseStatusCode(k.code))
		} else {
			attrs = append(attrs, semconv.ErrorTypeOther)
		}
	case retryhttp.EventRetry:
		attrs = append(attrs, ReasonKey.String(k.label))
	}
	o = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attrs...))}
	r.mu.Lock()
	r.opts[k] = o
	r.mu.Unlock()
	return o
}
