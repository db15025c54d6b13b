package blackbox_test

import (
	"context"
	"testing"

	"github.com/retryhttp/retryhttp"
	retryhttpotel "github.com/retryhttp/retryhttp/otel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// otelhttp's own http.client.request.duration counts attempts, one per span.
func TestOtelhttpDurationCountsAttempts(t *testing.T) {
	srv := newScript(t, 503, 503, 200)
	tr := newTracing(t)
	m := newMeter(t)
	rt := retryhttp.New(retryhttpotel.NewBase(nil, otelhttp.WithTracerProvider(tr.tp), otelhttp.WithMeterProvider(m.mp)),
		retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil), mustMetrics(t, m))
	defer rt.CloseIdleConnections()
	_, _, err := do(t, rt, get(t, context.Background(), srv.URL))
	require.NoError(t, err)
	rm := m.collect(t)
	mm, ok := findMetric(rm, "http.client.request.duration")
	require.True(t, ok)
	var n uint64
	for _, dp := range mm.Data.(metricdata.Histogram[float64]).DataPoints {
		n += dp.Count
	}
	assert.Equal(t, uint64(3), n)
	assert.Equal(t, int64(3), total(sums(t, rm, retryhttpotel.MetricAttempts)))
	assert.Len(t, tr.clientSpans(), 3)
}

// resp.Request: without NewBase, a first-attempt response's Request is the
// caller's; with NewBase in the stack it should be too (net/http's
// transport sets it to the request it was given).
func TestResponseRequestIsTheCallers(t *testing.T) {
	srv := newScript(t, 200)
	for _, withOtel := range []bool{false, true} {
		var rt *retryhttp.Transport
		if withOtel {
			rt = retryhttp.New(retryhttpotel.NewBase(nil, otelOpts(newTracing(t))...))
		} else {
			rt = retryhttp.New(nil)
		}
		req := get(t, context.Background(), srv.URL)
		resp, _, err := do(t, rt, req)
		require.NoError(t, err)
		t.Logf("otel=%v: resp.Request is the caller's: %v; its traceparent %q", withOtel, resp.Request == req, resp.Request.Header.Get("Traceparent"))
		rt.CloseIdleConnections()
	}
}
