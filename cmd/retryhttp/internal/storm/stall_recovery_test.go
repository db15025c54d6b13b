package storm

import (
	"io"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/retryhttp/retryhttp/internal/fleet"
)

// The claims of issue 24, at retryhttp storm's defaults: 1,000 clients,
// 80% of a server that serves 1,000 requests a second, a 5 s stall at
// 20 s, attempts that time out after 1 s, 120 s.

// defaultRuns are one run of the defaults for every policy, shared by the
// tests of this package.
var defaultRuns = sync.OnceValue(func() []*fleet.Run {
	c := defaults()
	runs := fleet.NewRuns(&c, policies)
	fleet.Simulate(&c, runs)
	return runs
})

// defaultRun returns the results of defaultRuns by policy.
func defaultRun() map[string]fleet.Result {
	out := map[string]fleet.Result{}
	for _, r := range defaultRuns() {
		out[r.Policy.Name] = r.Result
	}
	return out
}

// defaults returns the Config of retryhttp storm without flags.
func defaults() fleet.Config {
	var c fleet.Config
	fs, o := newFlags(&c, io.Discard)
	if err := fs.Parse(nil); err != nil {
		panic(err)
	}
	if err := check(&c, o.trigger); err != nil {
		panic(err)
	}
	return c
}

func TestNaiveRetriesNeverRecoverFromAStall(t *testing.T) {
	naive := defaultRun()["naive"]
	assert.Nil(t, naive.RecoveredAfterS, "recovered_after_s")
	assert.Less(t, naive.GoodputAfter, naive.GoodputBefore/2, "goodput after the stall is below half of before")
	assert.Greater(t, naive.PeakAmplification, 2.5, "every request takes its three attempts")
}

func TestNoRetriesRecoverFromAStall(t *testing.T) {
	none := defaultRun()["none"]
	require.NotNil(t, none.RecoveredAfterS)
	// The stall leaves 4,000 requests queued that time out before they
	// are served; with 200 requests a second to spare, the queue is under
	// a second's work again about 15 s later.
	assert.InDelta(t, 15, *none.RecoveredAfterS, 3)
	assert.Equal(t, 1.0, none.PeakAmplification)
}

// The defaults recover, though later than no retries at all: after the
// stall every attempt times out, and the budget's 20% fill most of the 25%
// the server has to spare, so the queue drains slowly. (Issue 24 asked for
// a recovery within 5 s of the stall's end; no policy gets there, since
// without retries the queue alone takes 15 s to drain.)
func TestDefaultsRecoverFromAStall(t *testing.T) {
	def := defaultRun()["default"]
	require.NotNil(t, def.RecoveredAfterS, "the defaults recover within the run")
	assert.Less(t, *def.RecoveredAfterS, 90.0)
	assert.GreaterOrEqual(t, def.GoodputLast10s, 0.9*def.GoodputBefore, "goodput is back by the end")
	assert.Less(t, def.PeakAmplification, 2.5, "the budget holds the retries well below naive's")
}

// A stall answers nothing: timeouts are not throttles, so the adaptive
// rate sleeps through it and its run is the defaults'. An outage of 503s
// wakes it: the fleet recovers as soon as the server does.
func TestTheAdaptiveRateInAStallAndInAnOutageOf503s(t *testing.T) {
	stall := defaultRun()
	def, adaptive := stall["default"], stall["adaptive"]
	adaptive.Policy, adaptive.About = def.Policy, def.About
	assert.Equal(t, def, adaptive, "the same run as the defaults'")

	c := defaults()
	fs, o := newFlags(&c, io.Discard)
	require.NoError(t, fs.Parse([]string{"-trigger", "503", "-policies", "default,adaptive"}))
	require.NoError(t, check(&c, o.trigger))
	runs := fleet.NewRuns(&c, []fleet.Policy{policies[2], policies[3]})
	fleet.Simulate(&c, runs)
	for _, r := range runs {
		require.NotNil(t, r.Result.RecoveredAfterS, r.Policy.Name)
		assert.LessOrEqual(t, *r.Result.RecoveredAfterS, 5.0, r.Policy.Name)
	}
	assert.Equal(t, "adaptive", runs[1].Policy.Name)
}
