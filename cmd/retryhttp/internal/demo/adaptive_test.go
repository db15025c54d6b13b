package demo

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// capacityRowRE is a row of the -adaptive comparison's table.
var capacityRowRE = regexp.MustCompile(`(?m)^(without|with) the adaptive rate +(\d+) +(-|[\d.]+%) +([\d.]+/s \(\d+%\)) +(-|[\d.]+%) +(-|[\d.]+/s \(\d+%\)) +(\d+) +(\d+) +(-|\S+)$`)

// The -adaptive comparison runs the same clients without the adaptive rate,
// then with it, and says what each did. On a busy machine the numbers vary:
// this checks the structure, and what cannot vary (only the run with the
// adaptive rate paces; the code line is that run's).
func TestDemoAdaptiveComparesTwoRuns(t *testing.T) {
	t.Parallel()
	// 2.5 s a run: the adaptive rate cuts at the earliest a second after the
	// first 429, and the shares after 2 s have half a second to count. A
	// capacity of 20 is far below what 8 clients send, even under -race.
	r := runCmd(t, "", "demo", "-capacity", "20", "-adaptive", "-duration", "5s", "-metrics-addr", "", "-progress", "1s")
	require.Equal(t, 0, r.code, r.stderr)
	out := r.stdout
	assert.Empty(t, r.stderr)

	assert.Contains(t, out, "adaptive: 8 clients, 2.5s without the adaptive rate, then 2.5s with it, against an upstream that answers a bare 429 beyond 20 requests/s\n")
	assert.Regexp(t, `(?m)^upstream: http://127\.0\.0\.1:\d+ \(latency 5ms, capacity 20 requests/s, a bare 429 beyond\)$`, out, "no 503s or resets")
	assert.Contains(t, out, "load: each client sends its next request 20ms after an answer: at most 320 requests/s at the upstream's 5ms latency, 16.0× the capacity\n")
	var at []int
	for i, name := range []string{"without the adaptive rate", "with the adaptive rate"} {
		announced := strings.Index(out, "run "+strconv.Itoa(i+1)+" of 2, "+name+" (2.5s): ")
		result := strings.Index(out, "\n"+name+" result: ")
		require.Positive(t, announced, "%s is announced:\n%s", name, out)
		at = append(at, announced, result)
		assert.Regexp(t, `(?m)^ +[\d.]+s  `+name+` so far: \d+ requests`, out, "live lines")
	}
	assert.IsIncreasing(t, at, "each run announced, then its result, in turn:\n%s", out)
	assert.Regexp(t, `(?m)^with the adaptive rate result: \d+ requests in \S+, ok .*, 429 to [\d.]+% of attempts, paced \d+$`, out)

	rows := capacityRowRE.FindAllStringSubmatch(out, -1)
	require.Len(t, rows, 2, "a row for each run:\n%s", out)
	without, with := rows[0], rows[1]
	require.Equal(t, []string{"without", "with"}, []string{without[1], with[1]})
	assert.NotEqual(t, "-", without[3], "the upstream refused some of the first run's attempts")
	assert.Equal(t, "0", without[8], "nothing paces without the adaptive rate")
	assert.Equal(t, "-", without[9])
	paced, _ := strconv.Atoi(with[8])
	assert.Positive(t, paced, "the adaptive rate woke at the 429s and paced:\n%s", out)
	assert.NotEqual(t, "-", with[9], "the paced attempts' mean wait")

	_, story, ok := strings.Cut(out, "\nWhat happened:\n")
	require.True(t, ok, out)
	lines := strings.Split(story, "\n")
	assert.True(t, strings.HasPrefix(lines[0], "  Without the adaptive rate the clients sent "), lines[0])
	assert.Regexp(t, `^  (Paced to the capacity|Still throttled|Below the capacity)\. With the adaptive rate `, lines[1])
	assert.Contains(t, out, "\n  client := &http.Client{Transport: retryhttp.New(nil, retryhttp.WithMetrics(metrics), retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{}))}\n")
	assert.Contains(t, out, "\nThe code behind the run with the adaptive rate ")
	assert.NotContains(t, out, "retryhttp demo -capacity", "no suggestion to run what just ran")
}

func TestDemoAdaptiveVerdict(t *testing.T) {
	t.Parallel()
	// run makes a run of 10 s whose attempts after 2 s, in 8 s, were ok
	// 200s and refused 429s.
	run := func(ok, refused, paced, throttled float64) capacityRun {
		s := stats{attempts: map[string]float64{"200": ok, "429": refused}, allAttempt: ok + refused}
		all := s
		all.paced, all.requests = paced, map[string]float64{"throttled": throttled}
		return capacityRun{took: 10 * time.Second, sent: s, settled: s, after: 8 * time.Second, all: all}
	}
	without := run(400, 1600, 0, 0)
	tests := []struct {
		name   string
		r      capacityRun
		before *capacityRun
		want   string
	}{
		{"without: far past the capacity", without, nil,
			"Without the adaptive rate the clients sent 5.0× the capacity after 2 s: the upstream served 100% of its capacity and refused 80.0% of the attempts with 429."},
		{"without: too little load", run(400, 0, 0, 0), nil,
			"Without the adaptive rate the clients sent 50 attempts/s after 2 s, not clearly more than the capacity (50/s): there was little to throttle; raise -clients or lower -pause."},
		{"without: less than the capacity", run(200, 0, 0, 0), nil,
			"Without the adaptive rate the clients sent 25 attempts/s after 2 s, less than the capacity (50/s): there was little to throttle; raise -clients or lower -pause."},
		{"paced to the capacity", run(380, 8, 300, 0), &without,
			"Paced to the capacity. With the adaptive rate 2.1% of the attempts after 2 s got 429 (80.0% without) and the upstream served 95% of its capacity (100% without), " +
				"with 388 attempts on the wire instead of 2000."},
		{"still throttled, some not sent", run(392, 100, 300, 3), &without,
			"Still throttled. With the adaptive rate 20.3% of the attempts after 2 s got 429 (80.0% without) and the upstream served 98% of its capacity (100% without), " +
				"with 492 attempts on the wire instead of 2000; 3 requests failed at once with ErrThrottled rather than wait past -max-retry-after."},
		{"below the capacity", run(200, 4, 300, 1), &without,
			"Below the capacity. With the adaptive rate 2.0% of the attempts after 2 s got 429 (80.0% without) and the upstream served 50% of its capacity (100% without), " +
				"with 204 attempts on the wire instead of 2000; 1 request failed at once with ErrThrottled rather than wait past -max-retry-after."},
		{"asleep", run(400, 0, 0, 0), &without,
			"With the adaptive rate nothing was paced: the upstream never answered 429, so the rate stayed asleep."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, tt.r.verdict(50, tt.before))
		})
	}

	t.Run("runs of 2 s or less speak of the whole run", func(t *testing.T) {
		t.Parallel()
		short := run(100, 300, 0, 0)
		short.after, short.took = 0, 2*time.Second
		assert.Equal(t, "Without the adaptive rate the clients sent 4.0× the capacity over the run: the upstream served 100% of its capacity and refused 75.0% of the attempts with 429.",
			short.verdict(50, nil))
		assert.Contains(t, without.verdict(50, nil), "after 2 s", "a run that lasted longer")
		assert.Contains(t, run(90, 2, 10, 0).verdict(50, &short), "of the attempts over the run got 429 (75.0% without)", "both runs must have lasted longer")
	})
}

// -capacity without -adaptive is the plain run against an upstream that
// also refuses what passes its capacity: its live lines count the 429s,
// nothing is paced, and the summary suggests the comparison.
func TestDemoCapacityAloneIsThePlainRun(t *testing.T) {
	t.Parallel()
	r := runCmd(t, "", "demo", "-capacity", "20", "-outage=false", "-duration", "2s", "-metrics-addr", "", "-progress", "500ms")
	require.Equal(t, 0, r.code, r.stderr)
	out := r.stdout
	assert.Regexp(t, `(?m)^upstream: http://\S+ \(503 10%, resets 2%, latency 5ms, capacity 20 requests/s, a bare 429 beyond\)$`, out)
	assert.Regexp(t, `(?m)^ +[\d.]+s  so far: \d+ requests .*, budget refusals \d+, 429 to [\d.]+% of attempts$`, out, "live lines count the 429s")
	assert.Regexp(t, `(?m)^  429 +\d+ +[\d.]+%$`, out, "in the attempts by code")
	assert.NotContains(t, out, "paced")
	assert.Contains(t, out, "\n  client := &http.Client{Transport: retryhttp.New(nil, retryhttp.WithMetrics(metrics))}\n")
	assert.Regexp(t, `(?m)^  retryhttp demo -capacity 20 -adaptive +an upstream that throttles with bare 429s, without and with the adaptive rate$`, out)
}

// The load line says when the clients cannot offer clearly more than the
// capacity, which the comparison needs.
func TestDemoAdaptiveOffered(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pause, latency time.Duration
		capacity       int
		want           string
	}{
		{20 * time.Millisecond, 5 * time.Millisecond, 50,
			"load: each client sends its next request 20ms after an answer: at most 320 requests/s at the upstream's 5ms latency, 6.4× the capacity"},
		{20 * time.Millisecond, 5 * time.Millisecond, 250,
			"load: each client sends its next request 20ms after an answer: at most 320 requests/s at the upstream's 5ms latency, 1.3× the capacity; " +
				"that is not clearly more than the capacity, which the comparison needs: raise -clients or lower -pause"},
		{20 * time.Millisecond, 5 * time.Millisecond, 1000,
			"load: each client sends its next request 20ms after an answer: at most 320 requests/s at the upstream's 5ms latency, 0.3× the capacity; " +
				"that is less than the capacity, which the comparison needs: raise -clients or lower -pause"},
		{0, 0, 50, "load: each client sends its next request 0s after an answer, as fast as the upstream answers"},
	}
	for _, tt := range tests {
		c := demoConfig{clients: 8, pause: tt.pause}
		assert.Equal(t, tt.want, c.offered(faults{latency: tt.latency, capacity: tt.capacity}))
	}
}
