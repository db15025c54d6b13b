package retryhttp

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	return m, reg
}

func TestMetricsCountRequestsAttemptsRetriesAndWaits(t *testing.T) {
	m, reg := newTestMetrics(t)
	up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/flaky" && n <= 2:
			w.WriteHeader(http.StatusServiceUnavailable)
		case r.URL.Path == "/missing":
			w.WriteHeader(http.StatusNotFound)
		case r.URL.Path == "/down":
			w.WriteHeader(http.StatusBadGateway)
		}
	})
	// A 429 holds its whole host: the throttling upstream is a host of its own.
	throttler := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	tr, _ := newTestTransport(t, WithMetrics(m), WithBudget(nil)) // its 7 retries at once: a quiet client's budget holds two

	send := func(method, path string, ctx context.Context) {
		url := up.URL + path
		if path == "/throttled" {
			url = throttler.URL
		}
		req := mustRequest(t, method, url, nil).WithContext(ctx)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			readAll(t, resp)
		}
	}
	bg := context.Background()
	send(http.MethodGet, "/flaky", bg)   // 503, 503, 200: ok after 2 retries
	send(http.MethodGet, "/missing", bg) // 404: ok, final at once
	send(http.MethodDelete, "/down", bg) // 502 x3: exhausted
	send(http.MethodPost, "/down", bg)   // POST 502: not_retryable
	send("PURGE", "/missing", bg)        // OTHER
	tooLate := ContextWithPolicy(bg, Policy{MaxRetryAfter: time.Second})
	send(http.MethodGet, "/throttled", tooLate) // Retry-After 2 > 1s: too_late

	// Retry-After honored: the host is held until it passes (the HEAD
	// waits for it), the retry waits for it again, and is throttled again.
	send(http.MethodHead, "/throttled", ContextWithPolicy(bg, Policy{MaxAttempts: 2}))

	_, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://"+closedAddr(t)+"/", nil))
	require.Error(t, err) // connect x3: exhausted with code "error"

	canceled, cancel := context.WithCancel(bg)
	tr.sleep = func(ctx context.Context, d time.Duration) error { cancel(); return sleep(ctx, d) }
	send(http.MethodPut, "/down", canceled) // 502, then canceled during the wait

	expected := `
# HELP retryhttp_requests_total Requests sent through a retryhttp Transport, by how they ended.
# TYPE retryhttp_requests_total counter
retryhttp_requests_total{method="DELETE",outcome="exhausted"} 1
retryhttp_requests_total{method="GET",outcome="exhausted"} 1
retryhttp_requests_total{method="GET",outcome="ok"} 2
retryhttp_requests_total{method="GET",outcome="too_late"} 1
retryhttp_requests_total{method="HEAD",outcome="exhausted"} 1
retryhttp_requests_total{method="OTHER",outcome="ok"} 1
retryhttp_requests_total{method="POST",outcome="not_retryable"} 1
retryhttp_requests_total{method="PUT",outcome="canceled"} 1
# HELP retryhttp_attempts_total Attempts sent, the first ones included, by status code or "error".
# TYPE retryhttp_attempts_total counter
retryhttp_attempts_total{code="200",method="GET"} 1
retryhttp_attempts_total{code="404",method="GET"} 1
retryhttp_attempts_total{code="404",method="OTHER"} 1
retryhttp_attempts_total{code="429",method="GET"} 1
retryhttp_attempts_total{code="429",method="HEAD"} 2
retryhttp_attempts_total{code="502",method="DELETE"} 3
retryhttp_attempts_total{code="502",method="POST"} 1
retryhttp_attempts_total{code="502",method="PUT"} 1
retryhttp_attempts_total{code="503",method="GET"} 2
retryhttp_attempts_total{code="error",method="GET"} 3
# HELP retryhttp_retries_total Retries sent, by the status code or connection failure that caused them.
# TYPE retryhttp_retries_total counter
retryhttp_retries_total{method="DELETE",reason="502"} 2
retryhttp_retries_total{method="GET",reason="503"} 2
retryhttp_retries_total{method="GET",reason="connect"} 2
retryhttp_retries_total{method="HEAD",reason="429"} 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(expected),
		"retryhttp_requests_total", "retryhttp_attempts_total", "retryhttp_retries_total"))

	hist := histograms(t, reg, "retryhttp_retry_delay_seconds")
	require.Contains(t, hist, "backoff")
	require.Contains(t, hist, "retry_after")
	assert.Equal(t, uint64(6), hist["backoff"].GetSampleCount(), "2 GET 503 + 2 DELETE + 2 connect; the PUT's retry was never sent")
	assert.Equal(t, uint64(1), hist["retry_after"].GetSampleCount())
	assert.GreaterOrEqual(t, hist["retry_after"].GetSampleSum(), 2.0, "at least the asked 2s")
	assert.Len(t, hist["backoff"].GetBucket(), len(delayBuckets))

	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

// histograms returns the histograms of one family by their source label.
func histograms(t *testing.T, g prometheus.Gatherer, name string) map[string]*dto.Histogram {
	t.Helper()
	families, err := g.Gather()
	require.NoError(t, err)
	out := map[string]*dto.Histogram{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" {
					out[l.GetValue()] = m.GetHistogram()
				}
			}
		}
	}
	return out
}

func TestNewMetricsTwiceWithOneRegistererReusesTheSeries(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m1, err := NewMetrics(reg)
	require.NoError(t, err)
	m2, err := NewMetrics(reg)
	require.NoError(t, err)
	assert.Same(t, m1, m2)

}

func TestMetricsPerClientWithAConstantLabel(t *testing.T) {
	// As an SDK author does it: one registry, a constant label per client.
	reg := prometheus.NewPedanticRegistry()
	client := func(name string) *Metrics {
		m, err := NewMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"client": name}, reg))
		require.NoError(t, err)
		return m
	}
	gh, gh2, gl := client("github"), client("github"), client("gitlab")
	assert.Same(t, gh, gh2, "wrapped registerers reuse the series too")
	assert.NotSame(t, gh, gl)

	gh.request(0, outcomeOK)
	gh2.request(0, outcomeOK)
	gl.request(0, outcomeExhausted)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP retryhttp_requests_total Requests sent through a retryhttp Transport, by how they ended.
# TYPE retryhttp_requests_total counter
retryhttp_requests_total{client="github",method="GET",outcome="ok"} 2
retryhttp_requests_total{client="gitlab",method="GET",outcome="exhausted"} 1
`), "retryhttp_requests_total"))
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

func TestNewMetricsWithNilRegistererRegistersNothing(t *testing.T) {
	m, err := NewMetrics(nil)
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(m), "the caller may register it")
	m.attempt(0, &http.Response{StatusCode: 200})
	assert.Equal(t, 1, testutil.CollectAndCount(m, "retryhttp_attempts_total"))
}

func TestNewMetricsReportsOtherRegistrationErrors(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	clash := prometheus.NewCounter(prometheus.CounterOpts{Name: "retryhttp_requests_total", Help: "not ours"})
	require.NoError(t, reg.Register(clash))
	m, err := NewMetrics(reg)
	assert.Nil(t, m)
	assert.Error(t, err)
}

func TestSharedMetricsAddUp(t *testing.T) {
	m, reg := newTestMetrics(t)
	up := newUpstream(t, statuses(200))
	for range 2 {
		tr, _ := newTestTransport(t, WithMetrics(m))
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
		require.NoError(t, err)
		readAll(t, resp)
	}
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP retryhttp_requests_total Requests sent through a retryhttp Transport, by how they ended.
# TYPE retryhttp_requests_total counter
retryhttp_requests_total{method="GET",outcome="ok"} 2
`), "retryhttp_requests_total"))
}

func TestMetricsHappyPathAllocatesNothing(t *testing.T) {
	// Counting in the series allocates nothing once they are resolved.
	m, _ := newTestMetrics(t)
	resp := &http.Response{StatusCode: 200}
	m.attempt(0, resp) // resolve the series once
	m.request(0, outcomeOK)
	allocs := allocsPerRun(t, 200, func() {
		m.attempt(0, resp)
		m.request(0, outcomeOK)
	})
	assert.Zero(t, allocs)

	// A RoundTrip with Metrics pays only for the connection watch that
	// counts net/http's transparent retries: the trace's context and the
	// request's copy that carries it (resend.go).
	base := staticRT{&http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}}
	tr := New(base, WithMetrics(m))
	req := mustRequest(t, http.MethodGet, "http://example.invalid/", nil)
	_, _ = tr.RoundTrip(req)
	assert.Equal(t, 2.0, allocsPerRun(t, 200, func() { _, _ = tr.RoundTrip(req) }))
}

func TestMethodAndCodeLabels(t *testing.T) {
	for i, name := range methodNames[:numMethods-1] {
		assert.Equal(t, i, methodIndex(name))
		assert.Equal(t, idempotentMethod(name), idempotentIndex(i), name)
	}
	assert.False(t, idempotentIndex(numMethods-1))
	assert.Equal(t, 0, methodIndex(""))
	assert.Equal(t, numMethods-1, methodIndex("get"), "methods are case-sensitive")
	assert.Equal(t, numMethods-1, methodIndex("PROPFIND"))

	m, reg := newTestMetrics(t)
	for _, code := range []int{0, 99, 999, 999, 599, -1, 1 << 40, 100} {
		m.attempt(0, &http.Response{StatusCode: code})
	}
	m.attempt(0, nil)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP retryhttp_attempts_total Attempts sent, the first ones included, by status code or "error".
# TYPE retryhttp_attempts_total counter
retryhttp_attempts_total{code="100",method="GET"} 1
retryhttp_attempts_total{code="599",method="GET"} 1
retryhttp_attempts_total{code="error",method="GET"} 1
retryhttp_attempts_total{code="other",method="GET"} 6
`), "retryhttp_attempts_total"))
}

func TestHostileStatusCodesCannotGrowTheSeries(t *testing.T) {
	// An HTTP/2 server may send any :status; a base may make up anything.
	// Every code outside 100-599 lands in one series, and a response with
	// status 0 is not counted as "error" (no response).
	m, reg := newTestMetrics(t)
	n := 0
	base := roundTripFunc(func(*http.Request) (*http.Response, error) {
		n++
		return &http.Response{StatusCode: 600 + n*7919, Body: http.NoBody, Header: http.Header{}}, nil
	})
	tr := New(base, WithMetrics(m))
	for range 1000 {
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://example.invalid/", nil))
		require.NoError(t, err)
		readAll(t, resp)
	}
	_, err := New(roundTripFunc(func(*http.Request) (*http.Response, error) {
		return &http.Response{Body: http.NoBody, Header: http.Header{}}, nil
	}), WithMetrics(m)).RoundTrip(mustRequest(t, http.MethodGet, "http://example.invalid/", nil))
	require.NoError(t, err)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP retryhttp_attempts_total Attempts sent, the first ones included, by status code or "error".
# TYPE retryhttp_attempts_total counter
retryhttp_attempts_total{code="other",method="GET"} 1001
`), "retryhttp_attempts_total"))
}

// roundTripFunc is a RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// staticRT answers every request with the same response.
type staticRT struct{ resp *http.Response }

func (s staticRT) RoundTrip(*http.Request) (*http.Response, error) { return s.resp, nil }
