package storm

import (
	"fmt"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/internal/fleet"
)

// policies are the policies a run compares, in the output's order; the
// policy of the -attempts, -jitter, -budget-... flags comes last, when any
// of them is given. A new way of retrying is one line here.
var policies = []fleet.Policy{
	{Name: "none", About: "no retries", Options: func() []retryhttp.Option {
		return []retryhttp.Option{retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 1})}
	}},
	{Name: "naive", About: "3 attempts 100 ms and 200 ms apart, no jitter, no budget, as a hand-written loop", Options: func() []retryhttp.Option {
		return []retryhttp.Option{retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, Jitter: retryhttp.NoJitter}), retryhttp.WithBudget(nil)}
	}},
	{Name: "default", About: "retryhttp's defaults", Options: func() []retryhttp.Option { return nil }},
	{Name: "adaptive", About: "retryhttp's defaults and the adaptive rate", Options: func() []retryhttp.Option {
		return []retryhttp.Option{retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{})}
	}},
}

// flagsPolicy is the policy the flags describe; budget nil: no budget.
func flagsPolicy(p retryhttp.Policy, budget *retryhttp.BudgetConfig) fleet.Policy {
	about := fmt.Sprintf("%d attempts, %v jitter from %v up to %v", p.MaxAttempts, p.Jitter, p.BaseDelay, p.MaxDelay)
	if budget == nil {
		about += ", no budget"
	} else {
		about += fmt.Sprintf(", budget %g of the requests over %v plus %g/s", budget.Ratio, budget.Window, budget.MinPerSecond)
	}
	return fleet.Policy{Name: "flags", About: about, Options: func() []retryhttp.Option {
		if budget == nil {
			return []retryhttp.Option{retryhttp.WithPolicy(p), retryhttp.WithBudget(nil)}
		}
		b, err := retryhttp.NewBudget(*budget) // checked when the flags were read
		if err != nil {
			panic(err)
		}
		return []retryhttp.Option{retryhttp.WithPolicy(p), retryhttp.WithBudget(b)}
	}}
}
