package main

// do's time bounds: connect and TLS handshake timeouts exit 28, a hung or
// trickling server is bounded by default, and a Retry-After past -timeout is
// not waited for.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// -connect-timeout covers TLS ("TLS included"), and curl exits 28 when
// the handshake times out; retryhttp exits 1: the timeout is wrapped in
// *url.Error whose Timeout() hides it from exitCodeOf.
func TestTLSHandshakeTimeoutIs28(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // never answers the ClientHello
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	start := time.Now()
	r := do(t, "", "-connect-timeout", "0.3", "-attempts", "2", "-w", "%{exitcode}", "https://"+ln.Addr().String()+"/")
	// About 1.5 s (two handshakes of 0.3 s and a wait); without the
	// connect timeout on the handshake, two attempt timeouts of 14 s. The
	// bound tells them apart with room for a busy machine.
	assert.Less(t, time.Since(start), 20*time.Second)
	assert.Contains(t, r.stderr, "TLS handshake timeout")
	assert.Equal(t, 28, r.code, r.stderr)
}

// A TCP connect that times out (a listen queue that is full drops the
// SYN): 28, as curl.
func TestConnectTimeoutIs28(t *testing.T) {
	t.Parallel()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	t.Cleanup(func() { syscall.Close(fd) })
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, syscall.Listen(fd, 0))
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for range 4 { // fill the queue; the rest hang
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	start := time.Now()
	r := do(t, "", "-connect-timeout", "0.3", "-attempts", "2", "http://"+addr+"/")
	assert.Equal(t, 28, r.code, r.stderr)
	// About 1.5 s; with the default connect timeout (10 s), over 20 s.
	assert.Less(t, time.Since(start), 15*time.Second)
}

// A server that accepts the connection and never answers (a hung process:
// the kernel still completes the handshake) keeps retryhttp do with its
// defaults waiting forever: no default bounds an attempt or the request,
// so a cron job piles up. The issue asks that a dead server be given up on
// within 2 minutes.
func TestDefaultsBoundAHungServer(t *testing.T) {
	t.Parallel()
	r := runCmd(t, "", "do", "-h")
	require.Equal(t, 0, r.code)
	bounded := false
	for _, flagName := range []string{"attempt-timeout", "timeout"} {
		m := regexp.MustCompile(`(?m)^  -` + flagName + ` value\n((?:\s{4,}\t.*\n)+)`).FindStringSubmatch(r.stdout)
		require.NotNil(t, m, flagName)
		if d := regexp.MustCompile(`\(default ([^)]+)\)`).FindStringSubmatch(m[1]); d != nil {
			v, err := time.ParseDuration(d[1])
			if err == nil && v > 0 && (flagName == "timeout" && v <= 2*time.Minute || flagName == "attempt-timeout" && 6*v+31*time.Second <= 2*time.Minute) {
				bounded = true
			}
		}
	}
	assert.True(t, bounded, "neither -attempt-timeout nor -timeout has a default: a hung server is waited for forever")
}

// -timeout NaN parses as a float, converts to a negative duration, and
// means "no timeout" without a word.
func TestTimeoutNaNIsAUsageError(t *testing.T) {
	t.Parallel()
	for _, flagName := range []string{"-timeout", "-connect-timeout", "-attempt-timeout"} {
		r := do(t, "", "-attempts", "1", flagName, "NaN", "http://127.0.0.1:1/")
		assert.Equal(t, 2, r.code, "%s NaN: %s", flagName, r.stderr)
	}
}

// A body that trickles past -timeout: 28, the part received on stdout
// (as curl), -w still written.
func TestTrickleTimeout(t *testing.T) {
	t.Parallel()
	// The body would take 30 s; -timeout ends it at 0.5 s.
	s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		for range 300 {
			_, _ = io.WriteString(w, "x")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	start := time.Now()
	r := do(t, "", "-timeout", "0.5", "-w", "|%{http_code} %{exitcode}", s.URL)
	assert.Equal(t, 28, r.code, r.stderr)
	assert.Less(t, time.Since(start), 15*time.Second)
	assert.Regexp(t, `^x+\|200 28$`, r.stdout)

	out := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(out, []byte("good"), 0o644))
	r = do(t, "", "-timeout", "0.5", "-o", out, s.URL)
	assert.Equal(t, 28, r.code)
	got, _ := os.ReadFile(out)
	assert.Equal(t, "good", string(got))
}

// A Retry-After longer than what is left of -timeout ends the request at
// once, exit 22, with the reason; it does not sleep into the timeout and
// exit 28.
func TestRetryAfterPastTheTimeout(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "later", http.StatusServiceUnavailable)
	})
	// Had it waited, -timeout would have ended it with 28: 22 and the
	// reason say that no wait was started (an elapsed time under 1.5 s
	// said the same, on an idle machine).
	r := do(t, "", "-timeout", "2", "-w", "%{exitcode} %{reason} %{num_attempts}", s.URL+"/")
	assert.Equal(t, 22, r.code, r.stderr)
	assert.Equal(t, "22 deadline 1", r.stdout)
	assert.Regexp(t, `^retryhttp do: GET http://127\.0\.0\.1:\d+/: 503 Service Unavailable after 1 attempt; not retried: the next wait would pass -timeout 2s\n`, r.stderr)
	assert.Equal(t, int32(1), s.attempts.Load())

	// A backoff wait (no Retry-After) past -timeout: the same, 22 after a
	// status, 7 after a refused connection.
	busy := newServer(t, failing(100, http.StatusServiceUnavailable))
	for _, tt := range []struct {
		url  string
		code int
		want string
	}{{busy.URL + "/", 22, "503 22 deadline 1"}, {"http://127.0.0.1:1/", 7, "000 7 deadline 1"}} {
		r := runCmd(t, "", "do", "-timeout", "1", "-base-delay", "3s", "-jitter", "none", "-w", "%{http_code} %{exitcode} %{reason} %{num_attempts}", tt.url)
		assert.Equal(t, tt.code, r.code, r.stderr)
		assert.Equal(t, tt.want, r.stdout)
		assert.Contains(t, r.stderr, " after 1 attempt; not retried: the next wait would pass -timeout 1s\n")
	}
}
