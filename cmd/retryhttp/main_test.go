package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	simcmd "github.com/retryhttp/retryhttp/cmd/retryhttp/internal/sim"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// binary is the retryhttp command, built once for all tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "retryhttp-cmd")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "retryhttp")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		panic("go build: " + err.Error() + "\n" + string(out))
	}
	// Every user may run the binary, so that a test can run it as nobody
	// (TestOutputToDevNullAndDevStdout) without a copy: a copy
	// written by this process while parallel tests fork children can be
	// held open for writing by one of them between its fork and its exec,
	// and running the copy then fails with ETXTBSY ("text file busy").
	for _, name := range []string{dir, binary} {
		if err := os.Chmod(name, 0o755); err != nil {
			panic(err)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code   int
	stdout string
	stderr string
}

// runCmd runs the binary with args and standard input, within a minute.
func runCmd(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{code, stdout.String(), stderr.String()}
}

func TestHelpAndUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string
		stderr   string
		noStderr bool
	}{
		{"help", []string{"help"}, 0, "Commands:", "", true},
		{"-h", []string{"-h"}, 0, "Exit codes: 0 success, 2 usage error, 1 failure", "", true},
		{"no command", nil, 2, "", "Usage: retryhttp <command>", false},
		{"unknown command", []string{"fetch"}, 2, "", `retryhttp: unknown command "fetch" (see retryhttp help)`, false},
		{"help do", []string{"help", "do"}, 0, "-start-jitter", "", true},
		{"help unknown", []string{"help", "nope"}, 2, "", `unknown command "nope"`, false},
		{"do -h", []string{"do", "-h"}, 0, "-idempotency-key", "", true},
		{"do -h has the exit codes", []string{"do", "-h"}, 0, "47   more redirects than -max-redirects", "", true},
		{"do -h has the defaults", []string{"do", "-attempts", "2", "-h"}, 0, "(default 6)", "", true},
		{"demo -h", []string{"demo", "-h"}, 0, "", "-metrics-addr", false},
		{"sim -h", []string{"sim", "-h"}, 0, "", "-clients", false},
		{"version", []string{"version"}, 0, "retryhttp ", "", true},
		{"-version", []string{"-version"}, 0, "retryhttp ", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCmd(t, "", tt.args...)
			assert.Equal(t, tt.code, r.code, r.stderr)
			assert.Contains(t, r.stdout, tt.stdout)
			assert.Contains(t, r.stderr, tt.stderr)
			if tt.noStderr {
				assert.Empty(t, r.stderr)
			}
		})
	}
}

func TestBadInputIsAUsageError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"do without URL", []string{"do"}, "want exactly one URL, got 0"},
		{"do with two URLs", []string{"do", "http://a/", "http://b/"}, "want exactly one URL, got 2"},
		{"do with a bad URL", []string{"do", "ftp://example.com/x"}, `"ftp://example.com/x" is not an http or https URL`},
		{"do with a file URL", []string{"do", "file:///etc/passwd"}, `"file:///etc/passwd" is not an http or https URL`},
		{"do without a scheme, no host", []string{"do", "/path"}, `"/path" is not an http or https URL`},
		{"unknown flag", []string{"do", "-frobnicate", "http://a/"}, "flag provided but not defined: -frobnicate"},
		{"bad jitter", []string{"do", "-jitter", "random", "http://a/"}, `-jitter: "random" is not full, equal, decorrelated or none`},
		{"zero attempts", []string{"do", "-attempts", "0", "http://a/"}, "-attempts: 0 is less than 1"},
		{"bad duration", []string{"do", "-timeout", "soon", "http://a/"}, `invalid value "soon" for flag -timeout: "soon" is neither seconds`},
		{"negative timeout", []string{"do", "-timeout", "-1", "http://a/"}, `invalid value "-1" for flag -timeout`},
		{"flag after the URL", []string{"do", "http://a/", "-attempts", "0"}, "-attempts: 0 is less than 1"},
		{"two bodies", []string{"do", "-d", "a", "-data-binary", "b", "http://a/"}, "give -d or -data-binary, not both"},
		{"HEAD with a body", []string{"do", "-I", "-d", "a", "http://a/"}, "-I sends HEAD, which has no body"},
		{"user without password", []string{"do", "-u", "alice", "http://a/"}, "-u wants 'user:password'"},
		{"unknown -w variable", []string{"do", "-w", "%{nope}", "http://a/"}, "unknown variable %{nope}"},
		{"unclosed -w variable", []string{"do", "-w", "%{http_code", "http://a/"}, "unclosed"},
		{"negative redirects", []string{"do", "-max-redirects", "-1", "http://a/"}, "-max-redirects: -1 is negative"},
		{"max delay below base", []string{"do", "-base-delay", "1s", "-max-delay", "1ms", "http://a/"}, "-max-delay: 1ms is below -base-delay 1s"},
		{"bad header", []string{"do", "-H", "NoColon", "http://a/"}, `-H "NoColon" is not 'Name: value'`},
		{"bad method", []string{"do", "-X", "GE T", "http://a/"}, "invalid method"},
		{"demo error rate", []string{"demo", "-error-rate", "2"}, "-error-rate: 2 is not between 0 and 1"},
		{"demo rates above one", []string{"demo", "-error-rate", "0.7", "-reset-rate", "0.5"}, "add up to 1.2"},
		{"demo clients", []string{"demo", "-clients", "0"}, "-clients must be between 1 and 10000"},
		{"demo upstream", []string{"demo", "-upstream", "nope"}, `-upstream "nope" is not an http or https URL`},
		{"demo quota", []string{"demo", "-quota", "-1"}, "-quota: -1 is negative"},
		{"demo hedge", []string{"demo", "-hedge", "soon"}, `-hedge: "soon" is neither a positive delay (20ms) nor adaptive`},
		{"demo slow rate", []string{"demo", "-slow-rate", "1.5"}, "-slow-rate: 1.5 is not between 0 and 1"},
		{"do hedge", []string{"do", "-hedge", "-1s", "http://127.0.0.1:1/"}, "-hedge: -1s is negative"},
		{"demo quota window", []string{"demo", "-quota", "10", "-quota-window", "1500ms"}, "-quota-window: 1.5s is not a whole number of seconds"},
		{"demo argument", []string{"demo", "extra"}, "unexpected arguments: [extra]"},
		{"sim clients", []string{"sim", "-clients", "10,x"}, `-clients: "x" is not a number of clients`},
		{"sim runs", []string{"sim", "-runs", "0"}, "-runs must be between 1 and 1000"},
		{"sim cap", []string{"sim", "-cap", "1ms"}, "-cap at least -base"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := runCmd(t, "", tt.args...)
			assert.Equal(t, 2, r.code)
			assert.Contains(t, r.stderr, tt.want)
			assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
			assert.Contains(t, r.stderr, " -h)", "with a hint")
			assert.NotContains(t, r.stderr, "retryhttp do: retryhttp:", "no doubled prefix")
			assert.NotContains(t, r.stderr, "panic")
			assert.Empty(t, r.stdout)
		})
	}
}

// server is a loopback upstream that records what each attempt carried.
type server struct {
	*httptest.Server
	attempts atomic.Int32
	mu       sync.Mutex
	bodies   []string
	keys     []string
	headers  []http.Header
	hosts    []string
	methods  []string
}

func newServer(t *testing.T, handle func(n int, w http.ResponseWriter, r *http.Request)) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(s.attempts.Add(1))
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies = append(s.bodies, string(b))
		s.keys = append(s.keys, r.Header.Get("Idempotency-Key"))
		s.headers = append(s.headers, r.Header.Clone())
		s.hosts = append(s.hosts, r.Host)
		s.methods = append(s.methods, r.Method)
		s.mu.Unlock()
		handle(n, w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// failing answers code for the first n attempts, then 200 with "hello".
func failing(n, code int) func(int, http.ResponseWriter, *http.Request) {
	return func(i int, w http.ResponseWriter, _ *http.Request) {
		if i <= n {
			http.Error(w, "busy", code)
			return
		}
		_, _ = io.WriteString(w, "hello")
	}
}

var fast = []string{"-base-delay", "1ms", "-max-delay", "5ms"}

func do(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return runCmd(t, stdin, append(append([]string{"do"}, fast...), args...)...)
}

func TestDemoRunsServesMetricsAndSummarizes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "demo", "-duration", "2s", "-clients", "4", "-progress", "500ms",
		"-metrics-addr", "127.0.0.1:0", "-base-delay", "2ms", "-max-delay", "20ms", "-retry-after", "0s", "-error-rate", "0.4")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())

	var lines []string
	scanner := bufio.NewScanner(stdout)
	scraped := ""
	for scanner.Scan() {
		line := scanner.Text()
		lines = append(lines, line)
		if addr, ok := strings.CutPrefix(line, "metrics: "); ok {
			time.Sleep(700 * time.Millisecond) // let some requests through
			resp, err := http.Get(addr)
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			scraped = string(b)
		}
	}
	require.NoError(t, cmd.Wait(), stderr.String())
	out := strings.Join(lines, "\n")
	assert.Contains(t, scraped, `retryhttp_requests_total{method="GET",outcome="ok"}`)
	assert.Contains(t, scraped, `retryhttp_retries_total{method="GET",reason="503"}`)
	assert.Contains(t, out, "upstream: http://127.0.0.1:")
	assert.Regexp(t, `(?m)^\s+\d+\.\ds  (steady|outage|recovery) so far: \d+ requests in \S+( \(\d+ under way\))?, ok \S+, retries \S+ of requests, amplification \d\.\d\d×, budget refusals \d+(, held \d+)?$`, out, "plain progress lines when stdout is not a terminal")
	assert.Contains(t, out, "summary after")
	assert.Regexp(t, `amplification 1\.\d\d attempts per request; give-up ratio \d+\.\d%`, out)
	assert.Empty(t, stderr.String())
}

func TestDemoAgainstAUserUpstream(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n%2 == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	r := runCmd(t, "", "demo", "-duration", "1s", "-clients", "2", "-metrics-addr", "", "-upstream", s.URL, "-base-delay", "1ms", "-max-delay", "2ms")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "upstream: "+s.URL)
	assert.NotContains(t, r.stdout, "metrics:")
	assert.Greater(t, s.attempts.Load(), int32(4))
	assert.Contains(t, r.stdout, "retries by reason")
}

func TestSimReproducesTheJitterFindings(t *testing.T) {
	t.Parallel()
	r := runCmd(t, "", "sim", "-json", "-clients", "50,100")
	require.Equal(t, 0, r.code, r.stderr)
	var out simcmd.Output
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
	assert.Equal(t, simcmd.Parameters{Seed: 1, Runs: 10, Clients: []int{50, 100}, BaseMS: 5, CapMS: 2000, DelayMS: 10, DelayStddevMS: 2},
		out.Parameters, "the parameters are recorded with the results")
	rows := out.Results
	require.Len(t, rows, 8)
	at := map[string]simcmd.Result{}
	for _, row := range rows {
		assert.Positive(t, row.Calls)
		assert.Positive(t, row.CompletionMS)
		if row.Clients == 100 {
			at[row.Jitter] = row
		}
	}
	require.Len(t, at, 4)
	none, full, equal, decorrelated := at["none"], at["full"], at["equal"], at["decorrelated"]
	assert.GreaterOrEqual(t, float64(none.Calls), 2*float64(full.Calls), "no jitter costs at least twice the calls of full jitter")
	assert.InEpsilon(t, float64(full.Calls), float64(equal.Calls), 0.1, "full and equal jitter make similar numbers of calls")
	assert.Greater(t, equal.CompletionMS, full.CompletionMS, "equal jitter completes later than full")
	assert.Greater(t, none.CompletionMS, full.CompletionMS)
	assert.Greater(t, decorrelated.Calls, full.Calls, "at 100 clients decorrelated jitter makes more calls than full")
	assert.Less(t, decorrelated.CompletionMS, full.CompletionMS, "and finishes sooner")
	at50 := map[string]simcmd.Result{}
	for _, row := range rows {
		if row.Clients == 50 {
			at50[row.Jitter] = row
		}
	}
	assert.Less(t, at50["decorrelated"].Calls, at50["full"].Calls, "at 50 clients decorrelated jitter makes fewer calls than full")

	again := runCmd(t, "", "sim", "-json", "-clients", "50,100")
	assert.Equal(t, r.stdout, again.stdout, "the same seed gives the same results")
	other := runCmd(t, "", "sim", "-json", "-clients", "50,100", "-seed", "2")
	assert.NotEqual(t, r.stdout, other.stdout)
}

func TestSimTableAndChart(t *testing.T) {
	t.Parallel()
	svg := filepath.Join(t.TempDir(), "sim.svg")
	r := runCmd(t, "", "sim", "-clients", "10,20", "-runs", "2", "-svg", svg)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "none jitter")
	assert.Regexp(t, `(?m)^20\s+\d+\s+\d+ms`, r.stdout)
	b, err := os.ReadFile(svg)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), "<svg "))
	assert.Equal(t, 8, strings.Count(string(b), "<polyline"), "four modes in each of two charts")
}

func TestCommittedChartIsCurrent(t *testing.T) {
	t.Parallel()
	assertChartIsCurrent(t, "sim")
}

// assertChartIsCurrent checks that docs/COMMAND.svg is what retryhttp
// COMMAND -svg draws now, and returns it.
func assertChartIsCurrent(t *testing.T, command string) string {
	t.Helper()
	svg := filepath.Join(t.TempDir(), command+".svg")
	r := runCmd(t, "", command, "-svg", svg)
	require.Equal(t, 0, r.code, r.stderr)
	want, err := os.ReadFile(svg)
	require.NoError(t, err)
	got, err := os.ReadFile("../../docs/" + command + ".svg")
	require.NoError(t, err)
	assert.Equal(t, string(want), string(got), "regenerate with: go run ./cmd/retryhttp %s -svg docs/%s.svg", command, command)
	return string(want)
}
