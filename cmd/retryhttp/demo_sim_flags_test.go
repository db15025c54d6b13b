package main

// demo, sim and storm: their flag checks, sim's -json parameters, and the demo's
// story and Retry-After.

import (
	"bytes"
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// With little traffic in the outage the budget may refuse nothing (its
// floor and what the requests earned cover every retry): the load is then
// the full 3×; the story once said it "held the load at 3.00×".
func TestDemoOutageStoryWhenTheBudgetRefusedNothing(t *testing.T) {
	t.Parallel()
	r := runCmd(t, "", "demo", "-duration", "5s", "-metrics-addr", "", "-clients", "1", "-pause", "0",
		"-jitter", "equal", "-base-delay", "300ms", "-max-delay", "1s")
	require.Equal(t, 0, r.code, r.stderr)
	m := regexp.MustCompile(`outage result: .* budget refusals (\d+)`).FindStringSubmatch(r.stdout)
	require.NotNil(t, m, r.stdout)
	if m[1] == "0" {
		assert.Contains(t, r.stdout, "The retry budget refused nothing: its floor of retries per second covered this little traffic")
		assert.NotContains(t, r.stdout, "held the load")
	} else {
		assert.Regexp(t, `the retry budget refused \d+ retr(y|ies) and held the load at \d\.\d\d×`, r.stdout)
	}
}

// sim -json records the parameters that produced the results.
func TestSimJSONParameters(t *testing.T) {
	t.Parallel()
	r := runCmd(t, "", "sim", "-json", "-clients", "5", "-runs", "1", "-base", "1500us", "-cap", "1s", "-delay", "2500us", "-delay-stddev", "500us", "-seed", "9")
	require.Equal(t, 0, r.code, r.stderr)
	for _, want := range []string{`"seed": 9`, `"runs": 1`, `"base_ms": 1.5`, `"cap_ms": 1000`, `"network_delay_ms": 2.5`, `"network_delay_stddev_ms": 0.5`} {
		assert.Contains(t, r.stdout, want)
	}
}

// Bad values and unknown flags: exit 2, one line, no panic, at once.
func TestSimDemoAndStormFlagValidation(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"sim", "-runs", "0"},
		{"sim", "-runs", "-1"},
		{"sim", "-clients", "0"},
		{"sim", "-clients", "5,,6"},
		{"sim", "-clients", "-3"},
		{"sim", "-clients", "NaN"},
		{"sim", "-delay", "0"},
		{"sim", "-delay-stddev", "-1ms"},
		{"sim", "-base", "0"},
		{"sim", "-cap", "1ms"},
		{"sim", "-seed", "-1"},
		{"sim", "-nope"},
		{"sim", "extra"},
		{"demo", "-duration", "-1s"},
		{"demo", "-clients", "0"},
		{"demo", "-clients", "-5"},
		{"demo", "-error-rate", "NaN"},
		{"demo", "-error-rate", "-0.1"},
		{"demo", "-reset-rate", "1.5"},
		{"demo", "-slow-rate", "NaN"},
		{"demo", "-error-rate", "0.6", "-reset-rate", "0.6"},
		{"demo", "-latency", "-1ms"},
		{"demo", "-quota", "-1"},
		{"demo", "-quota", "5", "-quota-window", "0"},
		{"demo", "-hedge", "-5ms"},
		{"demo", "-hedge", "NaN"},
		{"demo", "-attempts", "0"},
		{"demo", "-base-delay", "0"},
		{"demo", "-max-retry-after", "-1s"},
		{"demo", "-jitter", "NaN"},
		{"demo", "-pause", "-1ms"},
		{"demo", "-progress", "-1ms"},
		{"demo", "-upstream", "ftp://x/"},
		{"demo", "-nope"},
		{"demo", "extra"},
		{"storm", "-clients", "0"},
		{"storm", "-capacity", "0"},
		{"storm", "-load", "NaN"},
		{"storm", "-duration", "500ms"},
		{"storm", "-outage-at", "0s"},
		{"storm", "-outage", "200s"},
		{"storm", "-attempt-timeout", "-1s"},
		{"storm", "-trigger", "fire"},
		{"storm", "-policies", "none,bold"},
		{"storm", "-policies", "flags"},
		{"storm", "-jitter", "wild"},
		{"storm", "-budget-ratio", "-1"},
		{"storm", "-budget-min", "0"},
		{"storm", "extra"},
		{"storm", "-nope"},
	} {
		start := time.Now()
		r := runCmd(t, "", args...)
		assert.Equal(t, 2, r.code, "%q: %s", args, r.stderr)
		// A guard: a usage error ends at once; a command that ran (a demo
		// of 30 s) would not.
		assert.Less(t, time.Since(start), 20*time.Second, "%q", args)
		assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "%q: %q", args, r.stderr)
		assert.Regexp(t, `^retryhttp (sim|demo|storm): .* \(see retryhttp (sim|demo|storm) -h\)\n$`, r.stderr, "%q", args)
		assert.NotContains(t, r.stderr, "panic")
		assert.Empty(t, r.stdout, "%q", args)
	}
}

// demo -retry-after is "(whole seconds)", as -quota-window, which refuses
// 1500ms; -retry-after 1500ms is accepted, the banner says "Retry-After
// 1.5s", and the upstream sends "Retry-After: 1" (500ms sends 0).
func TestDemoRetryAfterWholeSeconds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "demo", "-metrics-addr", "", "-duration", "1s", "-throttle-rate", "0.5", "-retry-after", "1500ms")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run()
	assert.Equal(t, 2, cmd.ProcessState.ExitCode(), "-retry-after 1500ms is accepted though the upstream can only send whole seconds; stdout begins %q",
		firstLine(stdout.String()))
}
