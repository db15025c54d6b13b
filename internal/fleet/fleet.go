// Package fleet simulates, in virtual time, a fleet of clients that share
// one server through an outage, to see what a retry policy does to the
// server: whether it recovers once the outage ends, and how soon. It is
// what retryhttp storm runs, and what the library's own tests run to pin
// the retry budget's defaults.
//
// Each client sends through a real *retryhttp.Transport (its Policy,
// jitter, Budget and host hold), not a model of one: the simulation drives
// the Transport's clock, wait and randomness through internal/seam, and
// stands in for the network and the server with the Transport's base. The
// same Config gives the same results, to the byte.
package fleet

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/retryhttp/retryhttp"
)

// Config describes a run. Every field must hold a sensible value
// (retryhttp storm checks its flags).
type Config struct {
	Clients        int           // clients, each with a Transport of its own, sharing the load
	Capacity       float64       // requests per second the server serves, one at a time, in order of arrival
	Load           float64       // the requests the clients start (Poisson arrivals), as a fraction of Capacity
	Duration       time.Duration // simulated time
	OutageAt       time.Duration // when the outage starts
	Outage         time.Duration // how long it lasts
	Trigger        Trigger       // what the server does in it
	AttemptTimeout time.Duration // the clients give up on an attempt after this; the server still does its work. 0: never
	Shed           bool          // the server answers 429 with Retry-After: 1 above ShedAbove of queued work
	Seed           uint64
}

// Offered returns the requests per second the clients start.
func (c *Config) Offered() float64 { return c.Load * c.Capacity }

// Policy is one way the clients retry.
type Policy struct {
	Name  string
	About string // what it is, in a few words
	// Options returns the options of a client's Transport. It is called
	// once for each client, so that a Budget made there is the client's
	// own, as a Transport's default Budget is.
	Options func() []retryhttp.Option
}

// Run is the simulation of one policy, and what it measured.
type Run struct {
	Policy Policy
	Series *Series
	Result Result
	Procs  int // goroutines the run needed: the most requests in flight at once

	done atomic.Int64 // virtual time simulated so far
}

// Done returns how much of the simulated time the run has done; it may be
// called while the run goes on.
func (r *Run) Done() time.Duration { return time.Duration(r.done.Load()) }

// NewRuns returns a run for each policy, ready for Simulate.
func NewRuns(c *Config, policies []Policy) []*Run {
	runs := make([]*Run, len(policies))
	for i, p := range policies {
		runs[i] = &Run{Policy: p, Series: newSeries(c.Duration)}
	}
	return runs
}

// Simulate simulates every run, as many at once as there are processors:
// each one is deterministic on its own.
func Simulate(c *Config, runs []*Run) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, runtime.GOMAXPROCS(0))
	for _, r := range runs {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			w := newWorld(c, r.Policy, r.Series, &r.done)
			w.simulate()
			r.Procs = w.procs
			r.Result = r.Series.result(c, r.Policy)
		})
	}
	wg.Wait()
}
