package main

// An outside review of retryhttp do (and a little of demo and sim), as a
// shell and cron user meets them, kept as a regression suite: it found
// server text reaching the terminal raw, -o replacing symlinks, FIFOs and
// /dev/null and ignoring the umask and long names, signals ignored while
// standard input was read, an empty -data-binary sent as a GET,
// credentials sent to another port, a 307 after a streamed body taken for
// the answer, contradicting attempt counts after a redirect, -w's code
// lost on too many redirects, a TLS handshake timeout not exiting 28, NaN
// accepted as a timeout, no default bound on a hung server, and the demo
// crediting a budget that refused nothing. Loopback only.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runExec runs a prepared command (the binary, with its own stdin, dir,
// credentials...) within 40 s and returns its exit code and output.
func runExec(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &stdout
	}
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(40 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("still running after 40 s; stderr:\n%s", stderr.String())
	}
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{code, stdout.String(), stderr.String()}
}

// serveConns listens on a loopback port and hands each connection to
// handle, in its own goroutine, until the test ends; it returns the
// listener's URL.
func serveConns(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return "http://" + ln.Addr().String()
}

// readHead reads a request's head, up to its blank line, and returns it.
func readHead(br *bufio.Reader) string {
	var head strings.Builder
	for {
		line, err := br.ReadString('\n')
		head.WriteString(line)
		if err != nil || line == "\r\n" {
			return head.String()
		}
	}
}

// rawServer answers every connection with resp, byte for byte, then closes
// it: for responses net/http would not write.
func rawServer(t *testing.T, resp string) string {
	t.Helper()
	return serveConns(t, func(c net.Conn) {
		defer c.Close()
		readHead(bufio.NewReader(c))
		_, _ = io.WriteString(c, resp)
	})
}

func lastRequest(s *server) (method, body string, h http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.methods) - 1
	return s.methods[n], s.bodies[n], s.headers[n]
}

// ---------------------------------------------------------------------
// Terminal injection through the one stderr line.

// The status line's reason phrase is the server's text: printed raw, it
// lets any server retitle the terminal, clear it, or hide text.
func TestReviewStatusLineIsSanitized(t *testing.T) {
	t.Parallel()
	url := rawServer(t, "HTTP/1.1 500 \x1b]0;pwned\x07\x1b[2J\x1b[31mOops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	r := do(t, "", "-attempts", "1", "-v", url+"/")
	assert.Equal(t, 22, r.code, r.stderr)
	assert.Contains(t, r.stderr, "Oops")
	assert.NotContains(t, r.stderr, "\x1b", "an escape from the server reaches the terminal: %q", r.stderr)
	assert.NotContains(t, r.stderr, "\x07")
}

// The body's first line once had C0 controls replaced, but not C1 ones: U+009B
// is CSI for terminals that honor 8-bit controls in UTF-8.
func TestReviewBodyLineStripsC1Controls(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, "not found \u009b2J\u009b31m red\n")
	})
	r := do(t, "", s.URL)
	assert.Equal(t, 22, r.code)
	assert.Contains(t, r.stderr, "the body begins: not found")
	assert.NotContains(t, r.stderr, "\u009b", "a C1 control (CSI) is printed: %q", r.stderr)
}

// ---------------------------------------------------------------------
// -o

// curl -s -o /dev/null -w '%{http_code}' is the most common idiom of all.
// retryhttp creates its temporary file in /dev, so a user cannot (and root
// would replace /dev/null with a regular file: never run that as root).
func TestReviewOutputToDevNullAndDevStdout(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(0, 0))
	var cred *syscall.Credential
	if os.Geteuid() == 0 { // run as nobody (TestMain lets every user run binary): root would really replace /dev/null
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	for _, tt := range []struct{ target, stdout string }{
		{"/dev/null", "200"},
		{"/dev/stdout", "hello200"},
	} {
		cmd := exec.Command(binary, "do", "-o", tt.target, "-w", "%{http_code}", s.URL)
		cmd.Dir = "/"
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		r := runExec(t, cmd)
		assert.Equal(t, 0, r.code, "-o %s: %s", tt.target, r.stderr)
		assert.Equal(t, tt.stdout, r.stdout, "-o %s", tt.target)
	}
}

// curl -o through a symlink writes the file it points to; retryhttp
// replaces the link with a regular file and leaves the real file stale.
func TestReviewOutputOntoASymlink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	real := filepath.Join(dir, "real.json")
	link := filepath.Join(dir, "current.json")
	require.NoError(t, os.WriteFile(real, []byte("old"), 0o644))
	require.NoError(t, os.Symlink("real.json", link))
	s := newServer(t, failing(0, 0))
	r := do(t, "", "-o", link, s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	info, err := os.Lstat(link)
	require.NoError(t, err)
	assert.True(t, info.Mode()&os.ModeSymlink != 0, "the symlink was replaced by a %v", info.Mode())
	got, _ := os.ReadFile(real)
	assert.Equal(t, "hello", string(got), "the file the link points to was not written")
}

// A FIFO (or a device: /dev/null, /dev/stderr, a tty) cannot be renamed
// over; retryhttp replaces it with a regular file, and the reader gets nothing.
func TestReviewOutputOntoAFIFO(t *testing.T) {
	t.Parallel()
	fifo := filepath.Join(t.TempDir(), "pipe")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	reader, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	require.NoError(t, err)
	defer reader.Close()
	s := newServer(t, failing(0, 0))
	r := do(t, "", "-o", fifo, s.URL)
	assert.Equal(t, 0, r.code, r.stderr)
	info, err := os.Lstat(fifo)
	require.NoError(t, err)
	assert.True(t, info.Mode()&os.ModeNamedPipe != 0, "the FIFO was replaced by a %v", info.Mode())
	got := make(chan string, 1)
	go func() { b, _ := io.ReadAll(reader); got <- string(b) }()
	select {
	case b := <-got:
		assert.Equal(t, "hello", b, "the reader of the FIFO got the body")
	case <-time.After(3 * time.Second):
		t.Error("the reader of the FIFO got nothing")
	}
}

// A new -o file is 0644 whatever the umask: under umask 077 (a secrets
// job) curl creates 0600, retryhttp a world-readable file.
func TestReviewOutputHonorsTheUmask(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "token.json")
	s := newServer(t, failing(0, 0))
	cmd := exec.Command("/bin/sh", "-c", `umask 077 && exec "$0" "$@"`, binary, "do", "-o", out, s.URL)
	r := runExec(t, cmd)
	require.Equal(t, 0, r.code, r.stderr)
	info, err := os.Stat(out)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "umask 077 ignored")
}

// A legal file name near NAME_MAX: the temporary name adds 21 bytes and
// the command fails before sending anything, where curl -o works.
func TestReviewOutputWithALongName(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), strings.Repeat("r", 240)+".json")
	s := newServer(t, failing(0, 0))
	r := do(t, "", "-o", out, s.URL)
	assert.Equal(t, 0, r.code, r.stderr)
	got, _ := os.ReadFile(out)
	assert.Equal(t, "hello", string(got))
}

// Two cron jobs writing the same -o at once: each renames a whole file;
// the result is one of the two bodies, whole, and no temporary file stays.
func TestReviewOutputConcurrentWriters(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := filepath.Join(dir, "r.bin")
	a, b := bytes.Repeat([]byte("a"), 2<<20), bytes.Repeat([]byte("b"), 3<<20)
	s := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		body := a
		if r.URL.Query().Get("v") == "b" {
			body = b
		}
		for i := 0; i < len(body); i += 64 << 10 {
			_, _ = w.Write(body[i : i+64<<10])
			time.Sleep(time.Millisecond)
		}
	})
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i, v := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = do(t, "", "-o", out, s.URL+"/?v="+v).code
		}()
	}
	wg.Wait()
	assert.Equal(t, []int{0, 0}, codes)
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(got, a) || bytes.Equal(got, b), "a mixed file of %d bytes", len(got))
	entries, _ := os.ReadDir(dir)
	assert.Len(t, entries, 1)
}

// -o onto the file that -data-binary reads, with a retry: the retry reads
// the old content again, and the file is replaced only at the end.
func TestReviewOutputSameFileAsTheBody(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "state.json")
	require.NoError(t, os.WriteFile(f, []byte(`{"v":1}`), 0o600))
	s := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, `{"v":2}`)
	})
	r := do(t, "", "-X", "PUT", "-data-binary", "@"+f, "-o", f, s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	s.mu.Lock()
	assert.Equal(t, []string{`{"v":1}`, `{"v":1}`}, s.bodies)
	s.mu.Unlock()
	got, _ := os.ReadFile(f)
	assert.Equal(t, `{"v":2}`, string(got))
}

// SIGTERM while the body is being written to -o: 143, the old file kept,
// no temporary file left.
func TestReviewOutputKeptOnSignalMidBody(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := filepath.Join(dir, "keep.json")
	require.NoError(t, os.WriteFile(out, []byte("good"), 0o644))
	started := make(chan struct{}, 1)
	s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		started <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
	})
	cmd := exec.Command(binary, "do", "-o", out, s.URL)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("no request")
	}
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	_ = cmd.Wait()
	assert.Equal(t, 143, cmd.ProcessState.ExitCode(), stderr.String())
	got, _ := os.ReadFile(out)
	assert.Equal(t, "good", string(got))
	entries, _ := os.ReadDir(dir)
	assert.Len(t, entries, 1, "a temporary file was left")
}

// ---------------------------------------------------------------------
// Request bodies

// curl --data-binary ” POSTs an empty body; retryhttp sends a GET, so a
// script's empty "$payload" silently changes the method.
func TestReviewEmptyDataBinaryStillPosts(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(0, 0))
	r := do(t, "", "-data-binary", "", s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	method, _, h := lastRequest(s)
	assert.Equal(t, http.MethodPost, method)
	assert.Equal(t, "application/x-www-form-urlencoded", h.Get("Content-Type"))
}

// The replay buffer's edge: 64 KiB exactly is retried, a byte more is not.
func TestReviewStdinBodyAtTheReplayLimit(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		size     int
		attempts int32
	}{{64 << 10, 3}, {64<<10 + 1, 1}} {
		s := newServer(t, failing(10, http.StatusServiceUnavailable))
		r := do(t, strings.Repeat("z", tt.size), "-attempts", "3", "-X", "PUT", "-data-binary", "@-", s.URL)
		assert.Equal(t, 22, r.code)
		assert.Equal(t, tt.attempts, s.attempts.Load(), "%d bytes", tt.size)
		s.mu.Lock()
		for _, b := range s.bodies {
			assert.Len(t, b, tt.size)
		}
		s.mu.Unlock()
		if tt.attempts == 1 {
			assert.Contains(t, r.stderr, "not retried: the body could not be sent again")
		}
	}
}

// Standard input that is a regular file, /dev/null: bodies as given.
func TestReviewStdinKinds(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(0, 0))
	file := filepath.Join(t.TempDir(), "in")
	require.NoError(t, os.WriteFile(file, []byte("a=1\r\nb=2\n"), 0o600))
	for _, tt := range []struct {
		name, stdin string
		args        []string
		body        string
	}{
		{"-d @- from a file", file, []string{"-d", "@-"}, "a=1b=2"},
		{"-data-binary @- from a file", file, []string{"-data-binary", "@-"}, "a=1\r\nb=2\n"},
		{"-d @- from /dev/null", os.DevNull, []string{"-d", "@-"}, ""},
		{"-data-binary @- from /dev/null", os.DevNull, []string{"-data-binary", "@-"}, ""},
	} {
		in, err := os.Open(tt.stdin)
		require.NoError(t, err)
		cmd := exec.Command(binary, append(append([]string{"do"}, tt.args...), s.URL)...)
		cmd.Stdin = in
		r := runExec(t, cmd)
		in.Close()
		require.Equal(t, 0, r.code, "%s: %s", tt.name, r.stderr)
		method, body, _ := lastRequest(s)
		assert.Equal(t, http.MethodPost, method, tt.name)
		assert.Equal(t, tt.body, body, tt.name)
	}
}

// Ctrl-C (or SIGTERM from cron's supervisor) while -d @- reads a standard
// input that does not end: the command installed its handler, so the
// signal no longer kills it, but nothing watches it during the read.
func TestReviewSignalWhileReadingStdin(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(0, 0))
	for _, tt := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		pr, pw, err := os.Pipe()
		require.NoError(t, err)
		cmd := exec.Command(binary, "do", "-d", "@-", s.URL)
		cmd.Stdin = pr
		require.NoError(t, cmd.Start())
		pr.Close()
		time.Sleep(500 * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(tt.sig))
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
			assert.Equal(t, tt.code, cmd.ProcessState.ExitCode(), "%v", tt.sig)
		case <-time.After(3 * time.Second):
			t.Errorf("%v ignored: still reading standard input 3 s later", tt.sig)
			_ = cmd.Process.Kill()
			<-done
		}
		pw.Close()
	}
}

// ---------------------------------------------------------------------
// Redirects

// curl (since 7.83, CVE-2022-27776) never sends -u's credentials, nor a
// custom Authorization, to another port: it is another service.
func TestReviewCredentialsNotSentToAnotherPort(t *testing.T) {
	t.Parallel()
	other := newServer(t, failing(0, 0))
	start := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/landing", http.StatusFound)
	})
	for _, auth := range [][]string{{"-u", "alice:s3cret"}, {"-H", "Authorization: Bearer t0ken"}} {
		r := do(t, "", append(auth, start.URL)...)
		require.Equal(t, 0, r.code, r.stderr)
		_, _, h := lastRequest(other)
		assert.Empty(t, h.Get("Authorization"), "%v leaked to %s", auth, other.URL)
	}
}

// Another host name (localhost for 127.0.0.1): credentials dropped, as curl.
func TestReviewCredentialsNotSentToAnotherHost(t *testing.T) {
	t.Parallel()
	other := newServer(t, failing(0, 0))
	otherURL := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	start := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/same" {
			_, _ = io.WriteString(w, "same")
			return
		}
		if r.URL.Path == "/rel" {
			w.Header().Set("Location", "same") // relative
			w.WriteHeader(http.StatusMovedPermanently)
			return
		}
		http.Redirect(w, r, otherURL+"/landing", http.StatusFound)
	})
	r := do(t, "", "-u", "alice:s3cret", start.URL)
	require.Equal(t, 0, r.code, r.stderr)
	_, _, h := lastRequest(other)
	assert.Empty(t, h.Get("Authorization"))

	r = do(t, "", "-u", "alice:s3cret", start.URL+"/rel")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "same", r.stdout, "a relative Location is resolved")
	_, _, h = lastRequest(start)
	assert.NotEmpty(t, h.Get("Authorization"), "the same host keeps them")
}

// A 307/308 after a streamed body (-data-binary @-): net/http cannot send
// it again, so it stops following, and the command exits 0 with the
// redirect's own page on standard output, as if it were the answer. curl
// follows it with the body.
func TestReviewStreamedBodyAndA307(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/target" {
			_, _ = io.WriteString(w, "arrived")
			return
		}
		w.Header().Set("Location", "/target")
		w.WriteHeader(http.StatusTemporaryRedirect)
		_, _ = io.WriteString(w, "redirect page")
	})
	r := do(t, "streamed", "-data-binary", "@-", "-w", "|%{http_code}", s.URL)
	if r.code == 0 {
		assert.Equal(t, "arrived|200", r.stdout, "the redirect was not followed, and exit 0 says all is well")
	} else {
		assert.NotContains(t, r.stdout, "redirect page")
	}
}

// POST, then 301/302/303: GET without the body (as curl -L); 307/308 keep
// the method and the body (-d is in memory).
func TestReviewRedirectMethods(t *testing.T) {
	t.Parallel()
	for _, code := range []int{301, 302, 303, 307, 308} {
		s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/target" {
				_, _ = io.WriteString(w, "arrived")
				return
			}
			w.Header().Set("Location", "/target")
			w.WriteHeader(code)
			_, _ = io.WriteString(w, "moved")
		})
		r := do(t, "", "-d", "a=1", s.URL)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, "arrived", r.stdout)
		method, body, _ := lastRequest(s)
		if code >= 307 {
			assert.Equal(t, "POST a=1", method+" "+body, "%d", code)
		} else {
			assert.Equal(t, "GET ", method+" "+body, "%d", code)
		}
	}
}

// The stderr line after a redirect counts the attempts of the request that
// failed, and says how many redirects came before; -w's num_attempts
// counts them all (it once said "after 2 attempts; gave up: all 1
// attempts failed").
func TestReviewAttemptCountAfterARedirect(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved" {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		http.Redirect(w, r, "/moved", http.StatusFound)
	})
	for _, tt := range []struct{ attempts, line, writeOut string }{
		{"1", "503 Service Unavailable after 1 attempt (and 1 redirect before); not retried: -attempts 1 allows no retry", "2"},
		{"3", "503 Service Unavailable after 3 attempts (and 1 redirect before); gave up: all 3 attempts failed (-attempts)", "4"},
	} {
		r := do(t, "", "-attempts", tt.attempts, "-w", "%{num_attempts}", s.URL)
		assert.Equal(t, 22, r.code)
		assert.Contains(t, r.stderr, tt.line)
		assert.Equal(t, tt.writeOut, r.stdout, "num_attempts counts every redirect's")
	}
}

// Too many redirects: curl's -w gives the last response's code (302) and
// URL; retryhttp says 000, as if nothing had answered.
func TestReviewTooManyRedirectsWriteOut(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/hop/"))
		http.Redirect(w, r, fmt.Sprintf("/hop/%d", n+1), http.StatusFound)
	})
	r := do(t, "", "-max-redirects", "2", "-w", "%{http_code} %{num_redirects} %{exitcode}", s.URL+"/hop/0")
	assert.Equal(t, 47, r.code)
	assert.Equal(t, "302 2 47", r.stdout, "curl -L --max-redirs 2 -w prints 302 2 47")
}

// ---------------------------------------------------------------------
// Timeouts and exit codes

// -connect-timeout covers TLS ("TLS included"), and curl exits 28 when
// the handshake times out; retryhttp exits 1: the timeout is wrapped in
// *url.Error whose Timeout() hides it from exitCodeOf.
func TestReviewTLSHandshakeTimeoutIs28(t *testing.T) {
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
func TestReviewConnectTimeoutIs28(t *testing.T) {
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
func TestReviewDefaultsBoundAHungServer(t *testing.T) {
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
func TestReviewTimeoutNaNIsAUsageError(t *testing.T) {
	t.Parallel()
	for _, flagName := range []string{"-timeout", "-connect-timeout", "-attempt-timeout"} {
		r := do(t, "", "-attempts", "1", flagName, "NaN", "http://127.0.0.1:1/")
		assert.Equal(t, 2, r.code, "%s NaN: %s", flagName, r.stderr)
	}
}

// A body that trickles past -timeout: 28, the part received on stdout
// (as curl), -w still written.
func TestReviewTrickleTimeout(t *testing.T) {
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

// Bodies that lie: 200 then cut (18, partial on stdout), more bytes than
// Content-Length (the declared length, 0), chunked cut (18).
func TestReviewBodiesThatLie(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, resp string
		code       int
		stdout     string
	}{
		{"cut", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nonly this", 18, "only this"},
		{"longer than its length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabcdef", 0, "abc"},
		{"chunked cut", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n", 18, "hello"},
		{"no length, until close", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end", 0, "to the end"},
		{"100 Continue first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", 0, "ok"},
	} {
		url := rawServer(t, tt.resp)
		r := do(t, "", "-attempts", "1", url+"/")
		assert.Equal(t, tt.code, r.code, "%s: %s", tt.name, r.stderr)
		assert.Equal(t, tt.stdout, r.stdout, tt.name)
	}
}

// 204 and 304 are successes with no body; a gzip body is decoded; a HEAD
// on a 404 (-I) is 22 with nothing on stdout.
func TestReviewOddStatuses(t *testing.T) {
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

// Writing to a full device: 23, as curl.
func TestReviewStdoutFullIs23(t *testing.T) {
	t.Parallel()
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip("no /dev/full")
	}
	defer full.Close()
	s := newServer(t, failing(0, 0))
	cmd := exec.Command(binary, "do", s.URL)
	cmd.Stdout = full
	r := runExec(t, cmd)
	assert.Equal(t, 23, r.code, r.stderr)
}

// ---------------------------------------------------------------------
// Retry-After

func TestReviewRetryAfterForms(t *testing.T) {
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

// ---------------------------------------------------------------------
// Secrets in messages

func TestReviewNoPasswordOrQueryInMessages(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/start" {
			http.Redirect(w, r, "/next?sig=redirsecret", http.StatusFound)
			return
		}
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})
	u := strings.Replace(s.URL, "http://", "http://bob:pw-hunter2@", 1)
	r := do(t, "", "-v", "-attempts", "2", u+"/start?token=qsecret")
	assert.Equal(t, 22, r.code)
	for _, secret := range []string{"hunter2", "qsecret", "redirsecret"} {
		assert.NotContains(t, r.stderr, secret)
	}
	_, _, h := lastRequest(s)
	assert.NotEmpty(t, h.Get("Authorization"), "userinfo is sent as basic auth")

	r = do(t, "", "-attempts", "2", "http://bob:pw-hunter2@127.0.0.1:1/x?token=qsecret")
	assert.Equal(t, 7, r.code)
	assert.NotContains(t, r.stderr, "hunter2")
	assert.NotContains(t, r.stderr, "qsecret")
}

func TestReviewIPv6Literal(t *testing.T) {
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

// ---------------------------------------------------------------------
// curl's habits

func TestReviewWriteOutFormats(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(0, 0))
	for format, want := range map[string]string{
		"%":                                "%",
		"a%":                               "a%",
		"%%":                               "%",
		"%%{http_code}":                    "%{http_code}",
		`\q`:                               `\q`,
		`x\`:                               `x\`,
		`%{http_code}\t%{num_redirects}\n`: "200\t0\n",
		"%{size_download} %{exitcode} %{response_code}": "5 0 200",
	} {
		r := do(t, "", "-w", format, s.URL)
		require.Equal(t, 0, r.code, "%q: %s", format, r.stderr)
		assert.Equal(t, "hello"+want, r.stdout, "%q", format)
	}
	for _, format := range []string{"%{", "%{}", "%{nope}", "%{http_code"} {
		r := do(t, "", "-w", format, s.URL)
		assert.Equal(t, 2, r.code, format)
		assert.Equal(t, 1, strings.Count(r.stderr, "\n"), format)
	}
}

func TestReviewHeadersMethodsAndUser(t *testing.T) {
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
func TestReviewReadmeExamples(t *testing.T) {
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

// ---------------------------------------------------------------------
// The demo's story

// With little traffic in the outage the budget's floor (10 retries a
// second) lets every retry through: it refuses none and the load is the
// full 3×; the story once said it "held the load at 3.00×".
func TestReviewDemoOutageStoryWhenTheBudgetRefusedNothing(t *testing.T) {
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
func TestReviewSimJSONParameters(t *testing.T) {
	t.Parallel()
	r := runCmd(t, "", "sim", "-json", "-clients", "5", "-runs", "1", "-base", "1500us", "-cap", "1s", "-delay", "2500us", "-delay-stddev", "500us", "-seed", "9")
	require.Equal(t, 0, r.code, r.stderr)
	for _, want := range []string{`"seed": 9`, `"runs": 1`, `"base_ms": 1.5`, `"cap_ms": 1000`, `"network_delay_ms": 2.5`, `"network_delay_stddev_ms": 0.5`} {
		assert.Contains(t, r.stdout, want)
	}
}

// Usage errors: one line with a hint, exit 2, no doubled prefix.
func TestReviewUsageErrors(t *testing.T) {
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
