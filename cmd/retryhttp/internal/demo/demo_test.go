package demo

import (
	"bytes"
	"go/parser"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// phaseNumbers are the numbers of a phase's result line.
type phaseNumbers struct {
	requests      int
	ok, retries   float64 // percent of the requests
	amplification float64
	refusals      int
}

var resultLineRE = regexp.MustCompile(`(?m)^(\w+) result: (\d+) requests in \S+, ok (under 0\.1%|-|[\d.]+%), ` +
	`retries (under 0\.1%|-|[\d.]+%) of requests, amplification ([\d.]+)×, budget refusals (\d+)`)

// phaseResults reads the result lines of a demo's output, by phase name.
func phaseResults(t *testing.T, out string) map[string]phaseNumbers {
	t.Helper()
	percent := func(s string) float64 {
		switch s {
		case "under 0.1%":
			return 0.05
		case "-":
			return math.NaN()
		}
		v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		require.NoError(t, err)
		return v
	}
	got := map[string]phaseNumbers{}
	for _, m := range resultLineRE.FindAllStringSubmatch(out, -1) {
		requests, _ := strconv.Atoi(m[2])
		amplification, _ := strconv.ParseFloat(m[5], 64)
		refusals, _ := strconv.Atoi(m[6])
		got[m[1]] = phaseNumbers{requests, percent(m[3]), percent(m[4]), amplification, refusals}
	}
	return got
}

// outcomesInTable returns the outcomes in the summary's requests table.
func outcomesInTable(t *testing.T, out string) []string {
	t.Helper()
	_, table, ok := strings.Cut(out, "\nrequests                count    share\n")
	require.True(t, ok, "the requests table:\n%s", out)
	table, _, ok = strings.Cut(table, "\n  all ")
	require.True(t, ok)
	var outcomes []string
	for line := range strings.Lines(table) {
		outcomes = append(outcomes, strings.Fields(line)[0])
	}
	return outcomes
}

// assertOutcomesExplained checks that every outcome of the requests table
// is explained once, and no other.
func assertOutcomesExplained(t *testing.T, out string) {
	t.Helper()
	occurred := outcomesInTable(t, out)
	require.NotEmpty(t, occurred)
	for _, o := range outcomeOrder {
		n := len(regexp.MustCompile(`(?m)^  `+o+`: \w`).FindAllString(out, -1))
		if slices.Contains(occurred, o) {
			assert.Equal(t, 1, n, "%s occurred: explained once", o)
		} else {
			assert.Zero(t, n, "%s did not occur: not explained", o)
		}
	}
}

func TestDemoTellsItsStoryInPhases(t *testing.T) {
	t.Parallel()
	r := runCmd(t, "", "demo", "-duration", "6s", "-metrics-addr", "", "-progress", "500ms")
	require.Equal(t, 0, r.code, r.stderr)
	out := r.stdout
	assert.Empty(t, r.stderr)
	assertFirstScreen(t, out)

	// The story reads top to bottom: each phase is announced, then its
	// result follows, before the next is announced.
	var at []int
	for i, name := range []string{"steady", "outage", "recovery"} {
		announced := strings.Index(out, "phase "+strconv.Itoa(i+1)+" of 3, "+name+" (")
		result := strings.Index(out, "\n"+name+" result: ")
		require.Positive(t, announced, "%s is announced:\n%s", name, out)
		require.Greater(t, result, announced, "%s's result follows its announcement:\n%s", name, out)
		at = append(at, announced, result)
	}
	assert.IsIncreasing(t, at, "the phases in order:\n%s", out)
	assert.Less(t, at[len(at)-1], strings.Index(out, "summary after"), "the summary comes last")
	assert.Contains(t, out, "phase 1 of 3, steady (2.4s)", "40% of -duration")
	assert.Contains(t, out, "phase 2 of 3, outage (1.8s)", "30%")
	assert.Contains(t, out, "phase 3 of 3, recovery (1.8s)", "30%")

	phases := phaseResults(t, out)
	require.Len(t, phases, 3, out)
	steady, outage, recovery := phases["steady"], phases["outage"], phases["recovery"]
	for name, p := range phases {
		assert.Positive(t, p.requests, name)
	}
	assert.GreaterOrEqual(t, steady.ok, 95.0, "retries recover the transient failures:\n%s", out)
	assert.Positive(t, steady.retries)
	assert.Zero(t, outage.ok, "nothing succeeds in the outage:\n%s", out)
	assert.Positive(t, outage.refusals, "the budget refuses retries in the outage:\n%s", out)
	assert.Greater(t, outage.amplification, 1.0, "some retries are let through")
	assert.Less(t, outage.amplification, 3.0, "below MaxAttempts, what every request would make without a budget")
	assert.GreaterOrEqual(t, recovery.ok, 90.0, "requests succeed again:\n%s", out)

	assert.Regexp(t, `In the steady phase [\d.]+% of attempts failed; with retries (every request|[\d.]+% of requests) ended ok`, out)
	assert.Regexp(t, `In the outage every attempt failed; the retry budget refused \d+ retr(y|ies) and held the load at \d\.\d\d× `+
		`\(\d+ attempts for \d+ requests\)\. Without a budget, each request would have made all 3 attempts: 3×, \d+ attempts for these \d+ requests\.`, out)
	assert.Regexp(t, `In recovery [\d.]+% of attempts failed`, out)
	assert.Regexp(t, `Of the \d+ give-ups above \(the give-up ratio of [\d.]+%\), \d+ were in the outage`, out)
	assert.Regexp(t, `(?m)^  budget: failed while the retry budget was spent.*; by phase: .*outage \d+`, out)
	assertOutcomesExplained(t, out)
}

var progressLineRE = regexp.MustCompile(`(?m)^ +[\d.]+s  (\w+) so far: (\d+ requests in \S+)(?: \(\d+ under way\))?(, ok .*)$`)

// assertFirstScreen checks what the demo's first screen says besides the
// phases' numbers: the live line of each phase in the words of its result
// line, amplification and give-up explained where they first appear, and
// the summary ending with the code behind the demo and what to try next.
func assertFirstScreen(t *testing.T, out string) {
	t.Helper()
	live := progressLineRE.FindAllStringSubmatch(out, -1)
	require.NotEmpty(t, live, "live lines:\n%s", out)
	for _, m := range live {
		assert.Contains(t, []string{"steady", "outage", "recovery"}, m[1], "the live line names its phase")
		assert.Regexp(t, `^, ok (under 0\.1%|-|[\d.]+%), retries (under 0\.1%|-|[\d.]+%) of requests, amplification [\d.]+×, budget refusals \d+$`,
			m[3], "the live line says what the result line says")
	}
	before, _, _ := strings.Cut(out, "\nsummary after")
	assert.NotContains(t, before, "give-ups", "the live line counts no give-ups, which the result line does not")

	amplification := strings.Index(out, "amplification")
	assert.Equal(t, strings.Index(out, "\namplification: the attempts sent per request, the load on the upstream; "+
		"1.00× when nothing is retried, 3× when every request makes all 3 attempts\n")+1, amplification, "explained where it first appears:\n%s", out)
	assert.Less(t, amplification, strings.Index(out, "phase 1 of 3"))
	giveUp := strings.Index(out, "give-up")
	assert.Equal(t, strings.Index(out, "give-up ratio "), giveUp, "first in the summary's totals:\n%s", out)
	assert.Regexp(t, `give-up ratio [\d.]+% \(a give-up is a request that still failed when retrying stopped: exhausted and budget above\)`, out)

	_, end, ok := strings.Cut(out, "\nWhat happened:\n")
	require.True(t, ok, out)
	_, end, ok = strings.Cut(end, "\n\nThe code behind this demo")
	require.True(t, ok, "the story, then the code:\n%s", out)
	assert.Contains(t, end, "\n  client := &http.Client{Transport: retryhttp.New(nil, retryhttp.WithMetrics(metrics))}\n", "the defaults need no policy")
	_, end, ok = strings.Cut(end, "\n\nTry next")
	require.True(t, ok, out)
	lines := strings.Split(strings.TrimSuffix(end, "\n"), "\n")[1:]
	require.Len(t, lines, 4, "four commands end the output:\n%s", end)
	assert.Regexp(t, `^  retryhttp demo -budget=false +without a retry budget: when the upstream fails, every request makes all its attempts \(a retry storm\)`, lines[0])
	assert.Regexp(t, `^  retryhttp demo -tail +what hedging does`, lines[1])
	assert.Regexp(t, `^  retryhttp demo -capacity 50 -adaptive +an upstream that throttles with bare 429s`, lines[2])
	assert.Regexp(t, `^  retryhttp do -v https://example.com/ +one request with retries`, lines[3])
}

func TestDemoCodeLine(t *testing.T) {
	t.Parallel()
	policy := func(mod func(*retryhttp.Policy)) retryhttp.Policy {
		p := retryhttp.Policy{MaxAttempts: retryhttp.DefaultMaxAttempts, BaseDelay: retryhttp.DefaultBaseDelay,
			MaxDelay: retryhttp.DefaultMaxDelay, MaxRetryAfter: retryhttp.DefaultMaxRetryAfter}
		if mod != nil {
			mod(&p)
		}
		return p
	}
	tests := []struct {
		name string
		c    demoConfig
		want string
	}{
		{"the defaults", demoConfig{policy: policy(nil), budget: true}, "retryhttp.New(nil, retryhttp.WithMetrics(metrics))"},
		{"the policy flags", demoConfig{policy: policy(func(p *retryhttp.Policy) {
			p.MaxAttempts, p.BaseDelay, p.MaxDelay, p.Jitter, p.MaxRetryAfter = 5, 50*time.Millisecond, 2*time.Second, retryhttp.EqualJitter, 90*time.Second
		}), budget: true},
			"retryhttp.New(nil, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 5, BaseDelay: 50 * time.Millisecond, MaxDelay: 2 * time.Second, " +
				"Jitter: retryhttp.EqualJitter, MaxRetryAfter: 90 * time.Second}), retryhttp.WithMetrics(metrics))"},
		{"no budget", demoConfig{policy: policy(nil)}, "retryhttp.New(nil, retryhttp.WithMetrics(metrics), retryhttp.WithBudget(nil))"},
		{"hedging", demoConfig{policy: policy(nil), budget: true, hedge: "20ms"},
			"retryhttp.New(nil, retryhttp.WithMetrics(metrics), retryhttp.WithHedging(retryhttp.Hedging{Delay: 20 * time.Millisecond}))"},
		{"adaptive hedging", demoConfig{policy: policy(nil), budget: true, hedge: "adaptive"},
			"retryhttp.New(nil, retryhttp.WithMetrics(metrics), retryhttp.WithHedging(retryhttp.Hedging{}))"},
		{"the adaptive rate", demoConfig{policy: policy(nil), budget: true, adaptive: true},
			"retryhttp.New(nil, retryhttp.WithMetrics(metrics), retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{}))"},
		{"the adaptive rate, capacity alone", demoConfig{policy: policy(nil), budget: true, faults: faults{capacity: 50}},
			"retryhttp.New(nil, retryhttp.WithMetrics(metrics))"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			line := tt.c.codeLine()
			assert.Equal(t, "client := &http.Client{Transport: "+tt.want+"}", line)
			_, err := parser.ParseExpr(strings.TrimPrefix(line, "client := "))
			assert.NoError(t, err, "Go")
		})
	}
}

// The flags that choose what the demo shows reject the combinations that
// make no sense, in one usage line each, before anything runs.
func TestDemoRejectsBadCombinations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"negative capacity", []string{"-capacity", "-1"}, "-capacity: -1 is negative (0: no limit)"},
		{"-adaptive alone", []string{"-adaptive"}, "-adaptive compares runs against an upstream of limited capacity: give it -capacity N"},
		{"-adaptive with -capacity 0", []string{"-adaptive", "-capacity", "0"}, "-adaptive compares runs against an upstream of limited capacity: give it -capacity N (try -capacity 50)"},
		{"-adaptive with -upstream", []string{"-adaptive", "-upstream", "http://127.0.0.1:1/"}, "-adaptive compares runs against the embedded upstream, limited by -capacity: it does not apply with -upstream"},
		{"-capacity with -upstream", []string{"-capacity", "50", "-upstream", "http://127.0.0.1:1/"}, "-capacity limits the embedded upstream: it does not apply with -upstream"},
		{"-adaptive with -tail", []string{"-capacity", "50", "-adaptive", "-tail"}, "-adaptive and -tail are two comparisons: run one at a time"},
		{"-capacity with -tail", []string{"-capacity", "50", "-tail"}, "-capacity does not apply to -tail"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCmd(t, "", append([]string{"demo", "-metrics-addr", ""}, tt.args...)...)
			assert.Equal(t, 2, r.code)
			assert.Empty(t, r.stdout, "nothing ran")
			assert.True(t, strings.HasPrefix(r.stderr, "retryhttp demo: "+tt.want), r.stderr)
			assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
			assert.Contains(t, r.stderr, "(see retryhttp demo -h)")
		})
	}
}

func TestGoDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		time.Second: "time.Second", 100 * time.Millisecond: "100 * time.Millisecond", 90 * time.Second: "90 * time.Second",
		2 * time.Minute: "2 * time.Minute", 1500 * time.Microsecond: "1500 * time.Microsecond", 7: "7",
	} {
		assert.Equal(t, want, goDuration(d))
	}
}

func TestDemoWithoutABudgetShowsTheStorm(t *testing.T) {
	t.Parallel()
	r := runCmd(t, "", "demo", "-duration", "5s", "-metrics-addr", "", "-budget=false")
	require.Equal(t, 0, r.code, r.stderr)
	outage, ok := phaseResults(t, r.stdout)["outage"]
	require.True(t, ok, r.stdout)
	assert.Zero(t, outage.refusals)
	assert.InDelta(t, 3.0, outage.amplification, 0.001, "in a total outage every request makes all its attempts:\n%s", r.stdout)
	assert.Contains(t, r.stdout, "with no retry budget, every request makes all 3 attempts")
	assert.Regexp(t, `with no retry budget \(-budget=false\), each request made 3\.00 attempts \(of at most 3\): \d+ attempts for \d+ requests\.`, r.stdout)
	assertOutcomesExplained(t, r.stdout)
	assert.Contains(t, r.stdout, "retryhttp.New(nil, retryhttp.WithMetrics(metrics), retryhttp.WithBudget(nil))")
	assert.Regexp(t, `(?m)^  retryhttp demo +with the default retry budget, which holds a retry storm back`, r.stdout, "the other side of the budget next")
}

func TestDemoWithoutPhases(t *testing.T) {
	t.Parallel()
	var served atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := served.Add(1); n%2 == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(s.Close)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"-outage=false keeps the failures throughout", []string{"-outage=false"}, "Over the run "},
		{"-upstream has no phases", []string{"-upstream", s.URL, "-base-delay", "1ms", "-max-delay", "2ms"}, "upstream: " + s.URL},
		{"-tail has no phases", []string{"-tail"}, "without hedging"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCmd(t, "", append([]string{"demo", "-duration", "2s", "-metrics-addr", ""}, tt.args...)...)
			require.Equal(t, 0, r.code, r.stderr)
			assert.Contains(t, r.stdout, tt.want)
			assert.NotRegexp(t, `(?m)^phase \d`, r.stdout, "no phase is announced")
			assert.NotContains(t, r.stdout, " result: ")
			assert.NotContains(t, r.stdout, "outage")
		})
	}
}

func TestConsoleReplacesTheProgressLineOnATerminal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tty  bool
		want string
	}{
		{false, "announce\n  1.0s\n  2.0s\nresult\n"},
		{true, "announce\n\r\x1b[K  1.0s\r\x1b[K  2.0s\r\x1b[Kresult\n"},
	}
	for _, tt := range tests {
		var b strings.Builder
		c := &console{w: &b, tty: tt.tty}
		c.println("announce")
		c.progress("  1.0s")
		c.progress("  2.0s")
		c.println("result")
		assert.Equal(t, tt.want, b.String(), "tty %v", tt.tty)
	}
}

// result is what a run of the command returned.
type result struct {
	code           int
	stdout, stderr string
}

// runCmd runs "retryhttp demo" in this process: args[0] is "demo".
func runCmd(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	require.Equal(t, "demo", args[0])
	var stdout, stderr bytes.Buffer
	code := Run(args[1:], strings.NewReader(stdin), &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// docs/command.md shows the end of the summary as the demo prints it with
// its default flags.
func TestDocsShowTheSummarysEnd(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../../../docs/command.md")
	require.NoError(t, err)
	var b strings.Builder
	demoConfig{policy: retryhttp.Policy{MaxAttempts: retryhttp.DefaultMaxAttempts, BaseDelay: retryhttp.DefaultBaseDelay,
		MaxDelay: retryhttp.DefaultMaxDelay, MaxRetryAfter: retryhttp.DefaultMaxRetryAfter}, budget: true}.printEnd(&b)
	assert.Contains(t, string(doc), "```text\n"+strings.TrimPrefix(b.String(), "\n")+"```\n")
}
