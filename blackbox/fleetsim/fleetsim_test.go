// Package fleetsim tests internal/fleet, the simulation behind retryhttp
// storm, against the model docs/command.md describes: Poisson arrivals at
// -load of -capacity, a FIFO server that serves -capacity a second, each
// client through a Transport of its own, no goroutine left behind, and
// what the README says the defaults do to a fleet.
package fleetsim_test

import (
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/retryhttp/retryhttp/internal/fleet"
)

func none() fleet.Policy {
	return fleet.Policy{Name: "none", Options: func() []retryhttp.Option {
		return []retryhttp.Option{retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 1})}
	}}
}

func simulate(c fleet.Config, ps ...fleet.Policy) []*fleet.Run {
	runs := fleet.NewRuns(&c, ps)
	fleet.Simulate(&c, runs)
	return runs
}

// Arrivals are a Poisson stream of Load×Capacity a second: the mean count
// a second is the rate, and so is its variance (within generous bounds
// for 120 samples).
func TestArrivalsArePoissonAtLoadTimesCapacity(t *testing.T) {
	c := fleet.Config{Clients: 100, Capacity: 1000, Load: 0.5, Duration: 120 * time.Second,
		OutageAt: 60 * time.Second, Outage: 0, AttemptTimeout: 0, Seed: 7}
	r := simulate(c, none())[0]
	_, offered := r.Series.PerSecond(time.Second)
	var mean, varc float64
	for _, v := range offered {
		mean += v
	}
	mean /= float64(len(offered))
	for _, v := range offered {
		varc += (v - mean) * (v - mean)
	}
	varc /= float64(len(offered) - 1)
	assert.InDelta(t, 500, mean, 4*math.Sqrt(500.0/120))
	assert.InDelta(t, 1, varc/mean, 0.4, "a Poisson count's variance is its mean")
	assert.Equal(t, r.Result.Requests, r.Result.Attempts, "no retries")
}

// The server serves Capacity a second, first come first served, whatever
// it is offered: at twice its capacity with attempts that never time out,
// it answers 1,000 a second.
func TestTheServerServesCapacityASecond(t *testing.T) {
	c := fleet.Config{Clients: 10, Capacity: 1000, Load: 2, Duration: 10 * time.Second,
		OutageAt: 5 * time.Second, Outage: 0, AttemptTimeout: 0, Seed: 1}
	r := simulate(c, none())[0]
	assert.InDelta(t, 10_000, r.Result.Succeeded, 2)
	assert.InDelta(t, 20_000, r.Result.Requests, 4*math.Sqrt(20_000))
}

// Each client has a Transport of its own: the policy's options are asked
// for once per client that sends, never for a request.
func TestEachClientHasATransportOfItsOwn(t *testing.T) {
	var calls atomic.Int64
	p := fleet.Policy{Name: "counted", Options: func() []retryhttp.Option { calls.Add(1); return nil }}
	c := fleet.Config{Clients: 50, Capacity: 1000, Load: 0.5, Duration: 10 * time.Second,
		OutageAt: 5 * time.Second, Outage: time.Second, AttemptTimeout: time.Second, Seed: 1}
	r := simulate(c, p)[0]
	assert.Greater(t, r.Result.Requests, 4000)
	assert.Equal(t, int64(50), calls.Load())
}

// A run leaves no goroutine behind: its procs end with it.
func TestASimulationLeavesNoGoroutines(t *testing.T) {
	before := testkit.SettleGoroutines(0, 200*time.Millisecond)
	c := fleet.Config{Clients: 1000, Capacity: 1000, Load: 0.8, Duration: 30 * time.Second,
		OutageAt: 10 * time.Second, Outage: 5 * time.Second, AttemptTimeout: time.Second, Seed: 1}
	runs := simulate(c, none(), fleet.Policy{Name: "default", Options: func() []retryhttp.Option { return nil }})
	require.Greater(t, runs[1].Procs, 1000, "thousands of requests were in flight at the end of the stall")
	after := testkit.SettleGoroutines(before, 2*time.Second)
	assert.LessOrEqual(t, after, before, testkit.GoroutineDump())
}

// The README: the retry budget "holds the retries to 20% of the requests,
// fleet-wide, plus two each client holds for a quiet spell". Over the run
// retryhttp storm describes, the fleet's retries are at most 20% of its
// requests plus the two retries each of its 1,000 Transports held and the
// one every two minutes each refills.
func TestTheDefaultsHoldAFleetsRetriesToTwentyPercentPlusTheFloors(t *testing.T) {
	c := fleet.Config{Clients: 1000, Capacity: 1000, Load: 0.8, Duration: 120 * time.Second,
		OutageAt: 20 * time.Second, Outage: 5 * time.Second, Trigger: fleet.Stall, AttemptTimeout: time.Second, Seed: 1}
	def := simulate(c, fleet.Policy{Name: "default", Options: func() []retryhttp.Option { return nil }})[0].Result
	retries := float64(def.Attempts - def.Requests)
	floors := float64(c.Clients) * (retryhttp.DefaultBudgetFloorHold + c.Duration.Seconds()*retryhttp.DefaultBudgetMinPerSecond)
	t.Logf("%d requests, %.0f retries: %.1f%% of the requests; the floors allow %.0f", def.Requests, retries, 100*retries/float64(def.Requests), floors)
	assert.LessOrEqual(t, retries, retryhttp.DefaultBudgetRatio*float64(def.Requests)+floors)
	assert.Greater(t, retries, 0.1*float64(def.Requests), "the run did retry: the bound is not empty")
}
