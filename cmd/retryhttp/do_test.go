package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	docmd "github.com/retryhttp/retryhttp/cmd/retryhttp/internal/do"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDoRetriesAndPrintsTheBody(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch n {
		case 1:
			w.Header().Set("Retry-After", "0")
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case 2:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		default:
			_, _ = io.WriteString(w, "hello")
		}
	})
	r := do(t, "", s.URL+"/x?token=secret", "-v") // flags after the URL, as curl takes them
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "hello", r.stdout)
	assert.Equal(t, int32(3), s.attempts.Load())
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	require.Len(t, lines, 3, "one line per attempt:\n%s", r.stderr)
	assert.Contains(t, lines[0], "attempt 1: GET "+s.URL+"/x: 503 Service Unavailable in ")
	assert.Contains(t, lines[0], "(Retry-After)", "the server chose the first wait")
	assert.Contains(t, lines[1], "(backoff)", "the backoff chose the second")
	assert.Contains(t, lines[2], "attempt 3: GET "+s.URL+"/x: 200 OK in ")
	assert.NotContains(t, r.stderr, "secret", "no query string in messages")
}

func TestDoExitCodesAndOutput(t *testing.T) {
	t.Parallel()
	redirects := func(n int, w http.ResponseWriter, r *http.Request) {
		if hops, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/hop/")); err == nil && hops > 0 {
			http.Redirect(w, r, fmt.Sprintf("/hop/%d", hops-1), http.StatusFound)
			return
		}
		_, _ = io.WriteString(w, "arrived")
	}
	tests := []struct {
		name     string
		handler  func(int, http.ResponseWriter, *http.Request)
		path     string
		args     []string
		code     int
		attempts int32
		stdout   string
		stderr   []string
	}{
		{"success", failing(0, 0), "", nil, 0, 1, "hello", nil},
		{"final 503 after every attempt", failing(10, 503), "", nil, 22, 6, "",
			[]string{"503 Service Unavailable after 6 attempts; gave up: that is all -attempts allows", "the body begins: busy"}},
		{"404 is final", failing(10, 404), "", nil, 22, 1, "", []string{"404 Not Found after 1 attempt; not retried: 404 is final"}},
		{"one attempt", failing(1, 502), "", []string{"-attempts", "1"}, 22, 1, "", []string{"502 Bad Gateway"}},
		{"redirects followed", redirects, "/hop/3", nil, 0, 4, "arrived", nil},
		{"too many redirects", redirects, "/hop/3", []string{"-max-redirects", "2"}, 47, 3, "", []string{"too many redirects", "more than -max-redirects 2"}},
		{"redirects not followed", redirects, "/hop/1", []string{"-max-redirects", "0"}, 0, 1, "<a href=\"/hop/0\">Found</a>.\n\n", nil},
		{"POST is not retried without a key", failing(10, 503), "", []string{"-d", "a=1"}, 22, 1, "",
			[]string{"not retried: POST is not idempotent and the server may have seen it (add -idempotency-key auto"}},
		{"Retry-After beyond the cap", func(n int, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
		}, "", nil, 22, 1, "", []string{"429 Too Many Requests after 1 attempt; not retried: the server asked for a longer wait (Retry-After: 3600) than -max-retry-after 1m0s"}},
		{"the next wait would pass -timeout", func(n int, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusServiceUnavailable)
		}, "", []string{"-timeout", "10"}, 22, 1, "", []string{"not retried: the next wait would pass -timeout 10s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, tt.handler)
			r := do(t, "", append(tt.args, s.URL+tt.path)...)
			assert.Equal(t, tt.code, r.code, r.stderr)
			assert.Equal(t, tt.attempts, s.attempts.Load())
			assert.Equal(t, tt.stdout, r.stdout, "stdout gets the body of a success, and nothing on a failure")
			for _, want := range tt.stderr {
				assert.Contains(t, r.stderr, want)
			}
			assert.NotContains(t, r.stderr, "retryhttp do: retryhttp:")
			if tt.code != 0 {
				lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
				assert.LessOrEqual(t, len(lines), 2, "one line says it all, and one may show the body:\n%s", r.stderr)
				if len(lines) == 2 {
					assert.Contains(t, lines[1], "the body begins: ")
				}
			}
		})
	}
}

func TestDoTransportErrorCodes(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + ln.Addr().String() + "/"
	ln.Close()
	hang := newServer(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"connection refused", []string{"-attempts", "2", closed}, 7, "connection refused after 2 attempts; gave up"},
		{"unknown host", []string{"-attempts", "2", "http://nonexistent.invalid/"}, 6, "no such host"},
		{"whole request timeout, in seconds", []string{"-timeout", "0.3", hang.URL}, 28, "-timeout 300ms passed during attempt 1, before its response headers"},
		{"attempt timeout", []string{"-attempt-timeout", "100ms", "-attempts", "2", hang.URL}, 28, "no response headers within -attempt-timeout 100ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			r := do(t, "", tt.args...)
			assert.Equal(t, tt.code, r.code, r.stderr)
			assert.Contains(t, r.stderr, tt.stderr)
			assert.Empty(t, r.stdout)
			assert.Less(t, time.Since(start), 10*time.Second)
		})
	}
}

// -o never leaves a half-written file, and never replaces a good file with
// an error page.
func TestDoOutputFileIsWrittenWholeOrNotAtAll(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := filepath.Join(dir, "report.json")
	require.NoError(t, os.WriteFile(out, []byte("yesterday's good report"), 0o640))

	bad := newServer(t, failing(10, http.StatusInternalServerError))
	r := do(t, "", "-o", out, bad.URL)
	assert.Equal(t, 22, r.code)
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, "yesterday's good report", string(got), "a failure leaves the file alone")

	cut := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "1000")
		_, _ = io.WriteString(w, "only part of it")
	})
	r = do(t, "", "-o", out, cut.URL)
	assert.Equal(t, 18, r.code, r.stderr)
	got, _ = os.ReadFile(out)
	assert.Equal(t, "yesterday's good report", string(got), "a body cut short leaves the file alone")

	good := newServer(t, failing(1, http.StatusServiceUnavailable))
	r = do(t, "", "-o", out, good.URL)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Empty(t, r.stdout)
	got, _ = os.ReadFile(out)
	assert.Equal(t, "hello", string(got))
	info, err := os.Stat(out)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), info.Mode().Perm(), "the file keeps its mode")

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file left behind: %v", entries)

	// A reader that goes away (retryhttp do URL | head -c 100): SIGPIPE
	// ends the command, as it ends cat, and the shell sees 141.
	big := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(make([]byte, 4<<20))
	})
	cmd := exec.Command(binary, "do", big.URL)
	pipe, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	_, _ = io.ReadFull(pipe, make([]byte, 100))
	pipe.Close()
	_ = cmd.Wait()
	status, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	require.True(t, ok)
	assert.True(t, status.Signaled() && status.Signal() == syscall.SIGPIPE, "ended by SIGPIPE: %v", cmd.ProcessState)

	unsent := newServer(t, failing(0, 0))
	r = do(t, "", "-o", filepath.Join(dir, "missing", "x"), unsent.URL)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "no such file or directory")
	assert.Zero(t, unsent.attempts.Load(), "an output that cannot be written fails before the request")
}

func TestDoErrorBody(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, "{\"error\": \"no such item\",\n \"id\": 42}\n")
	})
	r := do(t, "", s.URL)
	assert.Equal(t, 22, r.code)
	assert.Contains(t, r.stderr, `the body begins: {"error": "no such item", (-error-body prints it whole)`)
	assert.Empty(t, r.stdout)

	r = do(t, "", "-error-body", s.URL)
	assert.Contains(t, r.stderr, "{\"error\": \"no such item\",\n \"id\": 42}\n")
	assert.Empty(t, r.stdout)

	binary := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte{0, 1, 2, 0xff})
	})
	r = do(t, "", binary.URL)
	assert.NotContains(t, r.stderr, "the body begins", "a binary body is not shown")
}

func TestDoWriteOut(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(1, http.StatusServiceUnavailable))
	r := do(t, "", "-w", `%{http_code} %{num_attempts} %{time_total} %{exitcode} [%{reason}] %%\n`, s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	body, line, ok := strings.Cut(r.stdout, "200 ")
	require.True(t, ok, r.stdout)
	assert.Equal(t, "hello", body, "-w follows the body")
	fields := strings.Fields(line)
	require.Len(t, fields, 5, line)
	assert.Equal(t, "2", fields[0])
	assert.Regexp(t, `^\d+\.\d{6}$`, fields[1], "seconds, as curl prints them")
	assert.Equal(t, []string{"0", "[]", "%"}, fields[2:], "no reason: it succeeded")
	assert.True(t, strings.HasSuffix(r.stdout, "%\n"))

	bad := newServer(t, failing(10, http.StatusServiceUnavailable))
	r = do(t, "", "-attempts", "2", "-w", `%{http_code} %{num_attempts} %{exitcode} %{reason}\n`, bad.URL)
	assert.Equal(t, 22, r.code)
	assert.Equal(t, "503 2 22 exhausted\n", r.stdout, "-w is written on a failure too; the body is not")

	r = do(t, "", "-attempts", "1", "-w", `%{http_code} %{num_attempts}\n`, "http://nonexistent.invalid/")
	assert.Equal(t, 6, r.code)
	assert.Equal(t, "000 1\n", r.stdout, "no response: 000, as curl")
}

func TestDoCurlHabits(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "lines.txt")
	require.NoError(t, os.WriteFile(file, []byte("a=1\r\nb=2\n"), 0o600))
	s := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Answer", "42")
		_, _ = io.WriteString(w, "body")
	})
	last := func() (string, http.Header, string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		n := len(s.bodies) - 1
		return s.bodies[n], s.headers[n], s.methods[n]
	}

	r := do(t, "", s.URL, "-i")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `^HTTP/1\.1 200 OK\r\n`, r.stdout)
	assert.Contains(t, r.stdout, "X-Answer: 42\r\n")
	assert.True(t, strings.HasSuffix(r.stdout, "\r\n\r\nbody"), "headers, a blank line, the body: %q", r.stdout)

	r = do(t, "", "-I", s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "X-Answer: 42\r\n")
	assert.NotContains(t, r.stdout, "body")
	_, _, method := last()
	assert.Equal(t, http.MethodHead, method)

	r = do(t, "", "-d", "x=1", "-d", "@"+file, s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	body, h, method := last()
	assert.Equal(t, http.MethodPost, method)
	assert.Equal(t, "x=1&a=1b=2", body, "repeated -d joined with &, CR and LF removed from a file, as curl does")
	assert.Equal(t, "application/x-www-form-urlencoded", h.Get("Content-Type"))

	r = do(t, "", "-data-binary", "@"+file, "-H", "Content-Type: text/plain", s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	body, h, _ = last()
	assert.Equal(t, "a=1\r\nb=2\n", body, "-data-binary keeps the bytes")
	assert.Equal(t, "text/plain", h.Get("Content-Type"), "-H sets the Content-Type")

	r = do(t, "", "--data-binary", "@-", s.URL, "-X", "PUT")
	require.Equal(t, 0, r.code, r.stderr)
	r = do(t, "raw\nbytes", "--data-binary", "@-", "-X", "PUT", s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	body, _, method = last()
	assert.Equal(t, "raw\nbytes", body)
	assert.Equal(t, http.MethodPut, method)

	r = do(t, "", "-u", "alice:s3cret", s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	_, h, _ = last()
	assert.Equal(t, "Basic YWxpY2U6czNjcmV0", h.Get("Authorization"))
}

func TestDoBodiesAndIdempotencyKeys(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "payload.json")
	payload := strings.Repeat(`{"item":1}`, 5000)
	require.NoError(t, os.WriteFile(file, []byte(payload), 0o600))

	tests := []struct {
		name     string
		args     []string
		stdin    string
		attempts int
		body     string
		key      string // "" none, "*" any non-empty and the same on every attempt
	}{
		{"POST without a key is sent once", []string{"-d", "a=1"}, "", 1, "a=1", ""},
		{"POST with a key is retried", []string{"-d", "a=1", "-idempotency-key", "k-42"}, "", 3, "a=1", "k-42"},
		{"auto key, the same on every attempt", []string{"-d", "a=1", "-idempotency-key", "auto"}, "", 3, "a=1", "*"},
		{"PUT from a file, streamed", []string{"-X", "PUT", "-data-binary", "@" + file}, "", 3, payload, ""},
		{"PUT from stdin, streamed", []string{"-X", "PUT", "-data-binary", "@-"}, "streamed", 3, "streamed", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, failing(2, http.StatusServiceUnavailable))
			r := do(t, tt.stdin, append(tt.args, s.URL)...)
			assert.Equal(t, int32(tt.attempts), s.attempts.Load(), r.stderr)
			s.mu.Lock()
			defer s.mu.Unlock()
			for i := range s.bodies {
				assert.Equal(t, sha256.Sum256([]byte(tt.body)), sha256.Sum256([]byte(s.bodies[i])), "attempt %d carried the same body", i+1)
				switch tt.key {
				case "":
					assert.Empty(t, s.keys[i])
				case "*":
					assert.Len(t, s.keys[i], 32)
					assert.Equal(t, s.keys[0], s.keys[i])
				default:
					assert.Equal(t, tt.key, s.keys[i])
				}
			}
		})
	}

	s := newServer(t, failing(10, http.StatusServiceUnavailable))
	r := do(t, strings.Repeat("x", 100<<10), "-X", "PUT", "-data-binary", "@-", s.URL)
	assert.Equal(t, 22, r.code)
	assert.Contains(t, r.stderr, "not retried: the body could not be sent again")
	assert.Equal(t, int32(1), s.attempts.Load())
}

func TestDoHeadersAndStartJitter(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(0, 0))
	r := do(t, "", "-v", "-H", "Accept: text/plain", "-H", "X-Trace: abc", "-H", "Host: api.example", "-start-jitter", "200ms", s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	s.mu.Lock()
	assert.Equal(t, "text/plain", s.headers[0].Get("Accept"))
	assert.Equal(t, "abc", s.headers[0].Get("X-Trace"))
	assert.Equal(t, "api.example", s.hosts[0], "-H Host sets the virtual host, as in curl")
	s.mu.Unlock()
	assert.Regexp(t, `start jitter: waiting \d+(\.\d+)?m?s`, r.stderr)

	r = do(t, "", "-d", "@/nonexistent/file", s.URL)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "no such file or directory")
}

// The shell sees 128 + the signal's number when the command is stopped,
// in its start jitter as during the request.
func TestDoSignalsExitAsShellsExpect(t *testing.T) {
	t.Parallel()
	hang := newServer(t, func(_ int, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	for _, tt := range []struct {
		name string
		sig  syscall.Signal
		args []string
		wait string // on stderr before the signal
		code int
	}{
		{"SIGTERM in the start jitter", syscall.SIGTERM, []string{"-v", "-start-jitter", "1h", hang.URL}, "start jitter", 143},
		{"SIGINT in the start jitter", syscall.SIGINT, []string{"-v", "-start-jitter", "1h", hang.URL}, "start jitter", 130},
		{"SIGTERM during the request", syscall.SIGTERM, []string{"-v", "-attempts", "1", hang.URL + "/?hang"}, "", 143},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, append([]string{"do"}, tt.args...)...)
			stderr, err := cmd.StderrPipe()
			require.NoError(t, err)
			var stdout strings.Builder
			cmd.Stdout = &stdout
			before := hang.attempts.Load()
			require.NoError(t, cmd.Start())
			lines := bufio.NewScanner(stderr)
			if tt.wait != "" {
				require.True(t, lines.Scan(), "the command said nothing")
				require.Contains(t, lines.Text(), tt.wait)
			} else {
				for hang.attempts.Load() == before && ctx.Err() == nil {
					time.Sleep(5 * time.Millisecond)
				}
			}
			require.NoError(t, cmd.Process.Signal(tt.sig))
			go func() { _, _ = io.Copy(io.Discard, stderr) }()
			err = cmd.Wait()
			require.Error(t, err)
			assert.Equal(t, tt.code, cmd.ProcessState.ExitCode())
			assert.Empty(t, stdout.String())
		})
	}
}

// The defaults of do ride out a restart: a server that refuses connections
// for 5 s and then answers is reached. With equal jitter the waits have a
// floor, so this holds in every run, not just most: the waits before the
// sixth attempt add up to at least 15.5 s. And a dead server is given up
// on within two minutes: at most 31 s of waits, plus six connect timeouts
// of 10 s when the host does not answer at all, or six attempt timeouts of
// 14 s when it accepts connections and never answers.
func TestDoDefaultsRideOutARestart(t *testing.T) {
	t.Parallel()
	jitter, err := retryhttp.ParseJitter(docmd.DefaultJitter)
	require.NoError(t, err)
	p := retryhttp.Policy{MaxAttempts: docmd.DefaultAttempts, BaseDelay: docmd.DefaultBaseDelay, MaxDelay: docmd.DefaultMaxDelay, Jitter: jitter}
	var minTotal, maxTotal time.Duration
	for n := range docmd.DefaultAttempts - 1 { // retry n waits before attempt n+2
		// The bounds of each wait: the extremes over many draws.
		lo, hi := time.Duration(1<<62), time.Duration(0)
		for range 2000 {
			d := p.Delay(n, 0, nil)
			lo, hi = min(lo, d), max(hi, d)
		}
		minTotal += lo
		maxTotal += hi
	}
	t.Logf("waits before the last attempt: %v to %v", minTotal, maxTotal)
	assert.GreaterOrEqual(t, minTotal, 15*time.Second, "the waits outlast a 5 s restart, in every run")
	assert.LessOrEqual(t, maxTotal, 31*time.Second)
	// An attempt ends by the connect timeout when the host does not
	// answer, by the attempt timeout when it accepts and never answers.
	assert.LessOrEqual(t, maxTotal+docmd.DefaultAttempts*max(docmd.DefaultConnectTimeout, docmd.DefaultAttemptTimeout), 2*time.Minute, "a dead or hung server is given up on within two minutes")

	// And for real: a port that refuses connections for 5 s, then answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	go func() {
		time.Sleep(5 * time.Second)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "back") })}
		t.Cleanup(func() { srv.Close() })
		_ = srv.Serve(ln)
	}()
	r := runCmd(t, "", "do", "-v", "http://"+addr+"/")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "back", r.stdout)
}
