package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// stats is what the demo reads back from the Transport's metrics.
type stats struct {
	requests   map[string]float64 // by outcome
	attempts   map[string]float64 // by code
	retries    map[string]float64 // by reason
	waitCount  map[string]float64 // by source
	waitSum    map[string]float64 // seconds, by source
	total      float64            // requests
	allAttempt float64
	held       float64 // attempts held for their host's quota
}

// collect reads the retryhttp series from reg.
func collect(reg prometheus.Gatherer) stats {
	s := stats{
		requests: map[string]float64{}, attempts: map[string]float64{}, retries: map[string]float64{},
		waitCount: map[string]float64{}, waitSum: map[string]float64{},
	}
	families, err := reg.Gather()
	if err != nil {
		return s
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			label := func(name string) string {
				for _, l := range m.GetLabel() {
					if l.GetName() == name {
						return l.GetValue()
					}
				}
				return ""
			}
			switch f.GetName() {
			case "retryhttp_requests_total":
				s.requests[label("outcome")] += m.GetCounter().GetValue()
				s.total += m.GetCounter().GetValue()
			case "retryhttp_attempts_total":
				s.attempts[label("code")] += m.GetCounter().GetValue()
				s.allAttempt += m.GetCounter().GetValue()
			case "retryhttp_retries_total":
				s.retries[label("reason")] += m.GetCounter().GetValue()
			case "retryhttp_held_requests_total":
				s.held += m.GetCounter().GetValue()
			case "retryhttp_retry_delay_seconds":
				s.waitCount[label("source")] += float64(m.GetHistogram().GetSampleCount())
				s.waitSum[label("source")] += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return s
}

func sum(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}

// giveUps counts requests that still failed when retrying stopped.
func (s stats) giveUps() float64 {
	return s.requests["exhausted"] + s.requests["too_late"] + s.requests["budget"] + s.requests["throttled"]
}

func (s stats) amplification() float64 {
	if s.total == 0 {
		return 0
	}
	return s.allAttempt / s.total
}

func (s stats) progressLine(elapsed time.Duration) string {
	line := fmt.Sprintf("%6.1fs  requests %d  ok %d  retries %d  give-ups %d  amplification %.2f",
		elapsed.Seconds(), int(s.total), int(s.requests["ok"]), int(sum(s.retries)), int(s.giveUps()), s.amplification())
	if s.held > 0 {
		line += fmt.Sprintf("  held %d", int(s.held))
	}
	return line
}

// printSummary prints the final table.
func printSummary(w io.Writer, s stats, elapsed time.Duration) {
	row := func(label string, count, share any) {
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("%-20s %8v %8v", label, count, share), " "))
	}
	fmt.Fprintf(w, "summary after %v\n\n", elapsed.Round(100*time.Millisecond))
	row("requests", "count", "share")
	for _, k := range sortedKeys(s.requests) {
		row("  "+k, int(s.requests[k]), pct(s.requests[k], s.total))
	}
	row("  all", int(s.total), pct(s.total, s.total))
	fmt.Fprintln(w)
	row("attempts by code", "count", "share")
	for _, k := range sortedKeys(s.attempts) {
		row("  "+k, int(s.attempts[k]), pct(s.attempts[k], s.allAttempt))
	}
	row("  all", int(s.allAttempt), pct(s.allAttempt, s.allAttempt))
	fmt.Fprintln(w)
	row("retries by reason", "count", "")
	for _, k := range sortedKeys(s.retries) {
		row("  "+k, int(s.retries[k]), "")
	}
	fmt.Fprintln(w)
	row("waits by source", "count", "mean")
	for _, k := range sortedKeys(s.waitCount) {
		mean := time.Duration(0)
		if s.waitCount[k] > 0 {
			mean = time.Duration(s.waitSum[k] / s.waitCount[k] * float64(time.Second))
		}
		row("  "+k, int(s.waitCount[k]), mean.Round(100*time.Microsecond))
	}
	if s.held > 0 {
		fmt.Fprintln(w)
		row("held for the quota", int(s.held), "")
	}
	fmt.Fprintf(w, "\namplification %.2f attempts per request; give-up ratio %s; %.0f requests/s\n",
		s.amplification(), pct(s.giveUps(), s.total), s.total/elapsed.Seconds())
}

func pct(part, whole float64) string {
	if whole == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*part/whole)
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
