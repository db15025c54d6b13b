package main

// What do writes, and where: the status line and the failure line sanitized
// as curl does, -o onto special files, symlinks, long names and the umask,
// -i, -I and -w on every path, gzip, and a full disk (exit 23).

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The status line's reason phrase is the server's text: printed raw, it
// lets any server retitle the terminal, clear it, or hide text.
func TestStatusLineIsSanitized(t *testing.T) {
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
func TestBodyLineStripsC1Controls(t *testing.T) {
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

// curl -s -o /dev/null -w '%{http_code}' is the most common idiom of all.
// retryhttp creates its temporary file in /dev, so a user cannot (and root
// would replace /dev/null with a regular file: never run that as root).
func TestOutputToDevNullAndDevStdout(t *testing.T) {
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
func TestOutputOntoASymlink(t *testing.T) {
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
func TestOutputOntoAFIFO(t *testing.T) {
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
func TestOutputHonorsTheUmask(t *testing.T) {
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
func TestOutputWithALongName(t *testing.T) {
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
func TestOutputConcurrentWriters(t *testing.T) {
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
func TestOutputSameFileAsTheBody(t *testing.T) {
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
func TestOutputKeptOnSignalMidBody(t *testing.T) {
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

// Too many redirects: curl's -w gives the last response's code (302) and
// URL; retryhttp says 000, as if nothing had answered.
func TestTooManyRedirectsWriteOut(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/hop/"))
		http.Redirect(w, r, fmt.Sprintf("/hop/%d", n+1), http.StatusFound)
	})
	r := do(t, "", "-max-redirects", "2", "-w", "%{http_code} %{num_redirects} %{exitcode}", s.URL+"/hop/0")
	assert.Equal(t, 47, r.code)
	assert.Equal(t, "302 2 47", r.stdout, "curl -L --max-redirs 2 -w prints 302 2 47")
}

// Writing to a full device: 23, as curl.
func TestStdoutFullIs23(t *testing.T) {
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

func TestWriteOutFormats(t *testing.T) {
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

// -I prints the status line and the headers and nothing after the blank
// line, Content-Length included though no body came; -i on 204 and 304
// prints only the head; size_download counts the body only.
func TestHeadAndIncludeOutput(t *testing.T) {
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

// curl -i prints "HTTP/2 200" for HTTP/2 (there is no minor version);
// retryhttp do -i prints Go's "HTTP/2.0 200 OK", which scripts that grep
// '^HTTP/2 200' (the curl form) do not match.
func TestHTTP2StatusLineAsCurl(t *testing.T) {
	t.Parallel()
	s, ca := tlsServer(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	r := runEnv(t, []string{"SSL_CERT_FILE=" + ca}, "-I", s.URL+"/")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Regexp(t, `^HTTP/2 200\b`, r.stdout, "-I over HTTP/2 prints a status line curl never prints: %q", strings.SplitN(r.stdout, "\r\n", 2)[0])
}

// A gzip body is decoded (net/http asks for gzip itself), on stdout and
// into -o; -i then does not claim a Content-Encoding the output no longer
// has; a user who asks for gzip with -H gets the bytes as sent, as curl
// without --compressed.
func TestGzip(t *testing.T) {
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

// -w is written on a refused connection, a name that does not resolve, a
// full disk and a cut body, with the exit code in it; time_total and
// size_download are right.
func TestWriteOutOnFailures(t *testing.T) {
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
func TestWriteOutWhenNothingIsSent(t *testing.T) {
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
func TestOutputOntoADirectoryFailsBeforeSending(t *testing.T) {
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

// -o into a folder that does not exist fails before sending, naming the
// path the user gave, not the temporary file beside it.
func TestOutputIntoAMissingFolderNamesThePath(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(0, 0))
	target := filepath.Join(t.TempDir(), "missing", "out")
	r := do(t, "", "-o", target, s.URL)
	assert.Equal(t, 1, r.code)
	assert.Equal(t, "retryhttp do: -o "+target+": no such file or directory\n", r.stderr)
	assert.Zero(t, s.attempts.Load(), "the request was sent though its answer could not be written")
}

// -o onto a full device: 23, with -w's line still on stdout.
func TestFullDiskIs23WithWriteOut(t *testing.T) {
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

// On every failure -o leaves the old file and no temporary file: a final
// 503, a cut body, a -timeout mid-body, a bad gzip body.
func TestNoTemporaryFilesLeft(t *testing.T) {
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
