package main

// The request body do sends: -data-binary from a string, a file or standard
// input of every kind, streamed in bounded memory, and bodies whose length
// lies.

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// curl --data-binary ” POSTs an empty body; retryhttp sends a GET, so a
// script's empty "$payload" silently changes the method.
func TestEmptyDataBinaryStillPosts(t *testing.T) {
	t.Parallel()
	s := newServer(t, failing(0, 0))
	r := do(t, "", "-data-binary", "", s.URL)
	require.Equal(t, 0, r.code, r.stderr)
	method, _, h := lastRequest(s)
	assert.Equal(t, http.MethodPost, method)
	assert.Equal(t, "application/x-www-form-urlencoded", h.Get("Content-Type"))
}

// The replay buffer's edge: 64 KiB exactly is retried, a byte more is not.
func TestStdinBodyAtTheReplayLimit(t *testing.T) {
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
func TestStdinKinds(t *testing.T) {
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
func TestSignalWhileReadingStdin(t *testing.T) {
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

// A 307/308 after a streamed body (-data-binary @-): net/http cannot send
// it again, so it stops following, and the command exits 0 with the
// redirect's own page on standard output, as if it were the answer. curl
// follows it with the body.
func TestStreamedBodyAndA307(t *testing.T) {
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

// Bodies that lie: 200 then cut (18, partial on stdout), more bytes than
// Content-Length (the declared length, 0), chunked cut (18).
func TestBodiesThatLie(t *testing.T) {
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

// 100 MiB through -o streams: memory stays small (measured by
// /usr/bin/time, since a child's rusage counts the test's own memory from
// before the exec), the file is whole, and size_download says so.
func TestLargeBodyStreamsInBoundedMemory(t *testing.T) {
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
