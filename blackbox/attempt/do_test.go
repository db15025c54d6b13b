package attempt_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/retryhttp/retryhttp/internal/proctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain removes the command the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	proctest.RemoveBuilt()
	os.Exit(code)
}

// rh returns the path of the retryhttp command, built once.
func rh(t *testing.T) string { return proctest.Retryhttp(t) }

type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *bytes.Buffer
	done           chan struct{}
	code           int
}

// start starts `retryhttp do args...` with stdout and stderr as given
// (nil: buffers).
func start(t *testing.T, stdin io.Reader, stdout, stderr *os.File, args ...string) *proc {
	t.Helper()
	p := &proc{stdout: new(bytes.Buffer), stderr: new(bytes.Buffer), done: make(chan struct{})}
	p.cmd = exec.Command(rh(t), append([]string{"do"}, args...)...)
	p.cmd.Stdin = stdin
	if stdout != nil {
		p.cmd.Stdout = stdout
	} else {
		p.cmd.Stdout = p.stdout
	}
	if stderr != nil {
		p.cmd.Stderr = stderr
	} else {
		p.cmd.Stderr = p.stderr
	}
	require.NoError(t, p.cmd.Start())
	go func() {
		err := p.cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.code = ee.ExitCode()
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait returns the command's exit status, failing the test if it is still
// running after guard.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(guard):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("still running after %v; stderr: %s", guard, p.stderr)
		return -1
	}
}

// stuckPipe returns the write end of a pipe whose reader never reads, and
// whose buffer is full, in blocking mode: a command given it blocks in its
// first write there.
func stuckPipe(t *testing.T) *os.File {
	var p [2]int
	require.NoError(t, syscall.Pipe2(p[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK))
	r, w := os.NewFile(uintptr(p[0]), "r"), os.NewFile(uintptr(p[1]), "w")
	t.Cleanup(func() { r.Close(); w.Close() })
	chunk := make([]byte, 4096)
	for _, n := range []int{4096, 1} {
		for {
			if _, err := syscall.Write(p[1], chunk[:n]); err != nil {
				break
			}
		}
	}
	require.NoError(t, syscall.SetNonblock(p[1], false))
	return w
}

// waitWriting waits until a thread of process pid is in write(2) on file
// descriptor fd, as /proc/PID/task/TID/syscall shows: to signal the
// command only once it is blocked there.
func waitWriting(t *testing.T, pid, fd int) {
	t.Helper()
	if err := proctest.Available(); err != nil {
		t.Skipf("no /proc/PID/syscall to see where the command blocks: %v", err)
	}
	require.Eventually(t, func() bool { return proctest.InSyscall(pid, syscall.SYS_WRITE, fd) }, guard, 5*time.Millisecond,
		"the command blocked writing to fd %d", fd)
}

// waitFull waits until the pipe whose read end is r is full: it holds
// more than its size less a page, so every page of it is taken, and its
// writer cannot go on.
func waitFull(t *testing.T, r *os.File) {
	t.Helper()
	const fGetPipeSz, fionread = 1032, 0x541b
	size, _, errno := syscall.Syscall(syscall.SYS_FCNTL, r.Fd(), fGetPipeSz, 0)
	require.Zero(t, errno)
	require.Eventually(t, func() bool {
		var n int32
		_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, r.Fd(), fionread, uintptr(unsafe.Pointer(&n)))
		return errno == 0 && uintptr(n) > size-4096
	}, guard, 5*time.Millisecond, "the pipe filled up")
}

// streamer serves a body announced as 4 MiB, 64 KiB at a time, and never
// ends it: it goes on until the client stops reading, then waits for the
// client to go. started is closed once the first 64 KiB are sent.
func streamer(t *testing.T, started chan struct{}) string {
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(4<<20))
		chunk := bytes.Repeat([]byte("b"), 64<<10)
		for range 63 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			once.Do(func() { close(started) })
		}
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// `retryhttp do`'s help: "Whatever it is blocked on (a pipe nobody reads
// on standard output or error ...), it exits within a second of the
// signal", with 130 for SIGINT and 143 for SIGTERM. Here standard error
// is a full pipe, and -v writes each attempt there.
func TestDoSignalWhileBlockedOnStderr(t *testing.T) {
	for _, c := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(c.sig.String(), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(503)
			}))
			defer srv.Close()
			p := start(t, nil, nil, stuckPipe(t), "-v", "-base-delay", "10ms", "-attempts", "50", srv.URL)
			waitWriting(t, p.cmd.Process.Pid, 2) // -v's line
			require.NoError(t, p.cmd.Process.Signal(c.sig))
			assert.Equal(t, c.code, p.wait(t))
		})
	}
}

// A FIFO given to -o whose reader opened it and then stopped reading: the
// command blocks writing the body into it, and SIGTERM still ends it, with
// 143.
func TestDoSignalWhileBlockedWritingAFIFO(t *testing.T) {
	started := make(chan struct{})
	url := streamer(t, started)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	p := start(t, nil, nil, nil, "-o", fifo, url)
	r, err := os.OpenFile(fifo, os.O_RDONLY, 0) // a reader that never reads
	require.NoError(t, err)
	defer r.Close()
	waitFull(t, r)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 143, p.wait(t), p.stderr.String())
}

// SIGINT while a body streams into -o: the command exits with 130, -o
// keeps its old content, and no temporary file is left beside it.
func TestDoSignalLeavesOutputAsItWas(t *testing.T) {
	started := make(chan struct{})
	url := streamer(t, started)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.bin")
	require.NoError(t, os.WriteFile(out, []byte("old"), 0o644))
	p := start(t, nil, nil, nil, "-o", out, url)
	require.Eventually(t, func() bool { // the body is being written beside -o
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if info, err := e.Info(); err == nil && e.Name() != "out.bin" && info.Size() > 0 {
				return true
			}
		}
		return false
	}, guard, 5*time.Millisecond, "a temporary file beside -o")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
	assert.Equal(t, 130, p.wait(t))
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, "old", string(b))
	entries, _ := os.ReadDir(dir)
	assert.Len(t, entries, 1, "no temporary file left")
}

// bodyServer answers 503 to the first request, after calling between (the
// moment between attempt 1 and 2), then 200; it records the hash of every
// body.
func bodyServer(t *testing.T, between func()) (string, func() [][32]byte) {
	var mu sync.Mutex
	var hashes [][32]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		hashes = append(hashes, sha256.Sum256(b))
		n := len(hashes)
		mu.Unlock()
		if n == 1 {
			between()
			w.WriteHeader(503)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() [][32]byte { mu.Lock(); defer mu.Unlock(); return append([][32]byte(nil), hashes...) }
}

// -data-binary @file, changed between attempts: replaced by rename, the
// retry sends the bytes of the file opened first; grown, truncated, or
// rewritten in place (its size kept or not), the command ends with 26 and
// sends nothing else.
func TestDoDataBinaryFileChangedBetweenAttempts(t *testing.T) {
	orig := bytes.Repeat([]byte("original "), 20000) // 180 KB: past the 64 KiB buffer
	cases := []struct {
		name   string
		change func(path string)
		code   int
	}{
		{"replaced by rename", func(p string) {
			tmp := p + ".new"
			require.NoError(t, os.WriteFile(tmp, []byte("new content"), 0o644))
			require.NoError(t, os.Rename(tmp, p))
		}, 0},
		{"grown in place", func(p string) {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			require.NoError(t, err)
			f.Write([]byte("more"))
			f.Close()
		}, 26},
		{"truncated in place", func(p string) { require.NoError(t, os.Truncate(p, 10)) }, 26},
		{"rewritten in place, same size", func(p string) {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			require.NoError(t, err)
			f.WriteAt([]byte("CHANGED"), 0)
			f.Close()
		}, 26},
		{"truncated and rewritten to the same size", func(p string) {
			require.NoError(t, os.WriteFile(p, bytes.Repeat([]byte("X"), len(orig)), 0o644))
		}, 26},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "payload")
			require.NoError(t, os.WriteFile(path, orig, 0o644))
			url, hashes := bodyServer(t, func() { c.change(path) })
			p := start(t, nil, nil, nil, "-X", "PUT", "-base-delay", "10ms", "-data-binary", "@"+path, url)
			code := p.wait(t)
			hs := hashes()
			assert.Equal(t, c.code, code, p.stderr.String())
			if c.code == 0 {
				assert.Len(t, hs, 2, "the attempt and the retry")
			} else {
				assert.Len(t, hs, 1, "nothing sent after the change")
			}
			for i, h := range hs {
				assert.Equal(t, sha256.Sum256(orig), h, "request %d sent the bytes of the first", i+1)
			}
		})
	}
}

// -data-binary @file replaced by rename before a 307 redirect: the
// redirected PUT sends the bytes of the file opened first too; a 303 then
// turns it into a GET without a body.
func TestDoDataBinaryRedirects(t *testing.T) {
	orig := bytes.Repeat([]byte("abc"), 30000)
	dir := t.TempDir()
	path := filepath.Join(dir, "payload")
	require.NoError(t, os.WriteFile(path, orig, 0o644))
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, fmt.Sprintf("%s %s %x", r.Method, r.URL.Path, sha256.Sum256(b)))
		mu.Unlock()
		switch r.URL.Path {
		case "/a":
			tmp := path + ".new"
			os.WriteFile(tmp, []byte("other"), 0o644)
			os.Rename(tmp, path)
			http.Redirect(w, r, "/b", http.StatusTemporaryRedirect)
		case "/b":
			http.Redirect(w, r, "/c", http.StatusSeeOther)
		}
	}))
	defer srv.Close()
	p := start(t, nil, nil, nil, "-X", "PUT", "-data-binary", "@"+path, srv.URL+"/a")
	assert.Equal(t, 0, p.wait(t), p.stderr.String())
	want := fmt.Sprintf("%x", sha256.Sum256(orig))
	empty := fmt.Sprintf("%x", sha256.Sum256(nil))
	assert.Equal(t, []string{"PUT /a " + want, "PUT /b " + want, "GET /c " + empty}, got)
}

// -data-binary @-: a body from standard input within the 64 KiB replay
// buffer is sent again after a 503 with the same bytes; past it, the 503
// is final (exit 22) and the body is sent once.
func TestDoStdinBodies(t *testing.T) {
	for _, size := range []int{1000, 64 << 10, 64<<10 + 1, 300 << 10} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			body := bytes.Repeat([]byte("s"), size)
			url, hashes := bodyServer(t, func() {})
			p := start(t, bytes.NewReader(body), nil, nil, "-X", "PUT", "-base-delay", "10ms", "-data-binary", "@-", url)
			code := p.wait(t)
			hs := hashes()
			for i, h := range hs {
				assert.Equal(t, sha256.Sum256(body), h, "request %d", i+1)
			}
			if size <= 64<<10 {
				assert.Equal(t, 0, code, p.stderr.String())
				assert.Len(t, hs, 2)
			} else {
				assert.Equal(t, 22, code, p.stderr.String())
				assert.Len(t, hs, 1)
			}
		})
	}
}

// -hedge: a GET whose first copy has no answer gets a second copy, sent
// while the first is still in flight, and the first answer wins (with no
// attempt timeout, nothing else could end the first copy).
func TestDoHedge(t *testing.T) {
	var n atomic.Int32
	var firstInFlight atomic.Bool
	var hedgeWhileFirstInFlight atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			firstInFlight.Store(true)
			defer firstInFlight.Store(false)
			select { // no answer until the client goes
			case <-r.Context().Done():
			case <-time.After(guard):
			}
			return
		}
		hedgeWhileFirstInFlight.Store(firstInFlight.Load())
		io.WriteString(w, "fast")
	}))
	defer srv.Close()
	p := start(t, nil, nil, nil, "-hedge", "100ms", "-attempt-timeout", "0", srv.URL)
	assert.Equal(t, 0, p.wait(t), p.stderr.String())
	assert.Equal(t, "fast", p.stdout.String())
	assert.Equal(t, int32(2), n.Load())
	assert.True(t, hedgeWhileFirstInFlight.Load(), "the second copy came while the first was in flight")
}
