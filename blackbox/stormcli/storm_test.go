package stormcli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// output is the JSON the issue asks of retryhttp storm -json.
type output struct {
	Parameters map[string]any `json:"parameters"`
	Results    []struct {
		Policy            string   `json:"policy"`
		GoodputBefore     *float64 `json:"goodput_before"`
		GoodputAfter      *float64 `json:"goodput_after"`
		PeakAmplification *float64 `json:"peak_amplification"`
		RecoveredAfterS   *float64 `json:"recovered_after_s"`
	} `json:"results"`
}

func parse(t *testing.T, r result) output {
	t.Helper()
	var o output
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &o), r.stderr)
	return o
}

// Every input retryhttp storm accepts should run in bounded time and
// memory (memory bounded; 10,000 clients x 120 s in under 30 s on 2 cores); what it cannot run so should be refused with a usage error
// (exit 2). Each of these is within the ranges its checks accept.
func TestAcceptedInputsRunInBoundedTimeAndMemory(t *testing.T) {
	cases := []struct{ name, args string }{
		// A goroutine per request in flight: a stall at a large capacity
		// queues capacity x outage of them (4.3 GB for 4 simulated s).
		{"the largest capacity it accepts", "-capacity 1000000 -json"},
		{"the largest capacity it accepts, stalled early", "-capacity 1000000 -outage-at 1s -policies none -json"},
		// Without attempt timeouts an overloaded server's queue, and its
		// goroutines, grow for the whole run (2.5 GB at -load 5).
		{"overload without attempt timeouts", "-load 10 -attempt-timeout 0 -policies none -json"},
		// 720 times the default run: about half an hour.
		{"the longest duration it accepts", "-duration 24h -policies none -json"},
		// A wait of 0 or 1 ns never moves virtual time on: one request's
		// attempts run without end while the event loop waits for it.
		{"attempts without end and no wait between them", "-attempts 1000000000 -base-delay 1ns -max-delay 1ns -no-budget -trigger 503 -policies flags -json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := storm(t, generous, nil, strings.Fields(tc.args)...)
			require.Empty(t, r.killed, "retryhttp storm %s: killed: %s (peak resident memory %d MiB)", tc.args, r.killed, r.peakRSS>>20)
			assert.Contains(t, []int{0, 2}, r.code, r.stderr)
		})
	}
}

// A run whose outage ends too close to -duration for recovery to be
// measured (RecoveredFor, 5 s, plus the 2 s window) is refused; were it
// run, "never" would mean "not measured".
func TestRecoveryIsMeasurableInEveryRunItAccepts(t *testing.T) {
	r := storm(t, generous, nil, "-duration", "10s", "-outage-at", "5s", "-outage", "1s", "-trigger", "503", "-policies", "none", "-json")
	if r.code == 2 {
		return // refused: fine
	}
	require.Equal(t, 0, r.code, r.stderr)
	o := parse(t, r)
	none := o.Results[0]
	require.GreaterOrEqual(t, *none.GoodputAfter, 0.9**none.GoodputBefore, "goodput is back right after the outage")
	assert.NotNil(t, none.RecoveredAfterS, "no retries, goodput after %.1f of %.1f before, yet recovered_after_s is null", *none.GoodputAfter, *none.GoodputBefore)
}

// At a low offered rate the window (long enough for 1,600 requests) is
// longer than the run: such a run is refused, or measures one attempt per
// request for no retries.
func TestALowRateGivesAmplificationAndRecovery(t *testing.T) {
	r := storm(t, generous, nil, "-capacity", "10", "-policies", "none", "-json")
	if r.code == 2 {
		return
	}
	require.Equal(t, 0, r.code, r.stderr)
	o := parse(t, r)
	assert.Equal(t, 1.0, *o.Results[0].PeakAmplification, "no retries: one attempt per request; window_s %v", o.Parameters["window_s"])
}

// -policies none,none is refused, or runs none once.
func TestDuplicatePoliciesAreRefusedOrRunOnce(t *testing.T) {
	r := storm(t, generous, nil, "-policies", "none,none", "-duration", "10s", "-outage-at", "2s", "-outage", "1s", "-json")
	if r.code == 2 {
		return
	}
	require.Equal(t, 0, r.code, r.stderr)
	assert.Len(t, parse(t, r).Results, 1)
}

// A usage error names the flag that is wrong and says what is wrong with it.
func TestUsageErrorsNameTheFlagAndTheProblem(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{"-outage -1s", "-outage: -1s is negative"},
		{"-outage-at 200s", "-outage-at"},
	} {
		r := storm(t, generous, nil, strings.Fields(tc.args)...)
		assert.Equal(t, 2, r.code, tc.args)
		assert.True(t, strings.HasPrefix(r.stderr, "retryhttp storm: "+tc.want), "%s: %q", tc.args, r.stderr)
	}
}

// -svg to a path that cannot be written: refused before the simulation,
// or the results are printed all the same.
func TestAnUnwritableSVGPathDoesNotLoseTheResults(t *testing.T) {
	r := storm(t, generous, nil, "-svg", "/nonexistent/dir/storm.svg", "-json", "-policies", "none", "-duration", "10s", "-outage-at", "2s", "-outage", "1s")
	if r.code == 2 {
		return // refused before simulating: fine
	}
	assert.NotEqual(t, 0, r.code)
	assert.Contains(t, r.stderr, "/nonexistent/dir/storm.svg")
	assert.Contains(t, r.stdout, `"results"`, "the results of the run are printed all the same")
}

// The same seed gives the same bytes, whatever GOMAXPROCS; the JSON has
// the shape issue 24 asks for; nothing is written to standard error when
// it is not a terminal.
func TestSameSeedSameBytesAtAnyGOMAXPROCS(t *testing.T) {
	args := []string{"-json", "-clients", "2000", "-duration", "60s", "-trigger", "drop", "-429", "-attempts", "4", "-jitter", "decorrelated"}
	var first string
	for _, procs := range []string{"1", "2", "4"} {
		r := storm(t, generous, []string{"GOMAXPROCS=" + procs}, args...)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Empty(t, r.stderr)
		if first == "" {
			first = r.stdout
			o := parse(t, r)
			require.Len(t, o.Results, 5, "none, naive, default, adaptive and flags")
			for _, res := range o.Results {
				assert.NotEmpty(t, res.Policy)
				assert.NotNil(t, res.GoodputBefore, res.Policy)
				assert.NotNil(t, res.GoodputAfter, res.Policy)
				assert.NotNil(t, res.PeakAmplification, res.Policy)
			}
			assert.Contains(t, first, `"recovered_after_s"`)
			continue
		}
		assert.Equal(t, first, r.stdout, "GOMAXPROCS=%s", procs)
	}
}
