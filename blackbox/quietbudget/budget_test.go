package quietbudget_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/retryhttp/retryhttp"
)

// docs/budget.md: "a client with little traffic holds two retries and gets
// one more every two minutes, so that one of its requests can still take
// the default Policy's three attempts". A client that sends one request a
// minute meets a 503 twice, half an hour in: it gets both retries.
func TestAQuietClientMeetingA503GetsItsRetries(t *testing.T) {
	s := newServer(t)
	tr := retryhttp.New(nil)
	c := withClock(tr)
	for i := range 60 {
		if i == 30 {
			s.failFirst(id(i), 2)
		}
		require.Equal(t, http.StatusOK, get(t, tr, s.URL, id(i)), "request %d", i)
		c.Advance(time.Minute)
	}
	assert.Equal(t, 62, s.attempts, "one request took three attempts")
}

// The Ratio promises a client retries of up to 20% of its requests (the
// 5% case is in docs/budget.md: "at 5% transient failures nothing is
// refused"). A client sending one request a second, or two, whose every
// 20th request fails its first attempt once, needs a quarter of that: each
// of its requests must earn in the second it falls in, though it sends far
// fewer than the 16 a slot after which the budget reads the clock less.
func TestAClientOfOneRequestASecondRetriesFivePercentTransientFailures(t *testing.T) {
	for _, every := range []time.Duration{time.Second, 500 * time.Millisecond} {
		t.Run(fmt.Sprintf("a request every %v", every), func(t *testing.T) {
			s := newServer(t)
			tr := retryhttp.New(nil)
			c := withClock(tr)
			n := int(20 * time.Minute / every)
			failures, refused := 0, 0
			for i := range n {
				if i%20 == 19 {
					s.failFirst(id(i), 1)
					failures++
				}
				if get(t, tr, s.URL, id(i)) != http.StatusOK {
					refused++
				}
				c.Advance(every)
			}
			assert.Zero(t, refused, "%d of %d single transient failures were not retried, at 5%% of the requests", refused, failures)
		})
	}
}

// A shared default Budget is one limit: its floor's two retries are shared
// by every Transport that uses it (docs/budget.md, "Sharing a budget").
func TestASharedDefaultBudgetHoldsTwoRetriesForAll(t *testing.T) {
	b, err := retryhttp.NewBudget(retryhttp.BudgetConfig{})
	require.NoError(t, err)
	s := newServer(t)
	a := retryhttp.New(nil, retryhttp.WithBudget(b))
	bb := retryhttp.New(nil, retryhttp.WithBudget(b))
	ca, cb := withClock(a), withClock(bb)
	s.failFirst("a", 2)
	s.failFirst("b", 2)
	assert.Equal(t, http.StatusOK, get(t, a, s.URL, "a"), "a: the two retries held")
	assert.Equal(t, http.StatusServiceUnavailable, get(t, bb, s.URL, "b"), "b: none left (0.4 earned)")
	assert.Equal(t, 4, s.attempts)
	// Four minutes on, by both clocks: two refilled, for either.
	ca.Advance(4 * time.Minute)
	cb.Advance(4 * time.Minute)
	s.failFirst("b2", 2)
	assert.Equal(t, http.StatusOK, get(t, bb, s.URL, "b2"))
}

// The gauge retryhttp_budget_retries_available shows the default floor's
// two retries on a new Transport, and what is left after a request spent
// them (0.2 earned, and a refill of one every two minutes). Wall clock: the
// gauge reads Budget.Available, which reads it.
func TestTheGaugeShowsTheDefaultFloor(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := retryhttp.NewMetrics(reg)
	require.NoError(t, err)
	s := newServer(t)
	tr := retryhttp.New(nil, retryhttp.WithMetrics(m))
	gauge := func() float64 {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "retryhttp_budget_retries_available" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no retryhttp_budget_retries_available")
		return 0
	}
	assert.Equal(t, float64(retryhttp.DefaultBudgetFloorHold), gauge())
	s.failFirst("1", 2)
	start := time.Now()
	assert.Equal(t, http.StatusOK, get(t, tr, s.URL, "1"))
	refill := time.Since(start).Seconds() * retryhttp.DefaultBudgetMinPerSecond
	assert.InDelta(t, retryhttp.DefaultBudgetRatio, gauge(), refill+0.01)
}
