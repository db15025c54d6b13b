package blackbox_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	retryhttpotel "github.com/retryhttp/retryhttp/otel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// statusBase answers with a fixed status, without a network.
func statusBase(code int) http.RoundTripper {
	return rtFunc(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		return &http.Response{StatusCode: code, Status: strconv.Itoa(code), Header: http.Header{},
			Body: io.NopCloser(strings.NewReader("x")), Request: r, ProtoMajor: 1, ProtoMinor: 1, Proto: "HTTP/1.1"}, nil
	})
}

func TestOddStatusesInMetricAttributes(t *testing.T) {
	for _, code := range []int{0, 99, 100, 101, 199, 599, 600, 999, 42} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			tr := newTracing(t)
			reg, m := promAndMeter(t)
			ev := &events{}
			rt := retryhttp.New(retryhttpotel.NewBase(statusBase(code), otelOpts(tr)...),
				retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil), retryhttpotel.WithEvents(),
				mustMetrics(t, m), retryhttp.WithMetrics(promMetrics(t, reg)), retryhttp.WithRecorder(ev.record))
			resp, err := rt.RoundTrip(get(t, context.Background(), "http://127.0.0.1:1/odd"))
			if err == nil {
				_ = resp.Body.Close()
			}
			t.Logf("status %d: resp %v err %v", code, resp != nil, err)
			requireSeriesAgree(t, reg, m)
			at := sums(t, m.collect(t), retryhttpotel.MetricAttempts)
			if code >= 100 && code <= 599 && err == nil {
				assert.Equal(t, map[string]int64{"http.request.method=GET,http.response.status_code=" + strconv.Itoa(code): 1}, at)
			} else {
				assert.Equal(t, map[string]int64{"error.type=_OTHER,http.request.method=GET": int64(len(ev.kind(retryhttp.EventAttempt)))}, nonZero(at))
			}
			for _, e := range ev.kind(retryhttp.EventAttempt) {
				if err == nil {
					assert.Equal(t, code, e.Code)
				}
			}
		})
	}
}

// A real server's 1xx informational responses before the final one.
func TestEarlyHintsThenFinal(t *testing.T) {
	srv := newFuncServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</x.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		if n == 1 {
			w.WriteHeader(503)
			return
		}
		w.WriteHeader(200)
	})
	tr := newTracing(t)
	reg, m := promAndMeter(t)
	rt := retryhttp.New(retryhttpotel.NewBase(nil, otelOpts(tr)...), retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil),
		mustMetrics(t, m), retryhttp.WithMetrics(promMetrics(t, reg)))
	defer rt.CloseIdleConnections()
	resp, _, err := do(t, rt, get(t, context.Background(), srv.URL))
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	requireSeriesAgree(t, reg, m)
}

func TestMethodAttributeValues(t *testing.T) {
	srv := newScript(t, 503, 200)
	reg, m := promAndMeter(t)
	rt := retryhttp.New(nil, retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil),
		mustMetrics(t, m), retryhttp.WithMetrics(promMetrics(t, reg)))
	defer rt.CloseIdleConnections()
	for _, method := range []string{"GET", "PURGE", "get", "PATCH", "QUERY"} {
		req, err := http.NewRequest(method, srv.URL, nil)
		require.NoError(t, err)
		req = req.WithContext(retryhttp.ContextWithIdempotent(context.Background()))
		_, _, err = do(t, rt, req)
		require.NoError(t, err)
	}
	requireSeriesAgree(t, reg, m)
	t.Logf("requests: %v", sums(t, m.collect(t), retryhttpotel.MetricRequests))
}

func TestNewMetricsTwiceOnOneProvider(t *testing.T) {
	srv := newScript(t, 200)
	m := newMeter(t)
	o1, err := retryhttpotel.NewMetrics(m.mp)
	require.NoError(t, err)
	o2, err := retryhttpotel.NewMetrics(m.mp)
	require.NoError(t, err)
	a := retryhttp.New(nil, o1)
	b := retryhttp.New(nil, o2)
	c := retryhttp.New(nil, o1)
	defer a.CloseIdleConnections()
	defer b.CloseIdleConnections()
	defer c.CloseIdleConnections()
	for _, rt := range []http.RoundTripper{a, b, c} {
		_, _, err := do(t, rt, get(t, context.Background(), srv.URL))
		require.NoError(t, err)
	}
	assert.Equal(t, map[string]int64{"http.request.method=GET,retryhttp.outcome=ok": 3}, sums(t, m.collect(t), retryhttpotel.MetricRequests))
	// one scope, not two
	rm := m.collect(t)
	assert.Len(t, rm.ScopeMetrics, 1)
}

func TestInstrumentsAndUnits(t *testing.T) {
	srv := newScript(t, 503, 200)
	m := newMeter(t)
	rt := retryhttp.New(nil, retryhttp.WithPolicy(fast), mustMetrics(t, m))
	defer rt.CloseIdleConnections()
	_, _, err := do(t, rt, get(t, context.Background(), srv.URL))
	require.NoError(t, err)
	rm := m.collect(t)
	want := map[string]string{
		retryhttpotel.MetricRequests: "{request}", retryhttpotel.MetricAttempts: "{attempt}", retryhttpotel.MetricRetries: "{retry}",
		retryhttpotel.MetricRetryDelay: "s",
	}
	for name, unit := range want {
		mm, ok := findMetric(rm, name)
		require.True(t, ok, name)
		assert.Equal(t, unit, mm.Unit, name)
	}
	mm, _ := findMetric(rm, retryhttpotel.MetricRetryDelay)
	h := mm.Data.(metricdata.Histogram[float64])
	require.Len(t, h.DataPoints, 1)
	assert.Less(t, h.DataPoints[0].Sum, 0.01, "the wait is in seconds (a few ms here)")
	t.Logf("delay buckets %v", h.DataPoints[0].Bounds)
	assert.Less(t, h.DataPoints[0].Bounds[0], 0.01, "the same buckets as Prometheus's (in seconds), not the SDK's default ms-scaled ones")
}

// A MeterProvider that fails to create instruments.
type failingMP struct {
	noop.MeterProvider
	failOn string
}

func (f failingMP) Meter(name string, opts ...metric.MeterOption) metric.Meter {
	return failingMeter{Meter: noop.NewMeterProvider().Meter(name), failOn: f.failOn}
}

type failingMeter struct {
	metric.Meter
	failOn string
}

var errBoom = errors.New("boom")

func (f failingMeter) Int64Counter(name string, o ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	c, _ := f.Meter.Int64Counter(name, o...)
	if f.failOn == "" || f.failOn == name {
		return c, errBoom
	}
	return c, nil
}

func (f failingMeter) Float64Histogram(name string, o ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	h, _ := f.Meter.Float64Histogram(name, o...)
	if f.failOn == "" || f.failOn == name {
		return h, errBoom
	}
	return h, nil
}

func TestFailingAndNoopMeterProviders(t *testing.T) {
	srv := newScript(t, 503, 200)
	for _, failOn := range []string{"", retryhttpotel.MetricRetryDelay, retryhttpotel.MetricHedgeWins} {
		t.Run("fail on "+failOn, func(t *testing.T) {
			opt, err := retryhttpotel.NewMetrics(failingMP{failOn: failOn})
			require.Error(t, err)
			assert.True(t, errors.Is(err, errBoom), "the instrument's error: %v", err)
			// Using the Option anyway must not break the Transport.
			if opt != nil {
				rt := retryhttp.New(nil, retryhttp.WithPolicy(fast), opt)
				defer rt.CloseIdleConnections()
				_, _, err = do(t, rt, get(t, context.Background(), srv.URL))
				assert.NoError(t, err)
			}
		})
	}
	t.Run("noop", func(t *testing.T) {
		opt, err := retryhttpotel.NewMetrics(noop.NewMeterProvider())
		require.NoError(t, err)
		rt := retryhttp.New(nil, retryhttp.WithPolicy(fast), opt)
		defer rt.CloseIdleConnections()
		_, _, err = do(t, rt, get(t, context.Background(), srv.URL))
		require.NoError(t, err)
	})
}

// Exemplars link the measurements to the caller's trace.
func TestExemplarsCarryTheCallersTrace(t *testing.T) {
	srv := newScript(t, 503, 200)
	tr := newTracing(t)
	m := newMeter(t)
	rt := retryhttp.New(retryhttpotel.NewBase(nil, otelOpts(tr)...), retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil), mustMetrics(t, m))
	defer rt.CloseIdleConnections()
	ctx, span := tr.caller(context.Background())
	_, _, err := do(t, rt, get(t, ctx, srv.URL))
	require.NoError(t, err)
	span.End()
	rm := m.collect(t)
	for _, name := range []string{retryhttpotel.MetricRequests, retryhttpotel.MetricAttempts, retryhttpotel.MetricRetries} {
		mm, ok := findMetric(rm, name)
		require.True(t, ok)
		var n int
		for _, dp := range mm.Data.(metricdata.Sum[int64]).DataPoints {
			for _, ex := range dp.Exemplars {
				n++
				assert.Equal(t, span.SpanContext().TraceID().String(), hexID(ex.TraceID), name)
				assert.Equal(t, span.SpanContext().SpanID().String(), hexID(ex.SpanID), "%s: the caller's span, not an attempt's", name)
			}
		}
		assert.NotZero(t, n, "%s has exemplars", name)
	}
	mm, _ := findMetric(rm, retryhttpotel.MetricRetryDelay)
	var n int
	for _, dp := range mm.Data.(metricdata.Histogram[float64]).DataPoints {
		for _, ex := range dp.Exemplars {
			n++
			assert.Equal(t, span.SpanContext().TraceID().String(), hexID(ex.TraceID))
		}
	}
	assert.NotZero(t, n)
}

func hexID(b []byte) string {
	const h = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, h[c>>4], h[c&15])
	}
	return string(out)
}

// Retry-After in seconds: the histogram and the event say seconds.
func TestRetryAfterWaitInSeconds(t *testing.T) {
	srv := newScript(t, 503, 200)
	srv.header = func(n int, h http.Header) {
		if n == 1 {
			h.Set("Retry-After", "1")
		}
	}
	tr := newTracing(t)
	reg, m := promAndMeter(t)
	ev := &events{}
	rt := retryhttp.New(retryhttpotel.NewBase(nil, otelOpts(tr)...), retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil),
		retryhttpotel.WithEvents(), mustMetrics(t, m), retryhttp.WithMetrics(promMetrics(t, reg)), retryhttp.WithRecorder(ev.record))
	defer rt.CloseIdleConnections()
	ctx, span := tr.caller(context.Background())
	start := time.Now()
	_, _, err := do(t, rt, get(t, ctx, srv.URL))
	require.NoError(t, err)
	span.End()
	require.GreaterOrEqual(t, time.Since(start), time.Second)
	re := eventsNamed(tr.named(t, "caller"), retryhttpotel.EventRetry)
	require.Len(t, re, 1)
	w, _ := eventAttr(re[0], retryhttpotel.WaitKey)
	assert.GreaterOrEqual(t, w.AsFloat64(), 1.0)
	assert.LessOrEqual(t, w.AsFloat64(), 1.11)
	rs := ev.kind(retryhttp.EventRetry)
	require.Len(t, rs, 1)
	assert.True(t, rs[0].ServerWait)
	assert.InDelta(t, rs[0].Wait.Seconds(), w.AsFloat64(), 1e-9)
	counts, hs := hist(t, m.collect(t), retryhttpotel.MetricRetryDelay)
	assert.Equal(t, map[string]uint64{"retryhttp.wait_source=retry_after": 1}, counts)
	assert.InDelta(t, rs[0].Wait.Seconds(), hs["retryhttp.wait_source=retry_after"], 1e-9)
	requireSeriesAgree(t, reg, m)
}
