// Package storm is retryhttp storm: it runs the simulation of internal/fleet
// (a fleet of clients, each with a real *retryhttp.Transport, sharing one
// server through an outage, in virtual time) for each policy, and prints a
// table, JSON or a chart.
package storm

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/cmd/retryhttp/internal/cli"
	"github.com/retryhttp/retryhttp/internal/fleet"
)

// options are the flags of retryhttp storm beyond the Config's.
type options struct {
	trigger      string
	policies     string
	policy       cli.PolicyFlags
	budgetRatio  float64
	budgetMin    float64
	budgetWindow time.Duration
	noBudget     bool
	json         bool
	svg          string
	silent       bool
}

// newFlags returns the command's flags, which set c and o.
func newFlags(c *fleet.Config, stderr io.Writer) (*flag.FlagSet, *options) {
	fs := cli.NewFlagSet("storm", "[flags]", stderr)
	o := &options{}
	fs.IntVar(&c.Clients, "clients", 1000, "clients, each with a Transport of its own, sharing the load")
	fs.Float64Var(&c.Capacity, "capacity", 1000, "requests per second the server serves, one at a time, first come first served")
	fs.Float64Var(&c.Load, "load", 0.8, "the requests the clients start (Poisson arrivals), as a fraction of -capacity")
	fs.DurationVar(&c.Duration, "duration", 120*time.Second, "simulated time")
	fs.DurationVar(&c.OutageAt, "outage-at", 20*time.Second, "when the outage starts")
	fs.DurationVar(&c.Outage, "outage", 5*time.Second, "how long the outage lasts")
	fs.StringVar(&o.trigger, "trigger", "stall", "what the server does in the outage: stall (serves nothing; requests queue), 503 (answers 503 at once) or drop (resets connections)")
	fs.DurationVar(&c.AttemptTimeout, "attempt-timeout", time.Second, "the clients give up on an attempt after this (the server still does its work); 0: never")
	fs.BoolVar(&c.Shed, "429", false, "the server answers 429 with Retry-After: 1 when more than a second of work is queued")
	fs.Uint64Var(&c.Seed, "seed", 1, "random seed: the same seed gives the same results")
	fs.StringVar(&o.policies, "policies", "", "comma-separated policies to compare (default: "+strings.Join(policyNames(), ", ")+", and flags when a policy flag is given)")
	o.policy.Register(fs)
	fs.Float64Var(&o.budgetRatio, "budget-ratio", retryhttp.DefaultBudgetRatio, "policy flags: retries each request earns")
	fs.Float64Var(&o.budgetMin, "budget-min", retryhttp.DefaultBudgetMinPerSecond, "policy flags: the budget's floor of retries per second")
	fs.DurationVar(&o.budgetWindow, "budget-window", retryhttp.DefaultBudgetWindow, "policy flags: how long a request's earnings last")
	fs.BoolVar(&o.noBudget, "no-budget", false, "policy flags: no retry budget")
	fs.BoolVar(&o.json, "json", false, "print JSON instead of a table")
	fs.StringVar(&o.svg, "svg", "", "also write a chart of goodput and offered load over time to this SVG file")
	fs.BoolVar(&o.silent, "s", false, "no progress line (there is none unless standard error is a terminal)")
	return fs, o
}

// Run runs retryhttp storm.
func Run(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	var c fleet.Config
	fs, o := newFlags(&c, stderr)
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	if fs.NArg() != 0 {
		return cli.UsageError(fs, "unexpected arguments: %v", fs.Args())
	}
	if err := check(&c, o.trigger); err != nil {
		return cli.UsageError(fs, "%v", err)
	}
	flagged := false
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "attempts", "base-delay", "max-delay", "jitter", "max-retry-after", "budget-ratio", "budget-min", "budget-window", "no-budget":
			flagged = true
		}
	})
	all := slices.Clone(policies)
	if flagged {
		p, err := o.policy.Policy()
		if err == nil {
			err = checkPolicy(p)
		}
		if err == nil {
			err = checkInFlight(&c, p.MaxAttempts)
		}
		if err != nil {
			return cli.UsageError(fs, "%v", err)
		}
		var budget *retryhttp.BudgetConfig
		if !o.noBudget {
			budget = &retryhttp.BudgetConfig{Ratio: o.budgetRatio, MinPerSecond: o.budgetMin, Window: o.budgetWindow}
			if _, err := retryhttp.NewBudget(*budget); err != nil || o.budgetRatio <= 0 || o.budgetMin <= 0 || o.budgetWindow <= 0 {
				return cli.UsageError(fs, "-budget-ratio, -budget-min and -budget-window must be positive")
			}
		}
		all = append(all, flagsPolicy(p, budget))
	}
	chosen := all
	if o.policies != "" {
		chosen = nil
		for _, n := range strings.Split(o.policies, ",") {
			i := slices.IndexFunc(all, func(p fleet.Policy) bool { return p.Name == strings.TrimSpace(n) })
			if i < 0 {
				return cli.UsageError(fs, "-policies: unknown policy %q (want %s, or flags with a policy flag)", n, strings.Join(policyNames(), ", "))
			}
			if slices.ContainsFunc(chosen, func(p fleet.Policy) bool { return p.Name == all[i].Name }) {
				return cli.UsageError(fs, "-policies: %s is named twice", all[i].Name)
			}
			chosen = append(chosen, all[i])
		}
	}

	if o.svg != "" { // before the run, not after it: a bad path loses no results
		if err := os.WriteFile(o.svg, nil, 0o644); err != nil {
			return cli.UsageError(fs, "-svg: %v", err)
		}
	}
	out := fleet.NewRuns(&c, chosen)
	if !o.silent && cli.IsTerminal(stderr) {
		stop := showProgress(stderr, &c, out)
		fleet.Simulate(&c, out)
		stop()
	} else {
		fleet.Simulate(&c, out)
	}
	if o.svg != "" {
		if err := os.WriteFile(o.svg, []byte(chart(&c, out)), 0o644); err != nil {
			fmt.Fprintln(stderr, "retryhttp storm:", err)
			return cli.ExitFailed
		}
	}
	if o.json {
		if err := writeJSON(stdout, &c, out); err != nil {
			fmt.Fprintln(stderr, "retryhttp storm:", err)
			return cli.ExitFailed
		}
		return cli.ExitOK
	}
	printTable(stdout, &c, out)
	return cli.ExitOK
}

func policyNames() []string {
	var names []string
	for _, p := range policies {
		names = append(names, p.Name)
	}
	return names
}

// check checks the parameters, and sets the trigger.
func check(c *fleet.Config, trig string) error {
	t, ok := fleet.ParseTrigger(trig)
	if !ok {
		return fmt.Errorf("-trigger: %q is not stall, 503 or drop", trig)
	}
	c.Trigger = t
	switch {
	case c.Clients < 1 || c.Clients > 1_000_000:
		return fmt.Errorf("-clients: %d is not from 1 to 1000000", c.Clients)
	case !(c.Capacity >= 1 && c.Capacity <= 1e6):
		return fmt.Errorf("-capacity: %v is not from 1 to 1000000 requests per second", c.Capacity)
	case !(c.Load > 0 && c.Load <= 10):
		return fmt.Errorf("-load: %v is not above 0 and at most 10", c.Load)
	case c.Duration < time.Second || c.Duration > 24*time.Hour:
		return fmt.Errorf("-duration: %v is not from 1s to 24h", c.Duration)
	case c.OutageAt < time.Second:
		return fmt.Errorf("-outage-at: %v leaves less than a second before the outage to measure", c.OutageAt)
	case c.OutageAt >= c.Duration:
		return fmt.Errorf("-outage-at: %v is not before -duration %v", c.OutageAt, c.Duration)
	case c.Outage < 0:
		return fmt.Errorf("-outage: %v is negative", c.Outage)
	case c.AttemptTimeout < 0:
		return fmt.Errorf("-attempt-timeout: %v is negative", c.AttemptTimeout)
	case c.AttemptTimeout == 0 && c.Load >= 1:
		return fmt.Errorf("-attempt-timeout 0 (never) with -load %v: the server's queue would grow without end; give attempts a timeout, or a load below 1", c.Load)
	}
	if n := c.Offered() * c.Duration.Seconds(); n > maxRequests {
		return fmt.Errorf("-capacity × -load × -duration: %.0f requests per policy, above %d (about a minute of simulation); make the run smaller", n, maxRequests)
	}
	if err := checkInFlight(c, 3); err != nil { // naive's attempts; the flags' policy is checked with its own
		return err
	}
	// Recovery is goodput back for fleet.RecoveredFor, measured over a
	// window that holds enough requests to tell (fleet.Window): a run must
	// leave that much after the outage, or "never" would mean "not measured".
	after := c.Duration - c.OutageAt - c.Outage
	if need := fleet.RecoveredFor + fleet.Window(c.Offered()) + 100*time.Millisecond; after < need {
		return fmt.Errorf("-duration: %v leaves %v after the outage, and telling whether goodput recovered takes %v at %.0f requests per second; make -duration at least %v",
			c.Duration, after, need.Round(100*time.Millisecond), c.Offered(), (c.OutageAt + c.Outage + need).Round(time.Second))
	}
	return nil
}

// maxRequests bounds the requests a run may start, per policy: about a
// minute of simulation on two cores. maxInFlight bounds the requests a run
// may hold at once (each is a goroutine while it lasts): about 2 GB.
const (
	maxRequests = 2_000_000
	maxInFlight = 200_000
)

// checkInFlight refuses a run whose outage could leave more than
// maxInFlight requests under way at once: every request started during
// the outage and while its attempts time out, attempts of them each.
func checkInFlight(c *fleet.Config, attempts int) error {
	lasts := c.Duration
	if c.AttemptTimeout > 0 {
		lasts = min(lasts, c.Outage+time.Duration(attempts)*c.AttemptTimeout)
	}
	if n := c.Offered() * lasts.Seconds(); n > maxInFlight {
		return fmt.Errorf("-capacity × -load × (-outage + attempts × -attempt-timeout): up to %.0f requests under way at once, above %d; make the run smaller", n, maxInFlight)
	}
	return nil
}

// checkPolicy checks the policy of the flags: a wait below a millisecond
// between attempts, or very many attempts, would have the simulation spend
// its time on retries that take no simulated time.
func checkPolicy(p retryhttp.Policy) error {
	switch {
	case p.MaxAttempts > 100:
		return fmt.Errorf("-attempts: %d is above 100", p.MaxAttempts)
	case p.MaxAttempts > 1 && p.BaseDelay < time.Millisecond:
		return fmt.Errorf("-base-delay: %v is below 1ms", p.BaseDelay)
	}
	return nil
}
