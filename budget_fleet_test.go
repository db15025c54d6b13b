package retryhttp_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/internal/fleet"
)

// A fleet of 1,000 clients, each with a default Transport and so a Budget
// of its own, sends 800 requests a second in all to a server that serves
// 1,000, which stalls for 5 s; attempts time out after 1 s (retryhttp
// storm's defaults). The budgets' floors add up: at the old 10 retries a
// second each, the fleet could retry 10,000 times a second, so every
// request took its three attempts and the server never got out of the
// work whose clients had given up. The default floor (two retries held,
// one every two minutes) leaves the fleet to the Ratio, and it recovers.
// (TestDefaultBudgetLetsAQuietClientRetry: what one quiet client keeps.)
func TestDefaultBudgetLetsAFleetRecoverFromAStall(t *testing.T) {
	c := fleet.Config{Clients: 1000, Capacity: 1000, Load: 0.8, Duration: 120 * time.Second,
		OutageAt: 20 * time.Second, Outage: 5 * time.Second, Trigger: fleet.Stall, AttemptTimeout: time.Second, Seed: 1}
	oldFloor := func() []retryhttp.Option {
		b, err := retryhttp.NewBudget(retryhttp.BudgetConfig{MinPerSecond: 10})
		require.NoError(t, err)
		return []retryhttp.Option{retryhttp.WithBudget(b)}
	}
	runs := fleet.NewRuns(&c, []fleet.Policy{
		{Name: "default", Options: func() []retryhttp.Option { return nil }},
		{Name: "floor of 10 a second", Options: oldFloor},
	})
	fleet.Simulate(&c, runs)
	def, old := runs[0].Result, runs[1].Result
	t.Logf("default: %+v", def)
	t.Logf("floor of 10 a second: %+v", old)

	require.NotNil(t, def.RecoveredAfterS, "the default budgets recover")
	assert.Less(t, *def.RecoveredAfterS, 90.0)
	assert.Less(t, def.PeakAmplification, 2.5, "well below naive's three attempts")

	assert.Nil(t, old.RecoveredAfterS, "floors of 10 a second never recover")
	assert.Less(t, old.GoodputAfter, old.GoodputBefore/2)
	assert.Greater(t, old.PeakAmplification, 2.9, "every request took its three attempts")
}
