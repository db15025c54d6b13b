package storm

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/retryhttp/retryhttp/internal/fleet"
)

// Output is what -json prints: the parameters of the run, so that it can
// be reproduced and compared, and a result per policy.
type Output struct {
	Parameters Parameters     `json:"parameters"`
	Results    []fleet.Result `json:"results"`
}

// Parameters are a run's parameters; times in seconds, rates per second.
type Parameters struct {
	Seed            uint64  `json:"seed"`
	Clients         int     `json:"clients"`
	Capacity        float64 `json:"capacity"`
	Load            float64 `json:"load"`
	Offered         float64 `json:"offered"`
	DurationS       float64 `json:"duration_s"`
	OutageAtS       float64 `json:"outage_at_s"`
	OutageS         float64 `json:"outage_s"`
	Trigger         string  `json:"trigger"`
	AttemptTimeoutS float64 `json:"attempt_timeout_s"`
	Shed429         bool    `json:"shed_429"`
	WindowS         float64 `json:"window_s"`
}

func parameters(c *fleet.Config) Parameters {
	return Parameters{Seed: c.Seed, Clients: c.Clients, Capacity: c.Capacity, Load: c.Load, Offered: c.Offered(),
		DurationS: c.Duration.Seconds(), OutageAtS: c.OutageAt.Seconds(), OutageS: c.Outage.Seconds(), Trigger: c.Trigger.String(),
		AttemptTimeoutS: c.AttemptTimeout.Seconds(), Shed429: c.Shed, WindowS: fleet.Window(c.Offered()).Seconds()}
}

func results(runs []*fleet.Run) []fleet.Result {
	out := make([]fleet.Result, len(runs))
	for i, r := range runs {
		out[i] = r.Result
	}
	return out
}

func writeJSON(w io.Writer, c *fleet.Config, runs []*fleet.Run) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(Output{Parameters: parameters(c), Results: results(runs)})
}

// describe says in a sentence what was simulated.
func describe(c *fleet.Config) string {
	var outage string
	switch c.Trigger {
	case fleet.Stall:
		outage = fmt.Sprintf("the server stalls for %v at %v (serves nothing; requests queue)", c.Outage, c.OutageAt)
	case fleet.Unavailable:
		outage = fmt.Sprintf("the server answers 503 for %v from %v", c.Outage, c.OutageAt)
	case fleet.Drop:
		outage = fmt.Sprintf("the server resets every connection for %v from %v", c.Outage, c.OutageAt)
	}
	timeout := "attempts never time out"
	if c.AttemptTimeout > 0 {
		timeout = fmt.Sprintf("attempts time out after %v and the server does their work anyway", c.AttemptTimeout)
	}
	shed := ""
	if c.Shed {
		shed = "; it answers 429 (Retry-After: 1) above a second of queued work"
	}
	return fmt.Sprintf("%d clients start %g requests/s (Poisson, %g of the server's %g/s, served first come first served); %s; %s%s; %v simulated, seed %d.",
		c.Clients, c.Offered(), c.Load, c.Capacity, timeout, outage, shed, c.Duration, c.Seed)
}

func printTable(w io.Writer, c *fleet.Config, runs []*fleet.Run) {
	fmt.Fprintln(w, describe(c))
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-9s %28s  %13s  %15s\n", "", "goodput (requests/s)", "peak", "recovered")
	fmt.Fprintf(w, "%-9s %9s %9s %9s  %13s  %15s\n", "policy", "before", "during", "after", "amplification", "after the outage")
	for _, r := range runs {
		res := r.Result
		rec := "never"
		if res.RecoveredAfterS != nil {
			rec = fmt.Sprintf("%.1f s", *res.RecoveredAfterS)
		}
		fmt.Fprintf(w, "%-9s %9.1f %9.1f %9.1f  %12.2fx  %15s\n", res.Policy, res.GoodputBefore, res.GoodputDuring, res.GoodputAfter, res.PeakAmplification, rec)
	}
	fmt.Fprintln(w)
	win := fleet.Window(c.Offered())
	fmt.Fprintf(w, "goodput: requests answered 200 in time; amplification: attempts per request started, over %v;\n", win)
	fmt.Fprintf(w, "recovered: from the outage's end until goodput over every %v stays within 10%% of before for %v.\n", win, fleet.RecoveredFor)
	for _, r := range runs {
		fmt.Fprintf(w, "%-9s %s\n", r.Result.Policy+":", r.Result.About)
	}
}
