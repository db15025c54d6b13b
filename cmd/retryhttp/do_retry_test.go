package main

// What do retries and how: odd statuses, Retry-After's forms and -max-retry-
// after, hedging, a POST without a key sent once, -idempotency-key auto, a
// signal during a wait, and the exit-code table.

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// 204 and 304 are successes with no body; a gzip body is decoded; a HEAD
// on a 404 (-I) is 22 with nothing on stdout.
func TestOddStatuses(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/404":
			http.Error(w, "nope", http.StatusNotFound)
		}
	})
	for _, tt := range []struct {
		path   string
		args   []string
		code   int
		stdout string
	}{
		{"/204", nil, 0, "204"},
		{"/304", nil, 0, "304"},
		{"/404", []string{"-I"}, 22, "404"},
	} {
		r := do(t, "", append(tt.args, "-w", "%{http_code}", s.URL+tt.path)...)
		assert.Equal(t, tt.code, r.code, tt.path)
		assert.Equal(t, tt.stdout, r.stdout, tt.path)
	}
}

func TestRetryAfterForms(t *testing.T) {
	t.Parallel()
	date := newServer(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", time.Now().Add(2*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "after")
	})
	start := time.Now()
	r := do(t, "", "-v", date.URL)
	require.Equal(t, 0, r.code, r.stderr)
	assert.GreaterOrEqual(t, time.Since(start), time.Second, "an HTTP-date is honored")
	assert.Contains(t, r.stderr, "(Retry-After)")

	for _, v := range []string{"99999999999999999999", "86400"} {
		huge := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", v)
			w.WriteHeader(http.StatusTooManyRequests)
		})
		r := do(t, "", "-w", "%{reason}", huge.URL)
		assert.Equal(t, 22, r.code)
		assert.Equal(t, "retry_after", r.stdout)
		assert.Contains(t, r.stderr, "(Retry-After: "+v+") than -max-retry-after 1m0s")
	}
}

func TestExitCodeTable(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			_, _ = io.WriteString(w, "fine")
		case "/503":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "down for maintenance\nsecond line")
		case "/404":
			http.Error(w, "no such item", http.StatusNotFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/hang":
			<-r.Context().Done()
		}
	})
	port := portOfURL(s.URL)
	cut := rawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhalf")
	refused := "http://127.0.0.1:1/x"
	for _, tt := range []struct {
		name string
		args []string
		code int
		line string // a regexp for the whole stderr (one line)
	}{
		{"0", []string{s.URL + "/ok"}, 0, ``},
		{"1 missing file", []string{"-data-binary", "@/nonexistent-file", s.URL + "/ok"}, 1,
			`^retryhttp do: -data-binary: open /nonexistent-file: no such file or directory$`},
		{"2", []string{"-attempts", "-1", s.URL + "/ok"}, 2,
			`^retryhttp do: -attempts: -1 is less than 1 \(see retryhttp do -h\)$`},
		{"6", []string{"http://" + strings.Repeat("b", 64) + ".test/"}, 6,
			`^retryhttp do: GET http://b+\.test/: dial tcp: lookup b+\.test: no such host after 1 attempt; not retried: no retry fixes this error$`},
		{"7", []string{"-attempts", "2", refused}, 7,
			`^retryhttp do: GET http://127\.0\.0\.1:1/x: dial tcp 127\.0\.0\.1:1: connect: connection refused after 2 attempts; gave up: that is all -attempts allows$`},
		{"18", []string{"-attempts", "1", cut + "/"}, 18,
			`^retryhttp do: GET http://127\.0\.0\.1:\d+/: 200 OK: the body was cut short \(unexpected EOF\) after 1 attempt; not sent again: its bytes were already written out \(only -o FILE is written aside and can start over\)$`},
		{"22 retried", []string{"-attempts", "2", s.URL + "/503"}, 22,
			`^retryhttp do: GET http://127\.0\.0\.1:` + port + `/503: 503 Service Unavailable after 2 attempts; gave up: that is all -attempts allows\nretryhttp do: the body begins: down for maintenance \(-error-body prints it whole\)$`},
		{"22 final", []string{s.URL + "/404"}, 22,
			`^retryhttp do: GET http://127\.0\.0\.1:` + port + `/404: 404 Not Found after 1 attempt; not retried: 404 is final \(only 408, 429, 500, 502, 503, 504 and failed connections are retried\)\nretryhttp do: the body begins: no such item \(-error-body prints it whole\)$`},
		{"22 POST", []string{"-d", "a=1", s.URL + "/503"}, 22,
			`^retryhttp do: POST http://127\.0\.0\.1:` + port + `/503: 503 Service Unavailable after 1 attempt; not retried: POST is not idempotent and the server may have seen it \(add -idempotency-key auto to let it be retried\)\n`},
		{"23", []string{"-o", "/dev/full", s.URL + "/ok"}, 23,
			`^retryhttp do: GET http://127\.0\.0\.1:` + port + `/ok: 200 OK: write /dev/full: no space left on device$`},
		{"28", []string{"-timeout", "0.5", s.URL + "/hang"}, 28,
			`^retryhttp do: GET http://127\.0\.0\.1:` + port + `/hang: -timeout 500ms passed during attempt 1, before its response headers$`},
		{"28 attempt", []string{"-attempts", "2", "-attempt-timeout", "0.2", s.URL + "/hang"}, 28,
			`^retryhttp do: GET http://127\.0\.0\.1:` + port + `/hang: no response headers within -attempt-timeout 200ms after 2 attempts; gave up: that is all -attempts allows$`},
		{"47", []string{"-max-redirects", "2", s.URL + "/loop"}, 47,
			`^retryhttp do: GET http://127\.0\.0\.1:` + port + `/loop: too many redirects after 1 attempt \(and 2 redirects before\); more than -max-redirects 2$`},
	} {
		if tt.name == "23" {
			if _, err := os.Stat("/dev/full"); err != nil {
				continue
			}
		}
		r := do(t, "", tt.args...)
		assert.Equal(t, tt.code, r.code, "exit %s: %s", tt.name, r.stderr)
		if tt.line == "" {
			assert.Empty(t, r.stderr, tt.name)
		} else {
			assert.Regexp(t, tt.line, strings.TrimSuffix(r.stderr, "\n"), "exit %s", tt.name)
		}
		switch tt.code {
		case 0:
			assert.Equal(t, "fine", r.stdout)
		case 18: // on standard output, the part received was written (README)
			assert.Equal(t, "half", r.stdout)
		default:
			assert.Empty(t, r.stdout, "exit %s: stdout", tt.name)
		}
	}
}

// A GET whose first copy is slow is hedged: the second copy answers, in
// far less than the first would take; -v says which was the hedge.
func TestHedgeASlowFirstCopy(t *testing.T) {
	t.Parallel()
	// The first copy answers after a minute unless canceled: only the
	// hedge can answer in time, however late a busy machine sends it.
	s := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			select {
			case <-r.Context().Done():
			case <-time.After(time.Minute):
			}
			_, _ = io.WriteString(w, "slow")
			return
		}
		_, _ = io.WriteString(w, "fast")
	})
	start := time.Now()
	r := do(t, "", "-v", "-hedge", "100ms", "-w", " %{http_code} %{num_attempts}", s.URL+"/")
	elapsed := time.Since(start)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "fast 200 2", r.stdout)
	assert.Less(t, elapsed, 30*time.Second, "the command waited for the first copy")
	assert.Contains(t, r.stderr, "(hedge)", "-v does not say which attempt was the hedge: %q", r.stderr)
	assert.Equal(t, int32(2), s.attempts.Load())
}

// A POST without a key is never hedged nor resent: the server sees it
// exactly once, whether it is slow, fails with 503, or the connection
// drops after the server read it. With a key it may be retried.
func TestPostWithoutKeyIsSentOnce(t *testing.T) {
	t.Parallel()
	slow := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		time.Sleep(600 * time.Millisecond)
		_, _ = io.WriteString(w, "done")
	})
	r := do(t, "", "-v", "-hedge", "50ms", "-d", "charge=1", slow.URL)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, int32(1), slow.attempts.Load(), "a POST without a key was hedged")
	assert.NotContains(t, r.stderr, "(hedge)")

	busy := newServer(t, failing(100, http.StatusServiceUnavailable))
	r = do(t, "", "-hedge", "10ms", "-data-binary", "charge=1", busy.URL)
	assert.Equal(t, 22, r.code)
	assert.Equal(t, int32(1), busy.attempts.Load(), "a POST without a key was resent after a 503")

	// The server reads the request, then the connection drops.
	var got atomic.Int32
	url := serveConns(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err == nil {
			_, _ = io.ReadAll(req.Body)
			got.Add(1)
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a reset
		}
		c.Close()
	}) + "/"
	r = do(t, "", "-hedge", "10ms", "-d", "charge=1", "-w", "%{num_attempts} %{reason}", url)
	assert.NotEqual(t, 0, r.code)
	assert.Equal(t, int32(1), got.Load(), "a POST without a key was resent after the server had read it")
	assert.Equal(t, "1 method", r.stdout)
	assert.Contains(t, r.stderr, "not retried: POST is not idempotent")

	before := got.Load()
	r = do(t, "", "-attempts", "3", "-idempotency-key", "auto", "-d", "charge=1", url)
	assert.NotEqual(t, 0, r.code)
	assert.Equal(t, int32(3), got.Load()-before, "with a key the POST is retried")
}

func TestIdempotencyKeyAutoIsTheSameOnEveryAttempt(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(2, http.StatusServiceUnavailable))
	r := do(t, "", "-d", "item=42", "-idempotency-key", "auto", "-w", " %{num_attempts}", s.URL+"/jobs")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "hello 3", r.stdout)
	s.mu.Lock()
	keys, bodies, methods := append([]string(nil), s.keys...), append([]string(nil), s.bodies...), append([]string(nil), s.methods...)
	s.mu.Unlock()
	require.Len(t, keys, 3)
	assert.Regexp(t, `^[0-9a-f]{32}$`, keys[0])
	assert.Equal(t, []string{keys[0], keys[0], keys[0]}, keys, "the key changed between attempts")
	assert.Equal(t, []string{"item=42", "item=42", "item=42"}, bodies)
	assert.Equal(t, []string{"POST", "POST", "POST"}, methods)

	// Two runs get two keys.
	r = do(t, "", "-d", "item=42", "-idempotency-key", "auto", s.URL+"/jobs")
	require.Equal(t, 0, r.code, r.stderr)
	s.mu.Lock()
	last := s.keys[len(s.keys)-1]
	s.mu.Unlock()
	assert.Regexp(t, `^[0-9a-f]{32}$`, last)
	assert.NotEqual(t, keys[0], last, "two runs sent the same key")
}

func TestMaxRetryAfter(t *testing.T) {
	t.Parallel()
	long := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	r := do(t, "", "-max-retry-after", "1s", "-w", "%{reason}", long.URL+"/")
	assert.Equal(t, 22, r.code)
	assert.Equal(t, "retry_after", r.stdout)
	assert.Equal(t, "retryhttp do: GET "+long.URL+"/: 429 Too Many Requests after 1 attempt; not retried: the server asked for a longer wait (Retry-After: 3) than -max-retry-after 1s\n", r.stderr)

	short := newServer(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	start := time.Now()
	r = do(t, "", "-v", "-max-retry-after", "2s", short.URL+"/")
	require.Equal(t, 0, r.code, r.stderr)
	assert.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond, "Retry-After: 1 was not honored")
	assert.Regexp(t, `retrying in 1(\.\d+)?s \(Retry-After\)`, r.stderr)
}

// Ctrl-C (or SIGTERM) during a long Retry-After wait: the command ends at
// once with 130 (143), -w's line is written with that code, nothing else
// goes to stdout, -o is left as it was and no temporary file stays.
func TestSignalDuringBackoffWait(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(tt.sig.String(), func(t *testing.T) {
			t.Parallel()
			s := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", "50")
				http.Error(w, "later", http.StatusServiceUnavailable)
			})
			dir := t.TempDir()
			out := filepath.Join(dir, "report.json")
			require.NoError(t, os.WriteFile(out, []byte("yesterday"), 0o644))
			p := startDo(t, dir, "-v", "-o", out, "-w", "%{http_code} %{exitcode} %{reason}", s.URL+"/")
			waitFor(t, 10*time.Second, func() bool { return strings.Contains(p.stderr.String(), "(Retry-After)") }, "the first attempt")
			require.NoError(t, p.cmd.Process.Signal(tt.sig))
			// The wait is 50 s: exiting within the 10 s the test waits
			// shows it was cut short (it asserted 2 s before).
			code := p.wait(t, 10*time.Second)
			assert.Equal(t, tt.code, code, p.stderr.String())
			assert.Equal(t, "503 "+strconv.Itoa(tt.code)+" canceled", p.stdout.String(), "stdout holds only -w's line, with the last code received")
			assert.Regexp(t, `\nretryhttp do: GET http://127\.0\.0\.1:\d+/: 503 Service Unavailable after 1 attempt; interrupted while waiting to retry\n$`, p.stderr.String())
			got, _ := os.ReadFile(out)
			assert.Equal(t, "yesterday", string(got))
			entries, _ := os.ReadDir(dir)
			assert.Len(t, entries, 1, "a temporary file was left")
			assert.Equal(t, int32(1), s.attempts.Load())
		})
	}
}
