// Package stormcli runs the retryhttp command's storm subcommand as a user
// would: bad and extreme flags, exit codes and messages, the bounds of
// time and memory of what it accepts, its JSON and its determinism.
package stormcli_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/retryhttp/retryhttp/internal/proctest"
)

// TestMain removes the command the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	proctest.RemoveBuilt()
	os.Exit(code)
}

// rh returns the path of the retryhttp command, built once.
func rh(t *testing.T) string { return proctest.Retryhttp(t) }

// result is how a run of the command ended.
type result struct {
	code           int // exit code; -1 when it was killed
	stdout, stderr string
	killed         string // why it was killed, if it was
	peakRSS        int64  // bytes, as sampled
}

// limits bound a run: it is killed past either.
type limits struct {
	time time.Duration
	rss  int64 // bytes
}

var generous = limits{time: 20 * time.Second, rss: 1 << 30}

// storm runs retryhttp storm with args and env (added to the test's), and
// kills it past the limits, sampling its resident memory from /proc.
func storm(t *testing.T, lim limits, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(rh(t), append([]string{"storm"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var r result
	deadline := time.NewTimer(lim.time)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			r.code = cmd.ProcessState.ExitCode()
			if err != nil && r.code == -1 && r.killed == "" {
				r.killed = err.Error()
			}
			r.stdout, r.stderr = stdout.String(), stderr.String()
			return r
		case <-deadline.C:
			if r.killed == "" {
				r.killed = fmt.Sprintf("still running after %v", lim.time)
				_ = cmd.Process.Signal(syscall.SIGKILL)
			}
		case <-tick.C:
			rss := residentBytes(cmd.Process.Pid)
			r.peakRSS = max(r.peakRSS, rss)
			if rss > lim.rss && r.killed == "" {
				r.killed = fmt.Sprintf("resident memory %d MiB, above %d MiB", rss>>20, lim.rss>>20)
				_ = cmd.Process.Signal(syscall.SIGKILL)
			}
		}
	}
}

// residentBytes returns the resident memory of process pid (Linux), or 0.
func residentBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
