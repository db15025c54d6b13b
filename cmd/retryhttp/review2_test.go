package main

// A second outside review of retryhttp do (and of sim and demo's flag
// checks), black-box, against loopback servers: header values and names a
// shell can pass, URL credentials, -i and -I exactness, -w on every
// failure path, the exit-code table with its stderr lines, hedging, keys,
// Retry-After against -timeout and -max-retry-after, signals in a backoff
// wait, a full disk, a 100 MiB body, gzip, HTTP/2 over TLS, temporary
// files. Kept as a regression suite: it found invalid -H names and values
// (and Host) sent or failing late, no -w line when nothing was sent, -o onto
// a directory found only after sending, the failure line and url_effective
// naming the URL that redirected rather than the one that failed, HTTP/2's
// status line unlike curl's, and demo -retry-after fractions truncated.
// (-i does not show Connection: net/http removes it from Response.Header.)

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// ---------------------------------------------------------------------
// -H: what a shell can pass

// A header that net/http will refuse to send is a bad flag, known before
// anything is sent: exit 2 and one line naming -H, as an empty -H already is.
// The command instead calls it an attempt, exits 1 and reports
// "after 1 attempt; not retried: no retry fixes this error", with -w
// counting one attempt that never happened.
func TestReview2InvalidHeaderIsAUsageError(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(0, 0))
	for _, tt := range []struct{ flag, value string }{
		{"-H", "X-A: a\r\nEvil: 1"},
		{"-H", "X-A: a\nEvil: 1"},
		{"-H", "X Y: z"},
		{"-H", "Bad(name): v"},
		{"-H", "X-A: \x01"},
		{"-idempotency-key", "k\r\nX-Evil: 1"},
	} {
		args := []string{tt.flag, tt.value, "-w", "%{num_attempts} %{exitcode}", s.URL}
		if tt.flag == "-idempotency-key" {
			args = append([]string{"-d", "a=b"}, args...)
		}
		r := do(t, "", args...)
		assert.Equal(t, 2, r.code, "%s %q: a header net/http cannot send is a usage error (exit 2), not a failed attempt; got %d and %q", tt.flag, tt.value, r.code, r.stderr)
		assert.NotContains(t, r.stderr, "after 1 attempt", "%s %q: nothing was sent, yet the message counts an attempt", tt.flag, tt.value)
		assert.NotContains(t, r.stderr, "panic")
		assert.NotContains(t, r.stdout, "1 1", "%s %q: -w counts an attempt that was never sent", tt.flag, tt.value)
	}
	assert.Zero(t, s.attempts.Load(), "a request with a bad header reached the server")
}

// -H 'Host: x' names the virtual host, as curl. A value net/http will not
// send (CR LF, a space) is silently replaced by an empty Host header: the
// request goes out, the default virtual host answers, and the command
// exits 0 as if the named host had.
func TestReview2InvalidHostHeaderIsNotSentEmpty(t *testing.T) {
	t.Parallel()
	s := newCaptureServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	for _, host := range []string{"evil.example\r\nX-Injected: 1", "a b/c"} {
		r := do(t, "", "-attempts", "1", "-H", "Host: "+host, s.url+"/")
		assert.NotEqual(t, 0, r.code, "-H %q: exit 0 and stdout %q, though the Host was not sent as given", "Host: "+host, r.stdout)
	}
	for _, req := range s.requests() {
		assert.NotContains(t, req, "X-Injected", "header injection through -H Host")
		assert.NotContains(t, req, "\r\nHost: \r\n", "the request went out with an empty Host header instead of the one -H named (or a usage error): %q", req)
	}
	// A good one is sent as given.
	r := do(t, "", "-attempts", "1", "-H", "Host: vhost.example:8080", s.url+"/")
	require.Equal(t, 0, r.code, r.stderr)
	reqs := s.requests()
	assert.Contains(t, reqs[len(reqs)-1], "\r\nHost: vhost.example:8080\r\n")
}

// ---------------------------------------------------------------------
// Credentials in the URL

// user:pass@host is sent as basic auth, percent-decoded; -u wins over it,
// as curl's -u does.
func TestReview2URLUserinfoAndU(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(0, 0))
	auth := func() (string, string, bool) {
		_, _, h := lastRequest(s)
		req := &http.Request{Header: h}
		return req.BasicAuth()
	}
	u := strings.Replace(s.URL, "http://", "http://bob:p%40ss%3Aw@", 1)
	r := do(t, "", u+"/")
	require.Equal(t, 0, r.code, r.stderr)
	user, pass, ok := auth()
	assert.True(t, ok)
	assert.Equal(t, "bob p@ss:w", user+" "+pass, "URL userinfo is percent-decoded")

	r = do(t, "", "-u", "alice:secret", u+"/")
	require.Equal(t, 0, r.code, r.stderr)
	user, pass, _ = auth()
	assert.Equal(t, "alice secret", user+" "+pass, "-u overrides the URL's userinfo, as curl")
}

// The README: "the credentials of -u and of -H Authorization or Cookie are
// not sent to another host, port or scheme", so they are sent on a
// redirect to the same origin: with -u, and with user:pass@host in the
// URL (which curl treats as -u) too.
func TestReview2URLCredentialsFollowASameOriginRedirect(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/start" {
			http.Redirect(w, r, "/next", http.StatusFound)
			return
		}
		if _, _, ok := r.BasicAuth(); !ok {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, "welcome")
	})
	r := do(t, "", "-u", "bob:pw", s.URL+"/start")
	require.Equal(t, 0, r.code, "with -u: %s", r.stderr)
	assert.Equal(t, "welcome", r.stdout)

	u := strings.Replace(s.URL, "http://", "http://bob:pw@", 1)
	r = do(t, "", u+"/start")
	assert.Equal(t, 0, r.code, "credentials in the URL are not sent after a same-origin redirect (curl sends them, and -u does): %s", r.stderr)
	assert.Equal(t, "welcome", r.stdout)
}

// ---------------------------------------------------------------------
// -i and -I

// -I prints the status line and the headers and nothing after the blank
// line, Content-Length included though no body came; -i on 204 and 304
// prints only the head; size_download counts the body only.
func TestReview2HeadAndIncludeOutput(t *testing.T) {
	t.Parallel()
	head := newCaptureServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-Zeta: 1\r\nContent-Type: text/plain\r\n\r\n")
	r := do(t, "", "-I", "-w", "[%{http_code} %{size_download}]", head.url+"/")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\nX-Zeta: 1\r\n\r\n[200 0]", r.stdout)
	assert.True(t, strings.HasPrefix(head.requests()[0], "HEAD / HTTP/1.1\r\n"), head.requests()[0])

	for _, tt := range []struct{ resp, want string }{
		{"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n", "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n[204 0]"},
		{"HTTP/1.1 304 Not Modified\r\nEtag: \"v1\"\r\n\r\n", "HTTP/1.1 304 Not Modified\r\nEtag: \"v1\"\r\n\r\n[304 0]"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc[200 3]"},
		{"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok[200 2]"},
	} {
		s := newCaptureServer(t, tt.resp)
		r := do(t, "", "-attempts", "1", "-i", "-w", "[%{http_code} %{size_download}]", s.url+"/")
		require.Equal(t, 0, r.code, "%q: %s", tt.resp, r.stderr)
		assert.Equal(t, tt.want, r.stdout)
	}
}

// ---------------------------------------------------------------------
// TLS and HTTP/2

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

// A self-signed certificate: no flag trusts it, so the error must be
// clear, immediate (not retried: no retry fixes it) and exit 1; Go's
// SSL_CERT_FILE trusts it, and HTTP/2 is then used.
func TestReview2SelfSignedCertificateAndHTTP2(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	s, ca := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, r.Proto)
	})
	r := do(t, "", "-w", "%{http_code} %{num_attempts} %{exitcode} %{reason}", s.URL+"/")
	assert.Equal(t, 60, r.code, r.stderr)
	assert.Equal(t, "000 1 60 permanent", r.stdout, "a certificate error is not retried: one attempt, no wait")
	line := onlyLine(t, r.stderr)
	assert.Regexp(t, `^retryhttp do: GET https://127\.0\.0\.1:\d+/: tls: failed to verify certificate: x509: certificate signed by unknown authority after 1 attempt; not retried: no retry fixes this error$`, line)
	assert.Zero(t, hits.Load())

	r = runEnv(t, []string{"SSL_CERT_FILE=" + ca}, "-w", " %{http_code}", s.URL+"/")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "HTTP/2.0 200", r.stdout, "HTTP/2 over TLS")

	r = do(t, "", "-cacert", ca, "-w", " %{http_code}", s.URL+"/")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "HTTP/2.0 200", r.stdout, "-cacert trusts the server's authority, and HTTP/2 is still used")
	for _, bad := range []string{filepath.Join(t.TempDir(), "missing.pem"), os.DevNull} {
		r = do(t, "", "-cacert", bad, s.URL+"/")
		assert.Equal(t, 2, r.code, r.stderr)
		assert.Contains(t, r.stderr, "-cacert")
	}
}

// curl -i prints "HTTP/2 200" for HTTP/2 (there is no minor version);
// retryhttp do -i prints Go's "HTTP/2.0 200 OK", which scripts that grep
// '^HTTP/2 200' (the curl form) do not match.
func TestReview2HTTP2StatusLineAsCurl(t *testing.T) {
	t.Parallel()
	s, ca := tlsServer(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	r := runEnv(t, []string{"SSL_CERT_FILE=" + ca}, "-I", s.URL+"/")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `^HTTP/2 200\b`, r.stdout, "-I over HTTP/2 prints a status line curl never prints: %q", strings.SplitN(r.stdout, "\r\n", 2)[0])
}

// ---------------------------------------------------------------------
// gzip

// A gzip body is decoded (net/http asks for gzip itself), on stdout and
// into -o; -i then does not claim a Content-Encoding the output no longer
// has; a user who asks for gzip with -H gets the bytes as sent, as curl
// without --compressed.
func TestReview2Gzip(t *testing.T) {
	t.Parallel()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(strings.Repeat("hello gzip ", 1000)))
	require.NoError(t, zw.Close())
	s := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(gz.Bytes())
	})
	plain := strings.Repeat("hello gzip ", 1000)
	r := do(t, "", "-w", "%{size_download}", s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, plain+strconv.Itoa(len(plain)), r.stdout)

	out := filepath.Join(t.TempDir(), "body.txt")
	r = do(t, "", "-o", out, s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	got, _ := os.ReadFile(out)
	assert.Equal(t, plain, string(got))

	r = do(t, "", "-i", s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	assert.NotContains(t, r.stdout, "Content-Encoding: gzip", "-i claims gzip for a decoded body")
	assert.True(t, strings.HasSuffix(r.stdout, "\r\n\r\n"+plain))

	r = do(t, "", "-H", "Accept-Encoding: gzip", s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, gz.String(), r.stdout, "an explicit Accept-Encoding gets the bytes as sent")

	// A body that claims gzip and is not: not a success.
	bad := rawServer(t, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
	r = do(t, "", "-attempts", "1", "-o", out, bad+"/")
	assert.NotEqual(t, 0, r.code)
	got, _ = os.ReadFile(out)
	assert.Equal(t, plain, string(got), "-o is left as it was")
}

// ---------------------------------------------------------------------
// -w on every path, and its numbers

// -w is written on a refused connection, a name that does not resolve, a
// full disk and a cut body, with the exit code in it; time_total and
// size_download are right.
func TestReview2WriteOutOnFailures(t *testing.T) {
	t.Parallel()
	const format = "%{http_code} %{num_attempts} %{exitcode} %{reason}"
	longLabel := strings.Repeat("a", 64) // not a domain name: fails without asking a resolver
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"refused", []string{"-attempts", "2", "http://127.0.0.1:1/"}, 7, "000 2 7 exhausted"},
		{"no such host", []string{"http://" + longLabel + ".test/"}, 6, "000 1 6 permanent"},
	} {
		r := do(t, "", append([]string{"-w", format}, tt.args...)...)
		assert.Equal(t, tt.code, r.code, "%s: %s", tt.name, r.stderr)
		assert.Equal(t, tt.want, r.stdout, tt.name)
	}

	// time_total covers a slow answer; size_download counts the body.
	slow := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(w, "0123456789")
	})
	start := time.Now()
	r := do(t, "", "-i", "-o", filepath.Join(t.TempDir(), "x"), "-w", "%{time_total} %{size_download}", slow.URL)
	wall := time.Since(start).Seconds()
	require.Equal(t, 0, r.code, r.stderr)
	fields := strings.Fields(r.stdout)
	require.Len(t, fields, 2, r.stdout)
	total, err := strconv.ParseFloat(fields[0], 64)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, total, 0.3)
	assert.LessOrEqual(t, total, wall)
	assert.Regexp(t, `^\d+\.\d{6}$`, fields[0])
	assert.Equal(t, "10", fields[1], "size_download counts the body, not the headers -i adds")
}

// -w "also on a failure": a script branches on its output. When -o's
// folder cannot be written or a -data-binary file is missing, the command
// exits 1 and writes no -w line, so `code=$(retryhttp do -w
// '%{http_code}' ...)` gets an empty string instead of 000 (curl writes
// -w's line in these cases).
func TestReview2WriteOutWhenNothingIsSent(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(0, 0))
	for _, args := range [][]string{
		{"-o", "/nonexistent-dir/x.json"},
		{"-data-binary", "@/nonexistent-file"},
	} {
		r := do(t, "", append(args, "-w", "%{http_code} %{exitcode}", s.URL)...)
		assert.Equal(t, 1, r.code, "%q: %s", args, r.stderr)
		assert.Equal(t, "000 1", r.stdout, "%q: -w is not written on this failure", args)
	}
	// Ctrl-C in -start-jitter: 130, and no -w line either (a signal in
	// a backoff wait writes one).
	p := startDo(t, "", "-v", "-start-jitter", "1h", "-w", "%{http_code} %{exitcode}", s.URL)
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(p.stderr.String(), "start jitter") }, "the start jitter")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
	assert.Equal(t, 130, p.wait(t, 5*time.Second))
	assert.Equal(t, "000 130", p.stdout.String(), "-w is not written after a signal in -start-jitter")
}

// -o onto a directory (a typo: -o /var/lib/) is found only after the
// request was sent and answered: a POST is carried out and its answer
// lost with exit 23. A folder that cannot be written is already refused
// before sending (openOutput's comment promises as much); a directory as
// the target should be too.
func TestReview2OutputOntoADirectoryFailsBeforeSending(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(0, 0))
	dir := t.TempDir()
	r := do(t, "", "-d", "charge=1", "-o", dir, s.URL)
	assert.NotEqual(t, 0, r.code)
	assert.Contains(t, r.stderr, "is a directory")
	assert.Zero(t, s.attempts.Load(), "the POST was sent though its answer could not be written (exit %d: %s)", r.code, r.stderr)
	entries, _ := os.ReadDir(dir)
	assert.Empty(t, entries)
}

// ---------------------------------------------------------------------
// The exit-code table, with the line on stderr

func TestReview2ExitCodeTable(t *testing.T) {
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
			`^retryhttp do: GET http://127\.0\.0\.1:1/x: dial tcp 127\.0\.0\.1:1: connect: connection refused after 2 attempts; gave up: all 2 attempts failed \(-attempts\)$`},
		{"18", []string{"-attempts", "1", cut + "/"}, 18,
			`^retryhttp do: GET http://127\.0\.0\.1:\d+/: 200 OK: unexpected EOF$`},
		{"22 retried", []string{"-attempts", "2", s.URL + "/503"}, 22,
			`^retryhttp do: GET http://127\.0\.0\.1:` + port + `/503: 503 Service Unavailable after 2 attempts; gave up: all 2 attempts failed \(-attempts\)\nretryhttp do: the body begins: down for maintenance \(-error-body prints it whole\)$`},
		{"22 final", []string{s.URL + "/404"}, 22,
			`^retryhttp do: GET http://127\.0\.0\.1:` + port + `/404: 404 Not Found after 1 attempt; not retried: 404 is final \(only 408, 429, 500, 502, 503, 504 and failed connections are retried\)\nretryhttp do: the body begins: no such item \(-error-body prints it whole\)$`},
		{"22 POST", []string{"-d", "a=1", s.URL + "/503"}, 22,
			`^retryhttp do: POST http://127\.0\.0\.1:` + port + `/503: 503 Service Unavailable after 1 attempt; not retried: POST is not idempotent and the server may have seen it \(add -idempotency-key auto to let it be retried\)\n`},
		{"23", []string{"-o", "/dev/full", s.URL + "/ok"}, 23,
			`^retryhttp do: GET http://127\.0\.0\.1:` + port + `/ok: 200 OK: write /dev/full: no space left on device$`},
		{"28", []string{"-timeout", "0.5", s.URL + "/hang"}, 28,
			`^retryhttp do: GET http://127\.0\.0\.1:` + port + `/hang: .*deadline.* after 1 attempt`},
		{"28 attempt", []string{"-attempts", "2", "-attempt-timeout", "0.2", s.URL + "/hang"}, 28,
			`^retryhttp do: GET http://127\.0\.0\.1:` + port + `/hang: .* after 2 attempts; gave up: all 2 attempts failed \(-attempts\)$`},
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

// ---------------------------------------------------------------------
// Hedging

// A GET whose first copy is slow is hedged: the second copy answers, in
// far less than the first would take; -v says which was the hedge.
func TestReview2HedgeASlowFirstCopy(t *testing.T) {
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
func TestReview2PostWithoutKeyIsSentOnce(t *testing.T) {
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

// ---------------------------------------------------------------------
// Idempotency keys

func TestReview2IdempotencyKeyAutoIsTheSameOnEveryAttempt(t *testing.T) {
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

// ---------------------------------------------------------------------
// Retry-After against -timeout and -max-retry-after

// A Retry-After longer than what is left of -timeout ends the request at
// once, exit 22, with the reason; it does not sleep into the timeout and
// exit 28.
func TestReview2RetryAfterPastTheTimeout(t *testing.T) {
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

func TestReview2MaxRetryAfter(t *testing.T) {
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

// ---------------------------------------------------------------------
// Signals in a backoff wait

// Ctrl-C (or SIGTERM) during a long Retry-After wait: the command ends at
// once with 130 (143), -w's line is written with that code, nothing else
// goes to stdout, -o is left as it was and no temporary file stays.
func TestReview2SignalDuringBackoffWait(t *testing.T) {
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
			assert.Regexp(t, `^(000|503) `+strconv.Itoa(tt.code)+` canceled$`, p.stdout.String(), "stdout holds only -w's line")
			assert.Regexp(t, `retryhttp do: GET http://127\.0\.0\.1:\d+/: .*stopped: interrupted\n$`, p.stderr.String())
			got, _ := os.ReadFile(out)
			assert.Equal(t, "yesterday", string(got))
			entries, _ := os.ReadDir(dir)
			assert.Len(t, entries, 1, "a temporary file was left")
			assert.Equal(t, int32(1), s.attempts.Load())
		})
	}
}

// ---------------------------------------------------------------------
// Writing the body

// -o onto a full device: 23, with -w's line still on stdout.
func TestReview2FullDiskIs23WithWriteOut(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	s := newServer(t, failing(0, 0))
	r := do(t, "", "-o", "/dev/full", "-w", "%{http_code} %{exitcode}", s.URL+"/")
	assert.Equal(t, 23, r.code, r.stderr)
	assert.Equal(t, "200 23", r.stdout)
	assert.Contains(t, r.stderr, "no space left on device")
}

// 100 MiB through -o streams: memory stays small (measured by
// /usr/bin/time, since a child's rusage counts the test's own memory from
// before the exec), the file is whole, and size_download says so.
func TestReview2LargeBodyStreamsInBoundedMemory(t *testing.T) {
	t.Parallel()
	timeBin, err := exec.LookPath("/usr/bin/time")
	if err != nil {
		t.Skip("no /usr/bin/time")
	}
	const size = 100 << 20
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	s := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		for i := 0; i < size/len(chunk); i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	dir := t.TempDir()
	out := filepath.Join(dir, "big.bin")
	rss := filepath.Join(t.TempDir(), "rss")
	cmd := exec.Command(timeBin, "-f", "%M", "-o", rss, binary, "do", "-o", out, "-w", "%{size_download}", s.URL+"/")
	r := runExec(t, cmd)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, strconv.Itoa(size), r.stdout)
	info, err := os.Stat(out)
	require.NoError(t, err)
	assert.Equal(t, int64(size), info.Size())
	data, err := os.ReadFile(rss)
	require.NoError(t, err)
	kib, err := strconv.Atoi(strings.TrimSpace(string(data)))
	require.NoError(t, err, "%q", data)
	t.Logf("max RSS %d KiB", kib)
	assert.Less(t, kib, 40<<10, "the body is held in memory: max RSS %d KiB for a 100 MiB body", kib)
	entries, _ := os.ReadDir(dir)
	assert.Len(t, entries, 1)
}

// On every failure -o leaves the old file and no temporary file: a final
// 503, a cut body, a -timeout mid-body, a bad gzip body.
func TestReview2NoTemporaryFilesLeft(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/503":
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case "/trickle":
			w.Header().Set("Content-Length", "100")
			for range 100 {
				_, _ = io.WriteString(w, "x")
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
	})
	cut := rawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\npartial")
	dir := t.TempDir()
	out := filepath.Join(dir, "data.json")
	require.NoError(t, os.WriteFile(out, []byte("good"), 0o600))
	for _, tt := range []struct {
		url  string
		args []string
		code int
	}{
		{s.URL + "/503", []string{"-attempts", "2"}, 22},
		{cut + "/", []string{"-attempts", "1"}, 18},
		{s.URL + "/trickle", []string{"-timeout", "0.5"}, 28},
	} {
		r := do(t, "", append(tt.args, "-o", out, tt.url)...)
		assert.Equal(t, tt.code, r.code, "%s: %s", tt.url, r.stderr)
		got, _ := os.ReadFile(out)
		assert.Equal(t, "good", string(got), tt.url)
		entries, _ := os.ReadDir(dir)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		assert.Equal(t, []string{"data.json"}, names, "%s: a temporary file was left", tt.url)
	}
}

// ---------------------------------------------------------------------
// sim and demo: flag checks

// Bad values and unknown flags: exit 2, one line, no panic, at once.
func TestReview2SimAndDemoFlagValidation(t *testing.T) {
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
	} {
		start := time.Now()
		r := runCmd(t, "", args...)
		assert.Equal(t, 2, r.code, "%q: %s", args, r.stderr)
		// A guard: a usage error ends at once; a command that ran (a demo
		// of 30 s) would not.
		assert.Less(t, time.Since(start), 20*time.Second, "%q", args)
		assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "%q: %q", args, r.stderr)
		assert.Regexp(t, `^retryhttp (sim|demo): .* \(see retryhttp (sim|demo) -h\)\n$`, r.stderr, "%q", args)
		assert.NotContains(t, r.stderr, "panic")
		assert.Empty(t, r.stdout, "%q", args)
	}
}

// demo -retry-after is "(whole seconds)", as -quota-window, which refuses
// 1500ms; -retry-after 1500ms is accepted, the banner says "Retry-After
// 1.5s", and the upstream sends "Retry-After: 1" (500ms sends 0).
func TestReview2DemoRetryAfterWholeSeconds(t *testing.T) {
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

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// A redirect to a host that refuses: the line says the first URL (which
// answered 302 fine) failed with "connection refused", and -w
// %{url_effective} names it too; curl's url_effective is the URL that
// was tried last. The cause: runDo builds the line and -w's URL from the
// original request when client.Do returns an error, though the
// *url.Error it returns names the URL that failed.
func TestReview2FailureAfterRedirectNamesTheTarget(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1/target", http.StatusFound)
	})
	r := do(t, "", "-attempts", "2", "-w", "%{url_effective} %{num_redirects} %{exitcode}", s.URL+"/start")
	assert.Equal(t, 7, r.code, r.stderr)
	assert.Equal(t, "http://127.0.0.1:1/target 1 7", r.stdout, "-w names the URL that answered, not the one that failed")
	assert.Regexp(t, `^retryhttp do: GET http://127\.0\.0\.1:1/target: dial tcp 127\.0\.0\.1:1: connect: connection refused after 2 attempts \(and 1 redirect before\)`, r.stderr,
		"the line blames the URL that redirected")
}
