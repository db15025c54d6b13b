package main

// do takes curl's habits: a script's curl line works with "curl" replaced
// by "retryhttp do" (combined short flags, curl's long names, the flags do
// already behaves as, --retry and its kin, --json, -k, a URL without a
// scheme), and a curl flag do lacks is a one-line usage error naming what
// to use instead. docs/do-curl-flags.md is the table these tests pin.

import (
	"compress/gzip"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The script line: curl -fsSL --retry 5 --max-time 30 -o out URL.
func TestCurlScriptLine(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(2, http.StatusServiceUnavailable))
	dir := t.TempDir()
	cmd := exec.Command(binary, "do", "-fsSL", "--retry", "5", "--max-time", "30", "-o", "out",
		"--retry-delay", "0.001", "-max-delay", "5ms", "-w", "%{num_retries}", s.URL+"/file")
	cmd.Dir = dir
	r := runExec(t, cmd)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "2", r.stdout, "two retries before the success")
	assert.Empty(t, r.stderr)
	got, err := os.ReadFile(filepath.Join(dir, "out"))
	require.NoError(t, err)
	assert.Equal(t, "hello", string(got))
}

// curlFlagsHandler answers by path: /missing 404, /busy 503, /moved a
// redirect to /, /gzip a gzipped body when asked for one, else "hello".
func curlFlagsHandler(_ int, w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/missing":
		http.Error(w, "no such thing", http.StatusNotFound)
	case "/busy":
		http.Error(w, "busy", http.StatusServiceUnavailable)
	case "/moved":
		http.Redirect(w, r, "/", http.StatusFound)
	case "/gzip":
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			_, _ = io.WriteString(w, "not asked for gzip")
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		_, _ = io.WriteString(zw, "unzipped")
		_ = zw.Close()
	default:
		_, _ = io.WriteString(w, "hello")
	}
}

// Each of curl's flags that do takes, through the built binary against a
// loopback server that records what it was sent (one per case).
func TestCurlFlags(t *testing.T) {
	t.Parallel()
	jsonFile := filepath.Join(t.TempDir(), "body.json")
	require.NoError(t, os.WriteFile(jsonFile, []byte(`{"from":"file"}`), 0o600))

	type sent struct {
		method, body string
		header       http.Header
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string // a substring of stderr; "" wants it empty
		check  func(t *testing.T, got sent)
	}{
		{name: "-f on a success", args: []string{"-f", "URL"}, stdout: "hello"},
		{name: "-f on 404: exit 22, no body", args: []string{"-f", "URL/missing"}, code: 22, stderr: "404 Not Found after 1 attempt"},
		{name: "--fail", args: []string{"--fail", "URL/missing"}, code: 22, stderr: "404 Not Found"},
		{name: "-s keeps the failure line", args: []string{"-s", "URL/missing"}, code: 22, stderr: "retryhttp do: GET"},
		{name: "--silent", args: []string{"--silent", "URL"}, stdout: "hello"},
		{name: "-S", args: []string{"-S", "URL/missing"}, code: 22, stderr: "404 Not Found"},
		{name: "--show-error", args: []string{"--show-error", "URL"}, stdout: "hello"},
		{name: "-sS", args: []string{"-sS", "URL/missing"}, code: 22, stderr: "404 Not Found"},
		{name: "-fsS", args: []string{"-fsS", "URL"}, stdout: "hello"},
		{name: "-L follows", args: []string{"-L", "-w", " %{num_redirects}", "URL/moved"}, stdout: "hello 1"},
		{name: "--location", args: []string{"--location", "URL/moved"}, stdout: "hello"},
		{name: "--compressed", args: []string{"--compressed", "URL/gzip"}, stdout: "unzipped"},
		{name: "--retry N is N+1 attempts", args: []string{"--retry", "2", "-w", "%{num_attempts} %{num_retries}", "URL/busy"},
			code: 22, stdout: "3 2", stderr: "gave up: that is all --retry 2 allows"},
		{name: "--retry 0 disables retries", args: []string{"--retry", "0", "-w", "%{num_attempts}", "URL/busy"}, code: 22, stdout: "1",
			stderr: "not retried: --retry 0 allows no retry"},
		{name: "--retry=1", args: []string{"--retry=1", "-w", "%{num_attempts}", "URL/busy"}, code: 22, stdout: "2",
			stderr: "gave up: that is all --retry 1 allows"},
		{name: "--retry-max-time passed: no retry", args: []string{"--retry", "5", "--retry-max-time", "1ns", "-w", "%{num_attempts} %{reason}", "URL/busy"},
			code: 22, stdout: "1 classifier", stderr: "not retried: --retry-max-time 1ns had passed"},
		{name: "--retry-max-time not passed", args: []string{"--retry", "2", "--retry-max-time", "60", "-w", "%{num_attempts}", "URL/busy"},
			code: 22, stdout: "3", stderr: "gave up: that is all --retry 2 allows"},
		{name: "--retry-connrefused", args: []string{"--retry-connrefused", "URL"}, stdout: "hello"},
		{name: "--retry-all-errors", args: []string{"--retry-all-errors", "URL"}, stdout: "hello"},
		{name: "-m", args: []string{"-m", "30", "URL"}, stdout: "hello"},
		{name: "--max-time=", args: []string{"--max-time=30", "URL"}, stdout: "hello"},
		{name: "--connect-timeout", args: []string{"--connect-timeout", "5", "URL"}, stdout: "hello"},
		{name: "-A", args: []string{"-A", "script/1.0", "URL"}, stdout: "hello",
			check: func(t *testing.T, got sent) { assert.Equal(t, "script/1.0", got.header.Get("User-Agent")) }},
		{name: "--user-agent", args: []string{"--user-agent", "script/2.0", "URL"}, stdout: "hello",
			check: func(t *testing.T, got sent) { assert.Equal(t, "script/2.0", got.header.Get("User-Agent")) }},
		{name: "-A '' sends none", args: []string{"-A", "", "URL"}, stdout: "hello",
			check: func(t *testing.T, got sent) { assert.NotContains(t, got.header, "User-Agent") }},
		{name: "-H User-Agent wins over -A", args: []string{"-A", "a", "-H", "User-Agent: h", "URL"}, stdout: "hello",
			check: func(t *testing.T, got sent) { assert.Equal(t, []string{"h"}, got.header.Values("User-Agent")) }},
		{name: "--data-raw keeps @ and newlines", args: []string{"--data-raw", "@not-a-file\nx", "URL"}, stdout: "hello",
			check: func(t *testing.T, got sent) {
				assert.Equal(t, "POST @not-a-file\nx", got.method+" "+got.body)
				assert.Equal(t, "application/x-www-form-urlencoded", got.header.Get("Content-Type"))
			}},
		{name: "-d and --data-raw joined in order", args: []string{"-d", "a=1", "--data-raw", "b=2", "--data", "c=3", "URL"}, stdout: "hello",
			check: func(t *testing.T, got sent) { assert.Equal(t, "a=1&b=2&c=3", got.body) }},
		{name: "--json", args: []string{"--json", `{"a":1}`, "URL"}, stdout: "hello",
			check: func(t *testing.T, got sent) {
				assert.Equal(t, `POST {"a":1}`, got.method+" "+got.body)
				assert.Equal(t, "application/json", got.header.Get("Content-Type"))
				assert.Equal(t, "application/json", got.header.Get("Accept"))
			}},
		{name: "--json @file with -H Accept", args: []string{"--json", "@" + jsonFile, "-H", "Accept: text/plain", "-X", "PUT", "URL"}, stdout: "hello",
			check: func(t *testing.T, got sent) {
				assert.Equal(t, `PUT {"from":"file"}`, got.method+" "+got.body)
				assert.Equal(t, "application/json", got.header.Get("Content-Type"))
				assert.Equal(t, []string{"text/plain"}, got.header.Values("Accept"), "-H wins, as in curl")
			}},
		{name: "-X", args: []string{"-X", "DELETE", "URL"}, stdout: "hello",
			check: func(t *testing.T, got sent) { assert.Equal(t, "DELETE", got.method) }},
		{name: "-XPOST", args: []string{"-XPOST", "URL"}, stdout: "hello",
			check: func(t *testing.T, got sent) { assert.Equal(t, "POST", got.method) }},
		{name: "--request", args: []string{"--request", "PATCH", "URL"}, stdout: "hello",
			check: func(t *testing.T, got sent) { assert.Equal(t, "PATCH", got.method) }},
		{name: "--header, --user", args: []string{"--header", "X-A: 1", "--user", "u:p", "URL"}, stdout: "hello",
			check: func(t *testing.T, got sent) {
				assert.Equal(t, "1", got.header.Get("X-A"))
				assert.Equal(t, "Basic dTpw", got.header.Get("Authorization"))
			}},
		{name: "--head", args: []string{"--head", "URL"}, stdout: "HTTP/1.1 200 OK\r\n",
			check: func(t *testing.T, got sent) { assert.Equal(t, "HEAD", got.method) }},
		{name: "-w '%{num_retries}' without retries", args: []string{"--write-out", "%{num_retries}", "-o", os.DevNull, "URL"}, stdout: "0"},
		{name: "-w '%{num_retries}' after a redirect", args: []string{"-w", "%{num_retries}", "-o", os.DevNull, "URL/moved"}, stdout: "0"},
		{name: "a URL without a scheme is http", args: []string{"-w", " %{url_effective}", "HOSTPORT/p"}, stdout: "hello URL/p"},
		{name: "--max-redirs", args: []string{"--max-redirs", "0", "-o", os.DevNull, "-w", "%{http_code}", "URL/moved"}, stdout: "302"},
		{name: "--verbose", args: []string{"--verbose", "URL"}, stdout: "hello", stderr: "retryhttp: attempt 1: GET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, curlFlagsHandler) // one per case: check reads its last request
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = strings.NewReplacer("URL", s.URL, "HOSTPORT", strings.TrimPrefix(s.URL, "http://")).Replace(a)
			}
			r := do(t, "", args...)
			require.Equal(t, tt.code, r.code, r.stderr)
			if strings.HasSuffix(tt.stdout, "\r\n") {
				assert.True(t, strings.HasPrefix(r.stdout, tt.stdout), r.stdout)
			} else {
				assert.Equal(t, strings.ReplaceAll(tt.stdout, "URL", s.URL), r.stdout)
			}
			if tt.stderr == "" {
				assert.Empty(t, r.stderr)
			} else {
				assert.Contains(t, r.stderr, tt.stderr)
			}
			if tt.check != nil {
				method, body, h := lastRequest(s)
				tt.check(t, sent{method, body, h})
			}
		})
	}
}

// -o and --output, alone or ending a bundle (-sSo FILE), write the body
// to the file.
func TestCurlOutputForms(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(0, 0))
	dir := t.TempDir()
	for _, args := range [][]string{
		{"-o", "a"}, {"--output", "b"}, {"--output=c"}, {"-sSo", "d"}, {"-od"},
	} {
		cmd := exec.Command(binary, append(append([]string{"do"}, args...), s.URL)...)
		cmd.Dir = dir
		r := runExec(t, cmd)
		require.Equal(t, 0, r.code, "%q: %s", args, r.stderr)
		assert.Empty(t, r.stdout, "%q", args)
		name := args[len(args)-1]
		name = strings.TrimPrefix(strings.TrimPrefix(name, "--output="), "-o")
		got, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err, "%q", args)
		assert.Equal(t, "hello", string(got), "%q", args)
	}
}

// -k and --insecure skip the certificate's verification, as curl's; the
// request still goes over TLS (HTTP/2 here).
func TestCurlInsecure(t *testing.T) {
	t.Parallel()
	s, _ := tlsServer(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) })
	r := do(t, "", "-sS", s.URL+"/")
	require.Equal(t, 60, r.code, "without -k the certificate is checked: %s", r.stderr)
	for _, k := range []string{"-k", "--insecure", "-fsSk"} {
		r := do(t, "", k, s.URL+"/")
		require.Equal(t, 0, r.code, "%s: %s", k, r.stderr)
		assert.Equal(t, "HTTP/2.0", r.stdout, k)
	}
}

// Refused connections are retried (--retry-connrefused asks for what do
// already does), and -m bounds the whole request with curl's exit 28.
func TestCurlRetryConnrefusedAndMaxTime(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := "http://" + ln.Addr().String() + "/"
	ln.Close()
	r := do(t, "", "--retry", "2", "--retry-connrefused", "-w", "%{num_attempts}", refused)
	assert.Equal(t, 7, r.code, r.stderr)
	assert.Equal(t, "3", r.stdout, "a refused connection is retried")

	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	hung := newServer(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		select { // never answers before the command gives up
		case <-r.Context().Done():
		case <-release:
		}
	})
	for _, m := range [][]string{{"-m", "0.2"}, {"--max-time", "0.2"}, {"-sSm", "0.2"}} {
		r = do(t, "", append(m, "-w", "%{exitcode}", hung.URL)...)
		assert.Equal(t, 28, r.code, "%q: %s", m, r.stderr)
		assert.Equal(t, "28", r.stdout, "%q", m)
	}
}

// A curl flag do does not support is a usage error: exit 2, one line that
// names it and what to use instead, and nothing sent.
func TestCurlUnsupportedFlags(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(0, 0))
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-b", "a=1"}, "curl's -b/--cookie is not supported by retryhttp do: use -H 'Cookie: name=value'"},
		{[]string{"--cookie", "a=1"}, "curl's -b/--cookie is not supported"},
		{[]string{"-sSb", "a=1"}, "curl's -b/--cookie is not supported by retryhttp do: use -H 'Cookie: name=value' (in -sSb)"},
		{[]string{"-F", "f=@x"}, "curl's -F/--form is not supported by retryhttp do: build the multipart body"},
		{[]string{"-T", "x"}, "use -X PUT --data-binary @file"},
		{[]string{"-O"}, "curl's -O/--remote-name is not supported by retryhttp do: use -o"},
		{[]string{"--proxy", "http://p:1"}, "set the HTTPS_PROXY or HTTP_PROXY environment variable"},
		{[]string{"--fail-with-body"}, "use -error-body"},
		{[]string{"--http2"}, "do uses HTTP/2 over TLS when the server offers it"},
	}
	for _, tt := range tests {
		r := do(t, "", append(tt.args, s.URL)...)
		assert.Equal(t, 2, r.code, "%q", tt.args)
		assert.Contains(t, onlyLine(t, r.stderr), tt.want, "%q", tt.args)
		assert.Contains(t, r.stderr, "(see retryhttp do -h)")
		assert.Empty(t, r.stdout)
	}
	assert.Zero(t, s.attempts.Load())
}

// -h lists curl's names, the flags accepted and those not supported.
func TestCurlFlagsInHelp(t *testing.T) {
	t.Parallel()
	r := runCmd(t, "", "do", "-h")
	require.Equal(t, 0, r.code)
	for _, want := range []string{"-m/--max-time -timeout", "-f/--fail", "--compressed", "-b/--cookie", "-retry value", "-retry-max-time", "-json", "-data-raw", "%{num_retries}"} {
		assert.Contains(t, r.stdout, want)
	}
}

// --retry-delay is the first wait (-base-delay), -max-delay raised to it
// when not given, so a delay above the default cap of 30 s is taken.
func TestCurlRetryDelay(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(1, http.StatusServiceUnavailable))
	r := runCmd(t, "", "do", "--retry", "1", "--retry-delay", "0.02", "-jitter", "none", "-v", s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "; retrying in 20ms (backoff)")

	r = runCmd(t, "", "do", "--retry-delay", "40", "-w", "%{num_retries}", s.URL)
	require.Equal(t, 0, r.code, "a delay above the default -max-delay: %s", r.stderr)
	assert.Equal(t, "hello0", r.stdout)

	r = runCmd(t, "", "do", "--retry-delay", "40", "-max-delay", "1s", s.URL)
	assert.Equal(t, 2, r.code, "-max-delay given below it is a usage error")
}
