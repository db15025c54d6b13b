package demo

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/retryhttp/retryhttp"
)

// codeLine is the one line of code behind the demo: the retryhttp.New
// call with the options the demo used, as a user would write it (metrics
// from retryhttp.NewMetrics, the policy's fields that differ from the
// library's defaults).
func (c demoConfig) codeLine() string {
	opts := []string{"retryhttp.WithMetrics(metrics)"}
	if p := policyLiteral(c.policy); p != "" {
		opts = append([]string{"retryhttp.WithPolicy(" + p + ")"}, opts...)
	}
	if !c.budget {
		opts = append(opts, "retryhttp.WithBudget(nil)")
	}
	if h, _ := parseHedge(c.hedge); h != nil {
		hedging := "retryhttp.Hedging{}"
		if h.Delay > 0 {
			hedging = "retryhttp.Hedging{Delay: " + goDuration(h.Delay) + "}"
		}
		opts = append(opts, "retryhttp.WithHedging("+hedging+")")
	}
	if c.adaptive {
		opts = append(opts, "retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{})")
	}
	return "client := &http.Client{Transport: retryhttp.New(nil, " + strings.Join(opts, ", ") + ")}"
}

// jitterConsts names each Jitter as Go code.
var jitterConsts = map[retryhttp.Jitter]string{retryhttp.FullJitter: "FullJitter", retryhttp.EqualJitter: "EqualJitter",
	retryhttp.DecorrelatedJitter: "DecorrelatedJitter", retryhttp.NoJitter: "NoJitter"}

// policyLiteral writes p as a Go composite literal of the fields that
// differ from the library's defaults, in the struct's order, or "" when
// none does.
func policyLiteral(p retryhttp.Policy) string {
	var fields []string
	if p.MaxAttempts != retryhttp.DefaultMaxAttempts {
		fields = append(fields, fmt.Sprintf("MaxAttempts: %d", p.MaxAttempts))
	}
	duration := func(name string, v, ifNone time.Duration) {
		if v != ifNone {
			fields = append(fields, name+": "+goDuration(v))
		}
	}
	duration("BaseDelay", p.BaseDelay, retryhttp.DefaultBaseDelay)
	duration("MaxDelay", p.MaxDelay, retryhttp.DefaultMaxDelay)
	if name, ok := jitterConsts[p.Jitter]; ok && p.Jitter != retryhttp.FullJitter {
		fields = append(fields, "Jitter: retryhttp."+name)
	}
	duration("MaxRetryAfter", p.MaxRetryAfter, retryhttp.DefaultMaxRetryAfter)
	if len(fields) == 0 {
		return ""
	}
	return "retryhttp.Policy{" + strings.Join(fields, ", ") + "}"
}

// goDuration writes d as Go code: 100 * time.Millisecond, time.Second.
func goDuration(d time.Duration) string {
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{time.Hour, "time.Hour"}, {time.Minute, "time.Minute"}, {time.Second, "time.Second"},
		{time.Millisecond, "time.Millisecond"}, {time.Microsecond, "time.Microsecond"}} {
		if d%u.d == 0 {
			if d == u.d {
				return u.name
			}
			return fmt.Sprintf("%d * %s", d/u.d, u.name)
		}
	}
	return fmt.Sprintf("%d", int64(d))
}

// tryNext returns the commands the summary suggests next, each with what
// it shows: the other side of the budget, the tail and hedging, the
// adaptive rate (unless this was its run), and do.
func (c demoConfig) tryNext() [][2]string {
	budget := [2]string{"retryhttp demo -budget=false", "without a retry budget: when the upstream fails, every request makes all its attempts (a retry storm)"}
	if !c.budget {
		budget = [2]string{"retryhttp demo", "with the default retry budget, which holds a retry storm back"}
	}
	next := [][2]string{budget, {"retryhttp demo -tail", "what hedging does to the slowest requests (p99, p99.9)"}}
	if !c.adaptive {
		capacity := c.faults.capacity // this run's, or one the default clients send clearly more than
		if capacity == 0 {
			capacity = 50
		}
		next = append(next, [2]string{fmt.Sprintf("retryhttp demo -capacity %d -adaptive", capacity),
			"an upstream that throttles with bare 429s, without and with the adaptive rate"})
	}
	return append(next, [2]string{"retryhttp do -v https://example.com/", "one request with retries, each attempt and wait shown"})
}

// printEnd ends the summary: the line of code behind the demo, and what
// to try next.
func (c demoConfig) printEnd(w io.Writer) {
	behind := "this demo"
	if c.adaptive {
		behind = "the run with the adaptive rate"
	}
	fmt.Fprintf(w, "\nThe code behind %s (metrics from retryhttp.NewMetrics(prometheus.DefaultRegisterer)):\n  %s\n", behind, c.codeLine())
	fmt.Fprintln(w, "\nTry next (in a checkout, retryhttp is go run ./cmd/retryhttp):")
	for _, try := range c.tryNext() {
		fmt.Fprintf(w, "  %-38s %s\n", try[0], try[1])
	}
}
