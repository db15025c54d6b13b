package retryhttpotel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/retryhttp/retryhttp"
	retryhttpotel "github.com/retryhttp/retryhttp/otel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// metricReader is a real SDK meter provider read on demand.
type metricReader struct {
	reader   *sdkmetric.ManualReader
	provider *sdkmetric.MeterProvider
}

func newMetricReader(t *testing.T) *metricReader {
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return &metricReader{reader: r, provider: mp}
}

func (m *metricReader) collect(t *testing.T) []metricdata.Metrics {
	var rm metricdata.ResourceMetrics
	require.NoError(t, m.reader.Collect(context.Background(), &rm))
	var out []metricdata.Metrics
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name == retryhttpotel.ScopeName {
			out = append(out, sm.Metrics...)
		}
	}
	return out
}

// sum is the total of the counter name.
func (m *metricReader) sum(t *testing.T, name string) int64 {
	var total int64
	for _, mt := range m.collect(t) {
		if s, ok := mt.Data.(metricdata.Sum[int64]); ok && mt.Name == name {
			for _, p := range s.DataPoints {
				total += p.Value
			}
		}
	}
	return total
}

// The Prometheus series each instrument matches, and the label each
// attribute matches.
var promNames = map[string]string{
	retryhttpotel.MetricRequests:       "retryhttp_requests_total",
	retryhttpotel.MetricAttempts:       "retryhttp_attempts_total",
	retryhttpotel.MetricRetries:        "retryhttp_retries_total",
	retryhttpotel.MetricRetryDelay:     "retryhttp_retry_delay_seconds",
	retryhttpotel.MetricBudgetRefusals: "retryhttp_budget_refusals_total",
	retryhttpotel.MetricHeld:           "retryhttp_held_requests_total",
	retryhttpotel.MetricPaced:          "retryhttp_paced_requests_total",
	retryhttpotel.MetricPaceDelay:      "retryhttp_pace_delay_seconds",
	retryhttpotel.MetricHedges:         "retryhttp_hedges_total",
	retryhttpotel.MetricHedgeWins:      "retryhttp_hedge_wins_total",

	retryhttpotel.MetricTransparentRetries: "retryhttp_transparent_retries_total",
}

var promLabels = map[string]string{
	"http.request.method":       "method",
	"http.response.status_code": "code",
	"error.type":                "code",
	"retryhttp.outcome":         "outcome",
	"retryhttp.reason":          "reason",
	"retryhttp.wait_source":     "source",
}

// otelSeries returns the OpenTelemetry points as series keyed like
// promSeries. Prometheus's "error" and "other" codes are both error.type
// "_OTHER" here: they are added up under code=_OTHER.
func otelSeries(t *testing.T, m *metricReader) map[string]float64 {
	out := map[string]float64{}
	for _, mt := range m.collect(t) {
		name, ok := promNames[mt.Name]
		require.True(t, ok, "an instrument with no Prometheus twin: %s", mt.Name)
		switch d := mt.Data.(type) {
		case metricdata.Sum[int64]:
			assert.True(t, d.IsMonotonic, mt.Name)
			for _, p := range d.DataPoints {
				out[name+labelsOf(p.Attributes.ToSlice())] += float64(p.Value)
			}
		case metricdata.Histogram[float64]:
			assert.Equal(t, "s", mt.Unit)
			for _, p := range d.DataPoints {
				out[name+labelsOf(p.Attributes.ToSlice())] += float64(p.Count)
				out[name+"_sum"+labelsOf(p.Attributes.ToSlice())] += p.Sum
			}
		default:
			t.Fatalf("%s: unexpected data %T", mt.Name, mt.Data)
		}
	}
	return out
}

func labelsOf(attrs []attribute.KeyValue) string {
	var pairs []string
	for _, a := range attrs {
		pairs = append(pairs, promLabels[string(a.Key)]+"="+a.Value.Emit())
	}
	sort.Strings(pairs)
	return "{" + strings.Join(pairs, ",") + "}"
}

// promSeries returns what reg holds, keyed "name{label=value,...}", the
// budget's gauge left out; codes "error" and "other" are added up as
// "_OTHER".
func promSeries(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	families, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() == "retryhttp_budget_retries_available" {
			continue
		}
		for _, m := range f.GetMetric() {
			var pairs []string
			for _, l := range m.GetLabel() {
				v := l.GetValue()
				if l.GetName() == "code" && (v == "error" || v == "other") {
					v = "_OTHER"
				}
				pairs = append(pairs, l.GetName()+"="+v)
			}
			sort.Strings(pairs)
			key := "{" + strings.Join(pairs, ",") + "}"
			switch {
			case m.GetCounter() != nil:
				out[f.GetName()+key] += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				out[f.GetName()+key] += float64(m.GetHistogram().GetSampleCount())
				out[f.GetName()+"_sum"+key] += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// oddBase answers like its base, except for the paths /odd (status 999)
// and /none (no response).
type oddBase struct{ base http.RoundTripper }

func (b oddBase) RoundTrip(r *http.Request) (*http.Response, error) {
	switch r.URL.Path {
	case "/odd":
		return &http.Response{StatusCode: 999, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
	case "/none":
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	}
	return b.base.RoundTrip(r)
}

// NewMetrics records what the Prometheus Metrics count, under the same
// label values, on every path: retries, give-ups, odd statuses, no
// response, the budget refusing, hedges, a host's adaptive rate pacing.
func TestMetricsMatchThePrometheusSeries(t *testing.T) {
	var flaky, slow, throttled atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/flaky":
			if flaky.Add(1)%3 != 0 {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		case "/retry-after":
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
		case "/missing":
			w.WriteHeader(http.StatusNotFound)
		case "/down":
			w.WriteHeader(http.StatusBadGateway)
		case "/throttled":
			if throttled.Add(1) <= 2 {
				w.WriteHeader(http.StatusTooManyRequests) // bare: no Retry-After, no quota
			}
		case "/slow":
			if slow.Add(1)%2 == 1 {
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			}
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	reader := newMetricReader(t)
	otelOpt, err := retryhttpotel.NewMetrics(reader.provider)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	prom, err := retryhttp.NewMetrics(reg)
	require.NoError(t, err)
	budget, err := retryhttp.NewBudget(retryhttp.BudgetConfig{Ratio: 0.01, MinPerSecond: 0.01})
	require.NoError(t, err)
	rt := retryhttp.New(oddBase{http.DefaultTransport}, otelOpt, retryhttp.WithMetrics(prom), fast,
		retryhttp.WithBudget(nil), retryhttp.WithHedging(retryhttp.Hedging{Delay: 20 * time.Millisecond}))
	tight := retryhttp.New(oddBase{http.DefaultTransport}, otelOpt, retryhttp.WithMetrics(prom), fast, retryhttp.WithBudget(budget))
	paced := retryhttp.New(oddBase{http.DefaultTransport}, otelOpt, retryhttp.WithMetrics(prom), fast,
		retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{MinRate: 5}))

	send := func(rt http.RoundTripper, method, path string) {
		req, err := http.NewRequest(method, srv.URL+path, nil)
		require.NoError(t, err)
		resp, err := rt.RoundTrip(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	for range 3 {
		send(rt, http.MethodGet, "/flaky")
	}
	send(rt, http.MethodGet, "/retry-after")
	send(rt, http.MethodGet, "/missing")
	send(rt, http.MethodPost, "/down")
	send(rt, "PROPFIND", "/down")
	send(rt, http.MethodGet, "/odd")
	send(rt, http.MethodPut, "/none")
	for range 4 {
		send(rt, http.MethodGet, "/slow")
	}
	for range 20 {
		send(tight, http.MethodDelete, "/down")
	}
	// A bare 429 wakes the host's adaptive rate; one more, a second later
	// (the least time between cuts), cuts it to MinRate, with none of the
	// requests measured accepted: the next request waits for it (up to
	// 200 ms).
	noRetries := retryhttp.ContextWithoutRetries(context.Background())
	for i := range 3 {
		if i == 1 {
			time.Sleep(1100 * time.Millisecond)
		}
		req, err := http.NewRequestWithContext(noRetries, http.MethodGet, srv.URL+"/throttled", nil)
		require.NoError(t, err)
		resp, err := paced.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
	}
	// A server that resets every reused connection: net/http sends each
	// GET after the first again, on a new connection, by itself.
	resetting := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Value(connKey{}).(*atomic.Int32).Add(1) == 1 {
			return
		}
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}))
	resetting.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, new(atomic.Int32))
	}
	resetting.Start()
	t.Cleanup(resetting.Close)
	own := &http.Transport{}
	t.Cleanup(own.CloseIdleConnections)
	resends := retryhttp.New(own, otelOpt, retryhttp.WithMetrics(prom))
	for range 3 {
		req, err := http.NewRequest(http.MethodGet, resetting.URL, nil)
		require.NoError(t, err)
		resp, err := resends.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
	}

	want := promSeries(t, reg)
	got := otelSeries(t, reader)
	require.NotEmpty(t, want)
	for _, name := range []string{"retryhttp_hedges_total", "retryhttp_budget_refusals_total", "retryhttp_retry_delay_seconds",
		"retryhttp_transparent_retries_total", "retryhttp_paced_requests_total", "retryhttp_pace_delay_seconds"} {
		assert.True(t, hasSeries(want, name), "the test reached no %s", name)
	}
	for k, v := range want {
		if strings.Contains(k, "_sum{") {
			assert.InDelta(t, v, got[k], 1e-9, k)
			continue
		}
		assert.Equal(t, v, got[k], k)
	}
	for k := range got {
		_, ok := want[k]
		assert.True(t, ok, "OpenTelemetry has %s, which Prometheus has not", k)
	}
	if t.Failed() {
		fmt.Println(want, got)
	}
}

type connKey struct{}

func hasSeries(m map[string]float64, name string) bool {
	for k := range m {
		if strings.HasPrefix(k, name+"{") {
			return true
		}
	}
	return false
}

// The instruments follow OpenTelemetry's conventions: dotted names, UCUM
// units, curly-brace annotations for counts.
func TestInstrumentNamesAndUnits(t *testing.T) {
	reader := newMetricReader(t)
	opt, err := retryhttpotel.NewMetrics(reader.provider)
	require.NoError(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	rt := retryhttp.New(nil, opt, fast)
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	units := map[string]string{}
	for _, m := range reader.collect(t) {
		units[m.Name] = m.Unit
		assert.NotEmpty(t, m.Description, m.Name)
	}
	assert.Equal(t, map[string]string{
		"retryhttp.requests":    "{request}",
		"retryhttp.attempts":    "{attempt}",
		"retryhttp.retries":     "{retry}",
		"retryhttp.retry.delay": "s",
	}, units)
}
