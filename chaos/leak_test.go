package chaos

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The heap profile attributes live heap to the code that allocated it, so
// that what Toxiproxy's blocked goroutines hold can be told apart (see
// heapByOwner). Sampling one allocation per 32 KiB keeps the estimate close.
func init() { runtime.MemProfileRate = 32 << 10 }

// heapByOwner estimates, from the heap profile, the live heap bytes that
// Toxiproxy's code allocated (the chunks held by its blocked goroutines, see
// countGoroutines) and those allocated by everything else. Call it after two
// runtime.GC(): the profile shows the heap as of the last completed cycle.
func heapByOwner() (toxiproxy, others int64) {
	n, _ := runtime.MemProfile(nil, true)
	var records []runtime.MemProfileRecord
	for {
		records = make([]runtime.MemProfileRecord, n+64)
		var ok bool
		if n, ok = runtime.MemProfile(records, true); ok {
			records = records[:n]
			break
		}
	}
	rate := float64(runtime.MemProfileRate)
	for _, r := range records {
		objects, bytes := r.InUseObjects(), r.InUseBytes()
		if objects == 0 || bytes == 0 {
			continue
		}
		// As runtime/pprof scales a sample: each object of this average
		// size was sampled with probability 1-exp(-size/rate).
		est := int64(float64(bytes) / (1 - math.Exp(-float64(bytes)/float64(objects)/rate)))
		if allocatedByToxiproxy(r.Stack()) {
			toxiproxy += est
		} else {
			others += est
		}
	}
	return toxiproxy, others
}

func allocatedByToxiproxy(stack []uintptr) bool {
	frames := runtime.CallersFrames(stack)
	for {
		f, more := frames.Next()
		if strings.Contains(f.Function, toxiproxyFrame) {
			return true
		}
		if !more {
			return false
		}
	}
}

// warmUpNetwork makes the runtime open what it keeps for the whole process
// on first use of the network (the poller's epoll and event descriptors), so
// that they are part of the baseline.
func warmUpNetwork(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	s, err := ln.Accept()
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, s.Close())
	require.NoError(t, ln.Close())
}

// baseline returns the goroutines and open file descriptors before the run,
// once they are steady.
func baseline() (goroutines, fds int) {
	runtime.GC()
	goroutines, fds = runtime.NumGoroutine(), countFDs()
	for range 10 {
		time.Sleep(20 * time.Millisecond)
		g, f := runtime.NumGoroutine(), countFDs()
		if g == goroutines && f == fds {
			break
		}
		goroutines, fds = g, f
	}
	return goroutines, fds
}

// settle polls until done holds for the current goroutine and descriptor
// counts, or settleTimeout passes, and returns the last counts. Goroutines
// parked inside Toxiproxy's toxic pipeline are counted apart (see
// countGoroutines).
func settle(done func(goroutines, fds int) bool) (goroutines, toxiproxy, fds int) {
	deadline := time.Now().Add(settleTimeout)
	for {
		goroutines, toxiproxy = countGoroutines()
		fds = countFDs()
		if done(goroutines, fds) || time.Now().After(deadline) {
			return goroutines, toxiproxy, fds
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// toxiproxyFrame marks a goroutine running Toxiproxy's code.
const toxiproxyFrame = "github.com/Shopify/toxiproxy/"

// countGoroutines returns the number of goroutines of everything but
// Toxiproxy, and Toxiproxy's apart.
//
// Toxiproxy v2.12.0 leaves goroutines behind by design of its pipeline: when
// a toxic ends a connection (reset_peer, timeout, limit_data), it stops
// reading its input channel, and the toxics before it (and the link's reader,
// in stream.ChanWriter.Write) block forever on an unbuffered channel send
// once more data arrives; Proxy.Stop closes the sockets but cannot unblock
// them. Those goroutines hold no socket (the descriptor count shows it), and
// no code of retryhttp or net/http runs in them, so they are left out of the
// leak check and only reported.
func countGoroutines() (others, toxiproxy int) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if !strings.HasPrefix(g, "goroutine ") {
			continue
		}
		if strings.Contains(g, toxiproxyFrame) {
			toxiproxy++
		} else {
			others++
		}
	}
	return others, toxiproxy
}

// countFDs returns the number of open file descriptors of this process, or
// -1 where /proc/self/fd does not exist. (Reading the directory opens one;
// it counts the same every time.)
func countFDs() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(entries)
}

// fdList names what each open descriptor points at, for a failure message.
func fdList() string {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		fmt.Fprintf(&b, "%s -> %s\n", e.Name(), target)
	}
	return b.String()
}

// goroutineDump returns the stacks of every goroutine not in Toxiproxy,
// grouped, for a failure message.
func goroutineDump() string {
	var b bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	var out []string
	for g := range strings.SplitSeq(b.String(), "\n\n") {
		if !strings.Contains(g, toxiproxyFrame) {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
