package blackbox_test

// retryhttp_attempts_total{code} stays bounded for any status;
// retryhttp_retries_total and retryhttp_retry_delay_seconds do not count
// retries that were never sent.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newMetrics(t *testing.T) (*retryhttp.Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := retryhttp.NewMetrics(reg)
	require.NoError(t, err)
	return m, reg
}

// series returns the label sets of a metric family.
func series(t *testing.T, reg *prometheus.Registry, name string) []map[string]string {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var out []map[string]string
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			out = append(out, l)
		}
	}
	return out
}

func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += metricValue(m)
		}
	}
	return sum
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

func TestAttemptCodeLabelStaysBounded(t *testing.T) {
	m, reg := newMetrics(t)
	var code atomic.Int64
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: int(code.Load())}, nil
	})
	rt := testkit.NewRT(t, base, retryhttp.WithMetrics(m))
	for c := int64(-2000); c < 3000; c += 7 {
		code.Store(c)
		res, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil))
		require.NoError(t, err)
		res.Body.Close()
	}
	for _, c := range []int64{math.MinInt64, math.MaxInt64, 1 << 40, 0} {
		code.Store(c)
		res, err := rt.RoundTrip(testkit.NewReq(t, "WEIRD-METHOD-"+strings.Repeat("x", 10), "http://x.invalid/", nil))
		require.NoError(t, err)
		res.Body.Close()
	}
	for _, l := range series(t, reg, "retryhttp_attempts_total") {
		c := l["code"]
		if c == "other" || c == "error" {
			continue
		}
		assert.Len(t, c, 3, "code label %q", c)
		assert.True(t, c >= "100" && c <= "599", "code label %q", c)
		assert.Contains(t, []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "OTHER"}, l["method"])
	}
	assert.LessOrEqual(t, len(series(t, reg, "retryhttp_attempts_total")), 502*2)
}

func TestRetriesNeverSentAreNotCounted(t *testing.T) {
	payload := bytes.Repeat([]byte("m"), 1000)
	type tc struct {
		name      string
		policy    retryhttp.Policy
		opts      []retryhttp.Option
		prepare   func(r *http.Request) *http.Request
		retryAft  string
		cancelIn  time.Duration
		wantSent  int // attempts the base receives
		wantRetry float64
	}
	cases := []tc{
		{name: "canceled during the backoff", policy: retryhttp.Policy{BaseDelay: time.Second, Jitter: retryhttp.NoJitter}, cancelIn: 50 * time.Millisecond, wantSent: 1},
		{name: "canceled during a Retry-After wait", policy: testkit.Fast, retryAft: "1", cancelIn: 50 * time.Millisecond, wantSent: 1},
		{name: "deadline shorter than the wait", policy: retryhttp.Policy{BaseDelay: time.Second, Jitter: retryhttp.NoJitter},
			prepare: func(r *http.Request) *http.Request {
				ctx, cancel := context.WithTimeout(r.Context(), 300*time.Millisecond)
				t.Cleanup(cancel)
				return r.WithContext(ctx)
			}, wantSent: 1},
		{name: "Retry-After past MaxRetryAfter", policy: testkit.Fast, retryAft: "3600", wantSent: 1},
		{name: "GetBody fails", policy: testkit.Fast, prepare: func(r *http.Request) *http.Request {
			r.Body = io.NopCloser(bytes.NewReader(payload))
			r.GetBody = func() (io.ReadCloser, error) { return nil, errors.New("gone") }
			return r
		}, wantSent: 1},
		{name: "body past the replay buffer", policy: testkit.Fast, opts: []retryhttp.Option{retryhttp.WithReplayBuffer(10)},
			prepare: func(r *http.Request) *http.Request {
				r.Body = io.NopCloser(bytes.NewReader(payload))
				return r
			}, wantSent: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, reg := newMetrics(t)
			var sent atomic.Int32
			base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				sent.Add(1)
				if r.Body != nil {
					_, _ = io.Copy(io.Discard, r.Body)
					r.Body.Close()
				}
				res := testkit.Resp(503, "")
				if c.retryAft != "" {
					res.Header.Set("Retry-After", c.retryAft)
				}
				return res, nil
			})
			opts := append([]retryhttp.Option{retryhttp.WithPolicy(c.policy), retryhttp.WithBudget(nil), retryhttp.WithMetrics(m)}, c.opts...)
			rt := retryhttp.New(base, opts...)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if c.cancelIn > 0 {
				time.AfterFunc(c.cancelIn, cancel)
			}
			req := testkit.NewReq(t, http.MethodPut, "http://x.invalid/", nil).WithContext(ctx)
			if c.prepare != nil {
				req = c.prepare(req)
			}
			res, err := rt.RoundTrip(req)
			if err == nil {
				res.Body.Close()
			}
			assert.Equal(t, int32(c.wantSent), sent.Load())
			assert.Equal(t, c.wantRetry, counterSum(t, reg, "retryhttp_retries_total"), "retries_total counts only retries sent")
			assert.Equal(t, c.wantRetry, counterSum(t, reg, "retryhttp_retry_delay_seconds"), "retry_delay_seconds observes only retries sent")
			assert.Equal(t, float64(c.wantSent), counterSum(t, reg, "retryhttp_attempts_total"))
			assert.Equal(t, 1.0, counterSum(t, reg, "retryhttp_requests_total"))
		})
	}
}

func mustBudget(t *testing.T, c retryhttp.BudgetConfig) *retryhttp.Budget {
	t.Helper()
	b, err := retryhttp.NewBudget(c)
	require.NoError(t, err)
	return b
}

func TestMetricsOutcomesOfABudgetRefusal(t *testing.T) {
	m, reg := newMetrics(t)
	b := mustBudget(t, retryhttp.BudgetConfig{Ratio: 1e-9, MinPerSecond: 1e-9})
	var sent atomic.Int32
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) { sent.Add(1); return testkit.Resp(503, ""), nil })
	rt := retryhttp.New(base, retryhttp.WithPolicy(testkit.Fast), retryhttp.WithBudget(b), retryhttp.WithMetrics(m))
	for range 2 {
		res, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil))
		require.NoError(t, err)
		res.Body.Close()
	}
	assert.Equal(t, int32(3), sent.Load(), "one floor token: one retry in all")
	assert.Equal(t, 1.0, counterSum(t, reg, "retryhttp_retries_total"))
	assert.Equal(t, 2.0, testutil.ToFloat64(prometheusCounter(t, reg, "retryhttp_budget_refusals_total")))
}

// prometheusCounter wraps a gathered counter's value as a collector for testutil.
func prometheusCounter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	v := counterSum(t, reg, name)
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	c.Add(v)
	return c
}
