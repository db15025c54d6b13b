package main

// do's flags and URLs: headers, methods and -u, IPv6 literals, -k and
// HTTP/2, invalid header names and values as usage errors, and the README's
// examples.

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIPv6Literal(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback")
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "v6")
	})}}
	srv.Start()
	t.Cleanup(srv.Close)
	r := do(t, "", "-w", "|%{url_effective}", srv.URL+"/p")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "v6|"+srv.URL+"/p", r.stdout)
}

func TestHeadersMethodsAndUser(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(0, 0))
	r := do(t, "", "-H", "X-Dup: 1", "-H", "X-Dup: 2", "-H", "X-Empty:", "-H", "Content-Length: 99", "-d", "abc", s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	_, body, h := lastRequest(s)
	assert.Equal(t, []string{"1", "2"}, h.Values("X-Dup"))
	assert.Equal(t, "abc", body, "a -H Content-Length does not break the body")

	r = do(t, "", "-X", "patch", s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	method, _, _ := lastRequest(s)
	assert.Equal(t, "patch", method, "the method as given, as curl")

	r = do(t, "", "-u", "alice:pa:ss:word", s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	_, _, h = lastRequest(s)
	req, _ := http.NewRequest("GET", "http://x/", nil)
	req.Header = h
	user, pass, ok := req.BasicAuth()
	assert.True(t, ok)
	assert.Equal(t, "alice pa:ss:word", user+" "+pass)

	r = do(t, "", "-H", "X-A: a\r\nEvil: 1", "-attempts", "3", s.URL)
	assert.NotEqual(t, 0, r.code, "a header with CRLF is refused")
}

// The README's everyday examples, against loopback.
func TestReadmeExamples(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tar := filepath.Join(dir, "backup.tar")
	require.NoError(t, os.WriteFile(tar, []byte("tar bytes\r\n"), 0o600))
	s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"items":[]}`)
	})
	r := runCmd(t, "", "do", s.URL+"/items")
	assert.Equal(t, 0, r.code)
	assert.Equal(t, `{"items":[]}`, r.stdout)

	cmd := exec.Command(binary, "do", s.URL+"/items", "-w", `%{http_code} %{num_attempts}\n`, "-o", "items.json")
	cmd.Dir = dir
	r = runExec(t, cmd)
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "200 1\n", r.stdout)
	got, _ := os.ReadFile(filepath.Join(dir, "items.json"))
	assert.Equal(t, `{"items":[]}`, string(got))

	r = runCmd(t, "", "do", "-X", "PUT", "-data-binary", "@"+tar, "-H", "Content-Type: application/x-tar", s.URL+"/b")
	assert.Equal(t, 0, r.code, r.stderr)
	method, body, h := lastRequest(s)
	assert.Equal(t, "PUT tar bytes\r\n application/x-tar", method+" "+body+" "+h.Get("Content-Type"))

	r = runCmd(t, "", "do", "-d", "name=report", "-idempotency-key", "auto", s.URL+"/jobs")
	assert.Equal(t, 0, r.code, r.stderr)
	method, body, h = lastRequest(s)
	assert.Equal(t, "POST name=report", method+" "+body)
	assert.Len(t, h.Get("Idempotency-Key"), 32)

	r = runCmd(t, "", "do", "-I", "-timeout", "5", s.URL+"/health")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `^HTTP/1\.1 200 OK\r\n`, r.stdout)

	r = runCmd(t, "", "do", "-start-jitter", "50ms", "-timeout", "10m", "-o", filepath.Join(dir, "report.json"), s.URL+"/report")
	assert.Equal(t, 0, r.code, r.stderr)
}

// Usage errors: one line with a hint, exit 2, no doubled prefix.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"do", "-timeout"},
		{"do", "http://a/", "--", "-v"},
		{"do", ""},
		{"do", "-I", "-X", "head", "http://a/"},
		{"do", "-H", "", "http://a/"},
		{"do", "-X", "GET\r\n", "http://a/"},
		{"do", "-base-delay", "1s", "-max-delay", "1ms", "http://a/"},
		{"demo", "-duration", "0"},
		{"sim", "-delay", "0"},
	} {
		r := runCmd(t, "", args...)
		assert.Equal(t, 2, r.code, "%q", args)
		assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "%q: %q", args, r.stderr)
		assert.Contains(t, r.stderr, " -h)", "%q", args)
		assert.NotContains(t, r.stderr, "retryhttp: retryhttp")
		assert.NotContains(t, r.stderr, "do: retryhttp:")
		assert.Empty(t, r.stdout)
	}
}

// A header that net/http will refuse to send is a bad flag, known before
// anything is sent: exit 2 and one line naming -H, as an empty -H already is.
// The command instead calls it an attempt, exits 1 and reports
// "after 1 attempt; not retried: no retry fixes this error", with -w
// counting one attempt that never happened.
func TestInvalidHeaderIsAUsageError(t *testing.T) {
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
func TestInvalidHostHeaderIsNotSentEmpty(t *testing.T) {
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

// A self-signed certificate: no flag trusts it, so the error must be
// clear, immediate (not retried: no retry fixes it) and exit 1; Go's
// SSL_CERT_FILE trusts it, and HTTP/2 is then used.
func TestSelfSignedCertificateAndHTTP2(t *testing.T) {
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
