package retryhttp

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the Prometheus series a Transport updates. It is a
// prometheus.Collector, safe for concurrent use, and may be shared by any
// number of Transports (see [WithMetrics]): their counts add up.
//
//	retryhttp_requests_total{method, outcome}    each RoundTrip, once, by how it ended
//	retryhttp_attempts_total{method, code}       each attempt sent; code is the status (100-599),
//	                                             "other" for any other number, or "error"
//	retryhttp_retries_total{method, reason}      each retry sent; reason is the status
//	                                             that caused it ("503"), "connect", "reset" or "timeout";
//	                                             with a Classifier, any status, "other" or "error"
//	retryhttp_retry_delay_seconds{source}        each wait before a retry that was sent; source
//	                                             is "backoff" or "retry_after"
//	retryhttp_budget_refusals_total              each retry the budget refused
//	retryhttp_held_requests_total{method}        each attempt held back until its host's quota refilled
//	retryhttp_paced_requests_total{method}       each attempt that waited for its host's adaptive rate
//	                                             (see WithAdaptiveRate)
//	retryhttp_pace_delay_seconds                 each such wait
//	retryhttp_hedges_total{method}               each hedge sent (see Hedging)
//	retryhttp_hedge_wins_total{method}           each hedge that won: its response was final, and
//	                                             came before any other copy's
//	retryhttp_transparent_retries_total{method}  each time net/http sent an attempt again on its own,
//	                                             inside one attempt (a reused HTTP/1 connection reset,
//	                                             an HTTP/2 stream refused): the server received
//	                                             attempts plus these
//	retryhttp_budget_retries_available           retries the budgets would allow now, summed
//	                                             over the Transports' budgets
//
// The outcomes are "ok" (the last attempt needed no retry: a success, or a
// status that is not retried such as 404), "exhausted" (MaxAttempts reached
// while still failing), "not_retryable" (a failure the policy refuses to
// retry because of the method, the body or the error; also a request the
// Transport rejects before sending, such as one with an invalid Policy),
// "too_late" (the wait would pass MaxRetryAfter or the context's deadline),
// "canceled" (the caller's context ended), "budget" (the retry budget
// refused; see [Budget]) and "throttled" (not sent: its host's quota is
// spent past the deadline or MaxRetryAfter; see [ErrThrottled]). The method label is one of
// the nine standard methods, or "OTHER". No label holds a URL, host or path:
// their cardinality has no bound.
//
// To tell clients apart, wrap the registerer with a constant label:
//
//	reg := prometheus.WrapRegistererWith(prometheus.Labels{"client": "github"}, prometheus.DefaultRegisterer)
//	m, err := retryhttp.NewMetrics(reg)
//
// A series is created when it is first used; after that, updating it takes
// no allocation.
type Metrics struct {
	requests *prometheus.CounterVec
	attempts *prometheus.CounterVec
	retries  *prometheus.CounterVec
	delay    *prometheus.HistogramVec
	refusals prometheus.Counter
	holds    *prometheus.CounterVec
	paced    *prometheus.CounterVec
	pace     prometheus.Histogram
	hedges   *prometheus.CounterVec
	wins     *prometheus.CounterVec
	resends  *prometheus.CounterVec
	avail    *prometheus.Desc

	budgetsMu sync.Mutex
	budgets   []weak.Pointer[Budget] // of the Transports using these metrics

	// Label children, resolved once and then read without a lock.
	requestsBy [numMethods][numOutcomes]atomic.Pointer[prometheus.Counter]
	attemptsBy [numMethods][numCodes]atomic.Pointer[prometheus.Counter]
	retriesBy  [numMethods][numReasons]atomic.Pointer[prometheus.Counter]
	delayBy    [2]atomic.Pointer[prometheus.Observer]
	pacedBy    [numMethods]atomic.Pointer[prometheus.Counter]
}

// delayBuckets are the buckets of retryhttp_retry_delay_seconds, from 1 ms
// to 60 s (DefaultMaxRetryAfter): 1, 5, 10, 25, 50, 100, 250, 500 ms, 1, 2.5,
// 5, 10, 20, 30 and 60 s. Unexported, so nobody changes them under a
// registered histogram.
var delayBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60}

// NewMetrics creates the series and registers them with reg. With a nil reg
// nothing is registered: the caller may register the returned *Metrics
// itself. The library never touches prometheus.DefaultRegisterer unless it
// is passed in. When reg already holds the series from an earlier call,
// NewMetrics returns that earlier *Metrics, so calling it twice with one
// registerer works. Any other registration error is returned.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retryhttp_requests_total",
			Help: "Requests sent through a retryhttp Transport, by how they ended.",
		}, []string{"method", "outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retryhttp_attempts_total",
			Help: "Attempts sent, the first ones included, by status code or \"error\".",
		}, []string{"method", "code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retryhttp_retries_total",
			Help: "Retries sent, by the status code or connection failure that caused them.",
		}, []string{"method", "reason"}),
		delay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "retryhttp_retry_delay_seconds",
			Help:    "Waits before the retries sent, from the backoff or from the server's Retry-After.",
			Buckets: delayBuckets,
		}, []string{"source"}),
		refusals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "retryhttp_budget_refusals_total",
			Help: "Retries the retry budget refused; each ends its request with outcome \"budget\".",
		}),
		holds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retryhttp_held_requests_total",
			Help: "Attempts held back because their host's quota was spent, until it refilled.",
		}, []string{"method"}),
		paced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retryhttp_paced_requests_total",
			Help: "Attempts that waited for their host's adaptive rate, which slows down when the host throttles.",
		}, []string{"method"}),
		pace: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "retryhttp_pace_delay_seconds",
			Help:    "Waits of the attempts that waited for their host's adaptive rate.",
			Buckets: delayBuckets,
		}),
		hedges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retryhttp_hedges_total",
			Help: "Hedges sent: extra copies of slow idempotent requests.",
		}, []string{"method"}),
		wins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retryhttp_hedge_wins_total",
			Help: "Hedges that won: their response was final, and came before any other copy's.",
		}, []string{"method"}),
		resends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retryhttp_transparent_retries_total",
			Help: "Attempts net/http sent again on its own, unseen by the retry policy: attempts plus these is what the servers received.",
		}, []string{"method"}),
		avail: prometheus.NewDesc("retryhttp_budget_retries_available",
			"Retries the retry budgets of the Transports using these metrics would allow now.", nil, nil),
	}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*Metrics); ok {
				return existing, nil
			}
		}
		return nil, err
	}
	return m, nil
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.attempts.Describe(ch)
	m.retries.Describe(ch)
	m.delay.Describe(ch)
	m.refusals.Describe(ch)
	m.holds.Describe(ch)
	m.paced.Describe(ch)
	m.pace.Describe(ch)
	m.hedges.Describe(ch)
	m.wins.Describe(ch)
	m.resends.Describe(ch)
	ch <- m.avail
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.attempts.Collect(ch)
	m.retries.Collect(ch)
	m.delay.Collect(ch)
	m.refusals.Collect(ch)
	m.holds.Collect(ch)
	m.paced.Collect(ch)
	m.pace.Collect(ch)
	m.hedges.Collect(ch)
	m.wins.Collect(ch)
	m.resends.Collect(ch)
	if avail, ok := m.available(); ok {
		ch <- prometheus.MustNewConstMetric(m.avail, prometheus.GaugeValue, avail)
	}
}

// attach adds b to the budgets whose available retries the gauge sums. The
// Metrics holds b weakly: a budget dropped with its Transport drops out.
func (m *Metrics) attach(b *Budget) {
	if m == nil || b == nil {
		return
	}
	m.budgetsMu.Lock()
	defer m.budgetsMu.Unlock()
	live := m.budgets[:0]
	for _, w := range m.budgets {
		if p := w.Value(); p != nil {
			if p == b {
				return
			}
			live = append(live, w)
		}
	}
	m.budgets = append(live, weak.Make(b))
}

// available sums the retries available in the attached budgets; ok is
// false when there is none.
func (m *Metrics) available() (sum float64, ok bool) {
	m.budgetsMu.Lock()
	defer m.budgetsMu.Unlock()
	for _, w := range m.budgets {
		if b := w.Value(); b != nil {
			sum += b.Available()
			ok = true
		}
	}
	return sum, ok
}

// count counts e in its series.
func (m *Metrics) count(e *event) {
	switch e.kind {
	case EventRequest:
		m.request(e.method, e.stop.outcome())
	case EventAttempt:
		m.attempt(e.method, e.resp)
	case EventRetry:
		m.retry(e.method, e.f, e.wait, e.serverWait)
	case EventBudgetRefusal:
		m.refusals.Inc()
	case EventHeld:
		m.holds.WithLabelValues(methodNames[e.method]).Inc() // only when a host is held: no cache needed
	case EventPaced:
		inc1(&m.pacedBy[e.method], m.paced, methodNames[e.method]) // every request to a slowed host: cached
		m.pace.Observe(e.wait.Seconds())
	case EventHedge:
		m.hedges.WithLabelValues(methodNames[e.method]).Inc()
	case EventHedgeWon:
		m.wins.WithLabelValues(methodNames[e.method]).Inc()
	case EventTransparentRetry:
		m.resends.WithLabelValues(methodNames[e.method]).Inc() // rare: no cache needed
	}
}

// Label values, indexed as the caches are.
var (
	methodNames = [...]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "OTHER"}
	sourceNames = [...]string{"backoff", "retry_after"}
)

const (
	numMethods  = len(methodNames)
	numOutcomes = len(outcomeNames)
	numCodes    = 502 // status 100 to 599 at 0 to 499, "other" at 500, "error" at 501
	codeOther   = numCodes - 2
	codeError   = numCodes - 1
)

// inc adds one to the cached child of vec for the labels a and b, resolving
// it on first use. The fast path is one atomic load.
func inc(slot *atomic.Pointer[prometheus.Counter], vec *prometheus.CounterVec, a, b string) {
	if c := slot.Load(); c != nil {
		(*c).Inc()
		return
	}
	c := vec.WithLabelValues(a, b)
	slot.Store(&c)
	c.Inc()
}

// inc1 is inc for a vector of one label.
func inc1(slot *atomic.Pointer[prometheus.Counter], vec *prometheus.CounterVec, a string) {
	if c := slot.Load(); c != nil {
		(*c).Inc()
		return
	}
	c := vec.WithLabelValues(a)
	slot.Store(&c)
	c.Inc()
}

// attempt counts one attempt by its response's status, "other" for a
// status outside 100-599 (HTTP/2 allows any number, and a base
// RoundTripper may make up anything: the label stays bounded), or "error"
// when there was no response.
func (m *Metrics) attempt(method int, resp *http.Response) {
	i := codeError
	if resp != nil {
		i = codeOther
		if code := resp.StatusCode; code >= 100 && code <= 599 {
			i = code - 100
		}
	}
	slot := &m.attemptsBy[method][i]
	if c := slot.Load(); c != nil { // the common case, without building the label
		(*c).Inc()
		return
	}
	inc(slot, m.attempts, methodNames[method], codeLabel(i))
}

// codeLabel returns the code label of the attempts cache index i.
func codeLabel(i int) string {
	switch i {
	case codeError:
		return "error"
	case codeOther:
		return "other"
	}
	return statusLabels[i]
}

// retry counts one retry sent after f, and the wait before it. A retry
// that was never sent (the context ended during the wait) is not counted.
func (m *Metrics) retry(method int, f failure, wait time.Duration, retryAfter bool) {
	r := f.reasonIndex()
	inc(&m.retriesBy[method][r], m.retries, methodNames[method], reasonLabel(r))
	s := 0
	if retryAfter {
		s = 1
	}
	slot := &m.delayBy[s]
	o := slot.Load()
	if o == nil {
		obs := m.delay.WithLabelValues(sourceNames[s])
		slot.Store(&obs)
		o = &obs
	}
	(*o).Observe(wait.Seconds())
}

// request counts one RoundTrip that ended with o.
func (m *Metrics) request(method int, o outcome) {
	inc(&m.requestsBy[method][o], m.requests, methodNames[method], o.String())
}
