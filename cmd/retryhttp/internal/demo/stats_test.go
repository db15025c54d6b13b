package demo

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDemoLiveLineSaysWhatTheResultLineSays(t *testing.T) {
	t.Parallel()
	s := stats{requests: map[string]float64{"ok": 90, "budget": 10}, retries: map[string]float64{"503": 12},
		total: 100, allAttempt: 125, refusals: 7, held: 2}
	res := phaseResult{name: "outage", took: 1500 * time.Millisecond, stats: s}.resultLine()
	assert.Equal(t, "outage result: 100 requests in 1.5s, ok 90.0%, retries 12.0% of requests, amplification 1.25×, budget refusals 7, held 2", res)
	assert.Equal(t, "   3.0s  outage so far: 100 requests in 1.5s (4 under way), ok 90.0%, retries 12.0% of requests, amplification 1.25×, budget refusals 7, held 2",
		s.progressLine("outage", 3*time.Second, 1500*time.Millisecond, 4))
	assert.Equal(t, "   3.0s  so far: 100 requests in 1.5s, ok 90.0%, retries 12.0% of requests, amplification 1.25×, budget refusals 7, held 2",
		s.progressLine("", 3*time.Second, 1500*time.Millisecond, 0), "a run without phases")

	s.attempts, s.held, s.paced = map[string]float64{"200": 90, "429": 35}, 0, 40
	assert.Equal(t, "   3.0s  with the adaptive rate so far: 100 requests in 3s, ok 90.0%, retries 12.0% of requests, amplification 1.25×, budget refusals 7, "+
		"429 to 28.0% of attempts, paced 40", s.progressLine("with the adaptive rate", 3*time.Second, 3*time.Second, 0), "the 429s and the paced attempts, when there are")
}

func TestDemoOutcomeExplanations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		requests map[string]float64
		phases   []phaseResult
		want     []string
	}{
		{"only ok", map[string]float64{"ok": 10}, nil, []string{"  ok: answered, on the first attempt or after retries"}},
		{"ok and budget, by phase", map[string]float64{"ok": 10, "budget": 4},
			[]phaseResult{{name: "steady", stats: stats{requests: map[string]float64{"ok": 6}}},
				{name: "outage", stats: stats{requests: map[string]float64{"budget": 4}}},
				{name: "recovery", stats: stats{requests: map[string]float64{"ok": 4}}}},
			[]string{"  ok: ", "  budget: failed while the retry budget was spent: the failure was returned instead of retried, " +
				"sparing the failing upstream the rest of the 5 attempts; by phase: outage 4"}},
		{"every outcome", map[string]float64{"ok": 1, "exhausted": 1, "not_retryable": 1, "too_late": 1, "canceled": 1, "budget": 1, "throttled": 1}, nil,
			[]string{"  ok: ", "  exhausted: still failing after all 5 attempts", "  not_retryable: ", "  too_late: ", "  canceled: ", "  budget: ", "  throttled: "}},
		{"nothing", map[string]float64{}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lines := report{total: stats{requests: tt.requests}, phases: tt.phases, maxAttempts: 5}.outcomeLines()
			if tt.want == nil {
				assert.Empty(t, lines)
				return
			}
			require.Len(t, lines, len(tt.want)+1, "a blank line, then one line per outcome that occurred")
			assert.Empty(t, lines[0])
			for i, want := range tt.want {
				assert.True(t, strings.HasPrefix(lines[i+1], want), "%q starts with %q", lines[i+1], want)
			}
		})
	}
}

func TestDemoStory(t *testing.T) {
	t.Parallel()
	phase := func(name string, ok, budget, exhausted, attempts, failed, refusals float64) phaseResult {
		req := map[string]float64{}
		for k, v := range map[string]float64{"ok": ok, "budget": budget, "exhausted": exhausted} {
			if v > 0 {
				req[k] = v
			}
		}
		return phaseResult{name: name, stats: stats{requests: req, total: ok + budget + exhausted,
			attempts: map[string]float64{"200": attempts - failed, "503": failed}, allAttempt: attempts, refusals: refusals}}
	}
	steady := phase("steady", 1000, 0, 0, 1100, 100, 0)
	outage := phase("outage", 0, 450, 50, 650, 650, 450)
	recovery := phase("recovery", 998, 1, 1, 1120, 122, 1)
	total := stats{requests: map[string]float64{}}
	for _, p := range []phaseResult{steady, outage, recovery} {
		for k, v := range p.requests {
			total.requests[k] += v
		}
		total.total += p.total
		total.allAttempt += p.allAttempt
	}
	tests := []struct {
		name   string
		report report
		want   []string
	}{
		{"three phases", report{total: total, phases: []phaseResult{steady, outage, recovery}, maxAttempts: 3, budget: true}, []string{
			"In the steady phase 9.1% of attempts failed; with retries every request ended ok, at 1.10 attempts per request; the budget refused no retry.",
			"In the outage every attempt failed; the retry budget refused 450 retries and held the load at 1.30× (650 attempts for 500 requests). " +
				"Without a budget, each request would have made all 3 attempts: 3×, 1500 attempts for these 500 requests.",
			"In recovery 10.9% of attempts failed; with retries 99.8% of requests ended ok (1 exhausted, 1 budget), at 1.12 attempts per request; the budget refused 1 retry.",
			"Of the 502 give-ups above (the give-up ratio of 20.1%), 500 were in the outage, where no retry could succeed; in the steady and recovery phases 99.9% of requests ended ok.",
		}},
		{"no budget", report{total: outage.stats, phases: []phaseResult{outage}, maxAttempts: 3}, []string{
			"In the outage every attempt failed and, with no retry budget (-budget=false), each request made 1.30 attempts (of at most 3): " +
				"650 attempts for 500 requests. The demo's clients wait for each answer, so waiting out the retries also slowed them down; " +
				"requests that keep arriving, as users' do, would each bring 3 attempts to the failing upstream.",
			"Of the 500 give-ups above (the give-up ratio of 100.0%), 500 were in the outage, where no retry could succeed.",
		}},
		{"one phase", report{total: steady.stats, phases: []phaseResult{{stats: steady.stats}}, maxAttempts: 3, budget: true}, []string{
			"Over the run 9.1% of attempts failed; with retries every request ended ok, at 1.10 attempts per request; the budget refused no retry.",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, tt.report.story())
		})
	}
}

func TestStatsMinus(t *testing.T) {
	t.Parallel()
	before := stats{requests: map[string]float64{"ok": 5, "budget": 2}, attempts: map[string]float64{"200": 5, "503": 4},
		retries: map[string]float64{"503": 2}, waitCount: map[string]float64{"backoff": 2}, waitSum: map[string]float64{"backoff": 0.3},
		total: 7, allAttempt: 9, held: 1, refusals: 2, paced: 3, paceSum: 0.5}
	after := stats{requests: map[string]float64{"ok": 9, "budget": 2, "exhausted": 1}, attempts: map[string]float64{"200": 9, "503": 7},
		retries: map[string]float64{"503": 4}, waitCount: map[string]float64{"backoff": 4}, waitSum: map[string]float64{"backoff": 0.5},
		total: 12, allAttempt: 16, held: 1, refusals: 2, paced: 10, paceSum: 2}
	d := after.minus(before)
	assert.Equal(t, map[string]float64{"ok": 4, "exhausted": 1}, d.requests, "outcomes that did not change are left out")
	assert.Equal(t, map[string]float64{"200": 4, "503": 3}, d.attempts)
	assert.Equal(t, map[string]float64{"503": 2}, d.retries)
	assert.Equal(t, map[string]float64{"backoff": 2}, d.waitCount)
	assert.InDelta(t, 0.2, d.waitSum["backoff"], 1e-9)
	assert.Equal(t, []float64{5, 7, 0, 0, 7, 1.5}, []float64{d.total, d.allAttempt, d.held, d.refusals, d.paced, d.paceSum})
}

func TestShare(t *testing.T) {
	t.Parallel()
	tests := []struct {
		part, whole float64
		want        string
	}{
		{0, 0, "-"},
		{0, 10, "0%"},
		{10, 10, "100%"},
		{9999, 10000, "99.9%"},
		{1, 10000, "under 0.1%"},
		{1, 3, "33.3%"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, share(tt.part, tt.whole), "%v of %v", tt.part, tt.whole)
	}
}
