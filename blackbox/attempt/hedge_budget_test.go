package attempt_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// counterSum sums the counter family name in reg.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// slowServer answers every request after d, and counts them.
func slowServer(t *testing.T, d time.Duration) (*httptest.Server, *atomic.Int32) {
	var recv atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		recv.Add(1)
		time.Sleep(d)
	}))
	t.Cleanup(srv.Close)
	return srv, &recv
}

// Hedges are paid only from what requests earned, never from the floor: a
// quiet client (one request) sends no hedge, and 30 slow requests send at
// most Ratio of them (6), however slow, and some; the metrics count them as
// the recorder does, and the server received no request the recorder did
// not count as an attempt or a transparent retry.
func TestHedgesOnlyFromEarnings(t *testing.T) {
	srv, recv := slowServer(t, 40*time.Millisecond)
	reg := prometheus.NewRegistry()
	m, err := retryhttp.NewMetrics(reg)
	require.NoError(t, err)
	var ev eventCounts
	tr := retryhttp.New(nil, retryhttp.WithMetrics(m), retryhttp.WithRecorder(ev.rec),
		retryhttp.WithHedging(retryhttp.Hedging{Delay: 5 * time.Millisecond, MaxHedges: 2}))
	get := func() {
		resp, err := roundTrip(t, tr, mustReq(t, http.MethodGet, srv.URL, nil))
		require.NoError(t, err)
		resp.Body.Close()
	}
	get()
	assert.Equal(t, 0, ev.get(retryhttp.EventHedge), "one request earns 0.2 of a hedge: none is sent")
	for range 29 {
		get()
	}
	hedges := ev.get(retryhttp.EventHedge)
	assert.LessOrEqual(t, hedges, 6)
	assert.Positive(t, hedges)
	assert.Equal(t, float64(hedges), counterSum(t, reg, "retryhttp_hedges_total"))
	srv.Close() // waits for the requests in flight: a hedge that lost may still be there
	assert.GreaterOrEqual(t, int(recv.Load()), 30)
	assert.LessOrEqual(t, int(recv.Load()), ev.get(retryhttp.EventAttempt)+ev.get(retryhttp.EventTransparentRetry),
		"every request the server received was counted (a hedge canceled on its way may not reach it)")
}

// retryhttp_budget_refusals_total counts the retries the budget refused
// (an alert reads any rate of it as a failing dependency), never the
// hedges it did not pay for: 20 slow requests that all succeed at their
// first try, with hedging on and hedges refused as a rule at low traffic,
// count no refusal.
func TestHedgesTheBudgetDeclinesAreNoRetryRefusals(t *testing.T) {
	srv, _ := slowServer(t, 30*time.Millisecond)
	reg := prometheus.NewRegistry()
	m, err := retryhttp.NewMetrics(reg)
	require.NoError(t, err)
	var ev eventCounts
	tr := retryhttp.New(nil, retryhttp.WithMetrics(m), retryhttp.WithRecorder(ev.rec),
		retryhttp.WithHedging(retryhttp.Hedging{Delay: 5 * time.Millisecond}))
	for range 20 {
		resp, err := roundTrip(t, tr, mustReq(t, http.MethodGet, srv.URL, nil))
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		resp.Body.Close()
	}
	assert.Zero(t, counterSum(t, reg, "retryhttp_retries_total"))
	assert.Zero(t, counterSum(t, reg, "retryhttp_budget_refusals_total"), "no retry was refused")
	assert.Zero(t, ev.get(retryhttp.EventBudgetRefusal))
	assert.Less(t, ev.get(retryhttp.EventHedge), 20, "the budget declined hedges that were due")
}
