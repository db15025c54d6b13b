package main

// More helpers for the tests of do: servers that misbehave in the ways
// curl users meet, and checks of the command's output.

import (
	"bufio"
	"bytes"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// captureServer answers every connection with resp, byte for byte, and
// records the head of each request as it came on the wire.
type captureServer struct {
	url  string
	mu   sync.Mutex
	reqs []string
}

func newCaptureServer(t *testing.T, resp string) *captureServer {
	t.Helper()
	s := &captureServer{}
	s.url = serveConns(t, func(c net.Conn) {
		defer c.Close()
		head := readHead(bufio.NewReader(c))
		s.mu.Lock()
		s.reqs = append(s.reqs, head)
		s.mu.Unlock()
		_, _ = io.WriteString(c, resp)
	})
	return s
}

func (s *captureServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

// started is a command running in the background, for signals.
type started struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func startDo(t *testing.T, dir string, args ...string) *started {
	t.Helper()
	return startDoTo(t, dir, nil, args...)
}

// startDoTo is startDo with standard output going to stdout instead, when
// it is not nil (s.stdout then stays empty).
func startDoTo(t *testing.T, dir string, stdout *os.File, args ...string) *started {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"do"}, args...)...)
	cmd.Dir = dir
	s := &started{cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	if stdout != nil {
		cmd.Stdout = stdout
	}
	require.NoError(t, cmd.Start())
	go func() { _ = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

// wait returns the exit code and how long the command took after since,
// failing the test after limit.
func (s *started) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(limit):
		_ = s.cmd.Process.Kill()
		<-s.done
		t.Fatalf("still running after %v; stderr:\n%s", limit, s.stderr.String())
	}
	return s.cmd.ProcessState.ExitCode()
}

func waitFor(t *testing.T, limit time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// onlyLine returns stderr's one line, failing when it has more or none.
func onlyLine(t *testing.T, stderr string) string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	assert.Len(t, lines, 1, "want one line on stderr, got %q", stderr)
	return lines[0]
}

func portOfURL(u string) string {
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://"))
	return port
}

func tlsServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, string) {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	s.EnableHTTP2 = true
	s.StartTLS()
	t.Cleanup(s.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o644))
	return s, ca
}

func runEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"do"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	return runExec(t, cmd)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
