package main

// SIGINT and SIGTERM end retryhttp do whatever it is blocked on: a write to
// a pipe nobody reads, the open of a FIFO nobody opens for reading; a
// second signal ends it at once. -o is left as it was, and no temporary
// file stays beside it.

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp/internal/proctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fullPipe returns a pipe whose buffer is already full, its write end in
// blocking mode: a command given it as standard output blocks on its first
// write there, as on a pipe whose reader stopped reading. The read end
// stays open until the test ends, so that the write blocks rather than
// fails.
func fullPipe(t *testing.T) *os.File {
	t.Helper()
	var p [2]int
	require.NoError(t, syscall.Pipe2(p[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK))
	r, w := os.NewFile(uintptr(p[0]), "|0"), os.NewFile(uintptr(p[1]), "|1")
	t.Cleanup(func() { r.Close(); w.Close() })
	chunk := make([]byte, 64<<10)
	for _, size := range []int{len(chunk), 1} { // then byte by byte: no room at all is left
		for {
			_, err := syscall.Write(p[1], chunk[:size])
			if errors.Is(err, syscall.EAGAIN) {
				break
			}
			require.NoError(t, err)
		}
	}
	require.NoError(t, syscall.SetNonblock(p[1], false))
	return w
}

// bigBody is a server whose response announces a body far larger than a
// pipe's buffer: it sends the first 64 KiB, closes sent, sends more until
// the client stops reading, and closes gone when the client has gone away
// (it never finishes the body).
type bigBody struct {
	url        string
	sent, gone chan struct{}
}

func newBigBody(t *testing.T) *bigBody {
	t.Helper()
	b := &bigBody{sent: make(chan struct{}), gone: make(chan struct{})}
	var once sync.Once
	s := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		w.Header().Set("Content-Length", strconv.Itoa(64*len(chunk)))
		_, _ = w.Write(chunk)
		w.(http.Flusher).Flush()
		once.Do(func() { close(b.sent) })
		for range 8 { // 512 KiB more: blocks once the client stops reading, until it goes
			if _, err := w.Write(chunk); err != nil {
				break
			}
		}
		select {
		case <-r.Context().Done():
			close(b.gone)
		case <-time.After(30 * time.Second):
		}
	})
	b.url = s.URL + "/"
	return b
}

// waitClosed waits for ch, failing the test after 10 s.
func waitClosed(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// waitInSyscall waits until a thread of process pid is in system call nr,
// as /proc/PID/task/TID/syscall shows: to signal a command only once it is
// blocked there.
func waitInSyscall(t *testing.T, pid int, nr uintptr, what string) {
	t.Helper()
	if err := proctest.Available(); err != nil {
		t.Skipf("no /proc/PID/syscall to see where the command blocks: %v", err)
	}
	waitFor(t, 10*time.Second, func() bool { return proctest.InSyscall(pid, nr, -1) }, what)
}

// dirHolds asserts that dir holds only the named files: no temporary file
// was left.
func dirHolds(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	assert.Equal(t, names, got, "a temporary file was left")
}

var signalCases = []struct {
	sig  syscall.Signal
	code int
}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}}

// Standard output is a pipe nobody reads, and full: the command blocks
// writing the body (or -w's line, when the signal came before the body).
// The first signal cannot end that write: the command exits a second
// later, with -o left as it was and its temporary file removed.
func TestDoSignalEndsACommandBlockedWritingStdout(t *testing.T) {
	t.Parallel()
	for _, tt := range signalCases {
		for _, toFile := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/-o=%v", tt.sig, toFile), func(t *testing.T) {
				t.Parallel()
				srv := newBigBody(t)
				dir := t.TempDir()
				out := filepath.Join(dir, "report.bin")
				require.NoError(t, os.WriteFile(out, []byte("yesterday"), 0o644))
				args := []string{"-w", "%{exitcode}", srv.url}
				if toFile {
					args = append([]string{"-o", out}, args...)
				}
				p := startDoTo(t, dir, fullPipe(t), args...)
				waitClosed(t, srv.sent, "the start of the body")
				require.NoError(t, p.cmd.Process.Signal(tt.sig))
				code := p.wait(t, 10*time.Second) // a guard; what ended it is in stderr
				assert.Equal(t, tt.code, code, p.stderr.String())
				assert.Contains(t, p.stderr.String(), "after the signal, still blocked", "the grace period ended it")
				got, err := os.ReadFile(out)
				require.NoError(t, err)
				assert.Equal(t, "yesterday", string(got))
				dirHolds(t, dir, "report.bin")
			})
		}
	}
}

// -o names a FIFO that no one opens for reading: the command waits for a
// reader to write the body. The signal ends the wait: the command exits
// by itself, with -w's line, and the FIFO is left as it was.
func TestDoSignalEndsACommandWaitingForAFIFOReader(t *testing.T) {
	t.Parallel()
	for _, tt := range signalCases {
		t.Run(tt.sig.String(), func(t *testing.T) {
			t.Parallel()
			srv := newBigBody(t)
			dir := t.TempDir()
			fifo := filepath.Join(dir, "pipe")
			require.NoError(t, syscall.Mkfifo(fifo, 0o600))
			p := startDo(t, dir, "-o", fifo, "-w", "%{exitcode}", srv.url)
			waitClosed(t, srv.sent, "the start of the body")
			waitInSyscall(t, p.cmd.Process.Pid, syscall.SYS_OPENAT, "the command to open the FIFO")
			require.NoError(t, p.cmd.Process.Signal(tt.sig))
			code := p.wait(t, 10*time.Second) // a guard; what ended it is in stderr
			assert.Equal(t, tt.code, code, p.stderr.String())
			assert.Equal(t, strconv.Itoa(tt.code), p.stdout.String(), "-w's line is written")
			assert.Contains(t, p.stderr.String(), "-o "+fifo+": stopped while waiting to open it")
			info, err := os.Lstat(fifo)
			require.NoError(t, err)
			assert.True(t, info.Mode()&os.ModeNamedPipe != 0, "the FIFO was replaced by a %v", info.Mode())
			dirHolds(t, dir, "pipe")
		})
	}
}

// A second signal ends the command at once, within the grace period the
// first one gave it, with the first one's status; -o's temporary file is
// removed all the same.
func TestDoSecondSignalExitsAtOnce(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		first, second syscall.Signal
		code          int
	}{
		{syscall.SIGINT, syscall.SIGINT, 130},
		{syscall.SIGTERM, syscall.SIGINT, 143},
	} {
		t.Run(tt.first.String()+"/"+tt.second.String(), func(t *testing.T) {
			t.Parallel()
			srv := newBigBody(t)
			dir := t.TempDir()
			out := filepath.Join(dir, "report.bin")
			require.NoError(t, os.WriteFile(out, []byte("yesterday"), 0o644))
			p := startDoTo(t, dir, fullPipe(t), "-o", out, "-w", "%{exitcode}", srv.url)
			waitClosed(t, srv.sent, "the start of the body")
			require.NoError(t, p.cmd.Process.Signal(tt.first))
			waitClosed(t, srv.gone, "the first signal to cancel the request")
			require.NoError(t, p.cmd.Process.Signal(tt.second))
			code := p.wait(t, 10*time.Second) // a guard; what ended it is in stderr
			assert.Equal(t, tt.code, code, p.stderr.String())
			assert.Contains(t, p.stderr.String(), "stopped at once by a second signal")
			got, err := os.ReadFile(out)
			require.NoError(t, err)
			assert.Equal(t, "yesterday", string(got))
			dirHolds(t, dir, "report.bin")
		})
	}
}
