package demo

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
	paced      float64 // attempts that waited for their host's adaptive rate
	paceSum    float64 // seconds those waited
	refusals   float64 // retries the budget refused
	resends    float64 // attempts net/http sent again on its own (transparent retries)
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
			case "retryhttp_transparent_retries_total":
				s.resends += m.GetCounter().GetValue()
			case "retryhttp_held_requests_total":
				s.held += m.GetCounter().GetValue()
			case "retryhttp_paced_requests_total":
				s.paced += m.GetCounter().GetValue()
			case "retryhttp_pace_delay_seconds":
				s.paceSum += m.GetHistogram().GetSampleSum()
			case "retryhttp_budget_refusals_total":
				s.refusals += m.GetCounter().GetValue()
			case "retryhttp_retry_delay_seconds":
				s.waitCount[label("source")] += float64(m.GetHistogram().GetSampleCount())
				s.waitSum[label("source")] += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return s
}

// minus returns what was counted after before was collected: the
// difference of two collections of one registry.
func (s stats) minus(before stats) stats {
	diff := func(a, b map[string]float64) map[string]float64 {
		d := make(map[string]float64, len(a))
		for k, v := range a {
			if v-b[k] != 0 {
				d[k] = v - b[k]
			}
		}
		return d
	}
	return stats{
		requests: diff(s.requests, before.requests), attempts: diff(s.attempts, before.attempts),
		retries: diff(s.retries, before.retries), waitCount: diff(s.waitCount, before.waitCount),
		waitSum: diff(s.waitSum, before.waitSum), total: s.total - before.total,
		allAttempt: s.allAttempt - before.allAttempt, held: s.held - before.held, refusals: s.refusals - before.refusals,
		resends: s.resends - before.resends, paced: s.paced - before.paced, paceSum: s.paceSum - before.paceSum,
	}
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
	n := 0.0
	for _, o := range giveUpOutcomes {
		n += s.requests[o]
	}
	return n
}

// giveUpOutcomes are the outcomes giveUps counts.
var giveUpOutcomes = []string{"exhausted", "too_late", "budget", "throttled"}

// giveUpsMeaning says in words, where the summary first names them, what
// the give-ups are: the outcomes above that count as one.
func (s stats) giveUpsMeaning() string {
	var which []string
	for _, o := range giveUpOutcomes {
		if s.requests[o] > 0 {
			which = append(which, o)
		}
	}
	if len(which) == 0 {
		return " (a give-up is a request that still failed when retrying stopped)"
	}
	return fmt.Sprintf(" (a give-up is a request that still failed when retrying stopped: %s above)", strings.Join(which, " and "))
}

// meanPace is the mean wait of the attempts the adaptive rate paced.
func (s stats) meanPace() time.Duration {
	if s.paced == 0 {
		return 0
	}
	return time.Duration(s.paceSum / s.paced * float64(time.Second)).Round(time.Millisecond)
}

// amplificationMeaning says in words what amplification is, before the
// first line that shows it.
func amplificationMeaning(maxAttempts int) string {
	line := "amplification: the attempts sent per request, the load on the upstream; 1.00× when nothing is retried"
	if maxAttempts > 1 {
		line += fmt.Sprintf(", %d× when every request makes all %d attempts", maxAttempts, maxAttempts)
	}
	return line
}

// amplification is the attempts per request the Transport sent. (The
// upstream received the resends net/http made of them besides: see the
// report's "resent by net/http".)
func (s stats) amplification() float64 {
	if s.total == 0 {
		return 0
	}
	return s.allAttempt / s.total
}

// failedAttempts counts the attempts that failed in a way the Transport
// retries: a transport error, a 429 or a 5xx.
func (s stats) failedAttempts() float64 {
	n := 0.0
	for code, v := range s.attempts {
		if code == "error" || code == "429" || strings.HasPrefix(code, "5") {
			n += v
		}
	}
	return n
}

// progressLine is the live line within a phase: since the phase began,
// the same numbers in the same words as the line that ends it (a run
// without phases has one phase, named "").
func (s stats) progressLine(name string, elapsed, took time.Duration, underWay int) string {
	label := "so far"
	if name != "" {
		label = name + " so far"
	}
	return fmt.Sprintf("%6.1fs  %s: %s", elapsed.Seconds(), label, s.numbers(took, underWay))
}

// numbers says what a phase counted in took, in the words of its result
// line; underWay of the requests are still under way.
func (s stats) numbers(took time.Duration, underWay int) string {
	during := took.Round(100 * time.Millisecond).String()
	if underWay > 0 {
		during += fmt.Sprintf(" (%d under way)", underWay)
	}
	line := fmt.Sprintf("%d requests in %s, ok %s, retries %s of requests, amplification %.2f×, budget refusals %d",
		int(s.total), during, share(s.requests["ok"], s.total),
		share(sum(s.retries), s.total), s.amplification(), int(s.refusals))
	if n := s.attempts["429"]; n > 0 {
		line += fmt.Sprintf(", 429 to %s of attempts", share(n, s.allAttempt))
	}
	if s.held > 0 {
		line += fmt.Sprintf(", held %d", int(s.held))
	}
	if s.paced > 0 {
		line += fmt.Sprintf(", paced %d", int(s.paced))
	}
	return line
}

// phaseResult is what the metrics counted during one phase of the demo:
// the difference of the registry between the phase's start and its end.
type phaseResult struct {
	name string // "" when the run had no phases
	took time.Duration
	stats
}

// resultLine is the line that ends a phase.
func (p phaseResult) resultLine() string {
	return p.name + " result: " + p.numbers(p.took, 0)
}

// report is everything the summary at the end of a demo says.
type report struct {
	total       stats
	phases      []phaseResult // one without a name when the run had no phases
	elapsed     time.Duration
	maxAttempts int
	budget      bool // the Transport had a retry budget
}

// printSummary prints the final tables, what the outcomes mean, and what
// happened in each phase.
func (r report) printSummary(w io.Writer) {
	s := r.total
	row := func(label string, count, share any) {
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("%-20s %8v %8v", label, count, share), " "))
	}
	fmt.Fprintf(w, "summary after %v\n\n", r.elapsed.Round(100*time.Millisecond))
	row("requests", "count", "share")
	for _, k := range sortedKeys(s.requests) {
		row("  "+k, int(s.requests[k]), pct(s.requests[k], s.total))
	}
	row("  all", int(s.total), pct(s.total, s.total))
	for _, line := range r.outcomeLines() {
		fmt.Fprintln(w, line)
	}
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

	if s.resends > 0 {
		fmt.Fprintln(w)
		row("resent by net/http", int(s.resends), "") // transparent retries: the upstream received these too
	}
	fmt.Fprintf(w, "\namplification %.2f attempts per request; give-up ratio %s%s; %.0f requests/s\n",
		s.amplification(), pct(s.giveUps(), s.total), s.giveUpsMeaning(), s.total/r.elapsed.Seconds())
	if story := r.story(); len(story) > 0 {
		fmt.Fprintln(w, "\nWhat happened:")
		for _, line := range story {
			fmt.Fprintln(w, "  "+line)
		}
	}
}

// outcomeOrder lists the outcomes of retryhttp_requests_total in the order
// they are explained.
var outcomeOrder = []string{"ok", "exhausted", "not_retryable", "too_late", "canceled", "budget", "throttled"}

// outcomeMeaning says in words what an outcome means in the demo.
func outcomeMeaning(outcome string, maxAttempts int) string {
	switch outcome {
	case "ok":
		return "answered, on the first attempt or after retries (a status that is not retried, such as 404, counts too)"
	case "exhausted":
		return fmt.Sprintf("still failing after all %d attempts (-attempts); the last failure was returned", maxAttempts)
	case "not_retryable":
		return "failed in a way a retry cannot fix or may not repeat (the method, the body, a permanent error)"
	case "too_late":
		return "the server asked for a wait (Retry-After) longer than -max-retry-after; the failure was returned at once"
	case "canceled":
		return "still in flight when the demo stopped; its context was canceled"
	case "budget":
		return fmt.Sprintf("failed while the retry budget was spent: the failure was returned instead of retried, sparing the failing upstream the rest of the %d attempts", maxAttempts)
	case "throttled":
		return "not sent: the upstream's quota was spent, or its adaptive rate had no room for it, for longer than -max-retry-after (ErrThrottled)"
	}
	return ""
}

// outcomeLines explains each outcome that occurred, once, and for a
// failure says in which phases it happened.
func (r report) outcomeLines() []string {
	var lines []string
	for _, o := range outcomeOrder {
		if r.total.requests[o] == 0 {
			continue
		}
		line := fmt.Sprintf("  %s: %s", o, outcomeMeaning(o, r.maxAttempts))
		if o != "ok" && len(r.phases) > 1 {
			var in []string
			for _, p := range r.phases {
				if n := p.requests[o]; n > 0 {
					in = append(in, fmt.Sprintf("%s %d", p.name, int(n)))
				}
			}
			line += "; by phase: " + strings.Join(in, ", ")
		}
		lines = append(lines, line)
	}
	if len(lines) > 0 {
		lines = append([]string{""}, lines...)
	}
	return lines
}

func pct(part, whole float64) string {
	if whole == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*part/whole)
}

// share is pct for sentences: it never rounds a part to all or none, so
// that "100%" means every one.
func share(part, whole float64) string {
	switch {
	case whole == 0:
		return "-"
	case part > 0 && part < whole && 100*part/whole >= 99.95:
		return "99.9%"
	case part > 0 && part < whole && 100*part/whole < 0.05:
		return "under 0.1%"
	case part == whole:
		return "100%"
	case part == 0:
		return "0%"
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
