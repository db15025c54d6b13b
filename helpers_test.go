package retryhttp

import (
	"context"
	"crypto/sha256"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/stretchr/testify/require"
)

// upstream is a loopback server that counts attempts and new connections and
// keeps a hash of each request body it received.
type upstream struct {
	*httptest.Server
	attempts atomic.Int32
	conns    atomic.Int32

	mu     sync.Mutex
	bodies [][32]byte
	sizes  []int64
}

// newUpstream starts a server whose handler gets the 1-based attempt number.
// The body has been read whole (and hashed) before handle runs.
func newUpstream(t *testing.T, handle func(n int, w http.ResponseWriter, r *http.Request)) *upstream {
	t.Helper()
	u := unstartedUpstream(handle)
	u.Start()
	t.Cleanup(u.Close)
	return u
}

// newTLSUpstream starts an HTTPS server with httptest's self-signed
// certificate, which a default client does not trust.
func newTLSUpstream(t *testing.T) *upstream {
	t.Helper()
	u := unstartedUpstream(statuses(200))
	u.StartTLS()
	t.Cleanup(u.Close)
	return u
}

// startUpstreamOn starts a server on addr, a port that was closed so far.
func startUpstreamOn(t *testing.T, addr string, handle func(int, http.ResponseWriter, *http.Request)) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	u := unstartedUpstream(handle)
	u.Listener.Close()
	u.Listener = ln
	u.Start()
	t.Cleanup(u.Close)
	return u
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func unstartedUpstream(handle func(n int, w http.ResponseWriter, r *http.Request)) *upstream {
	u := &upstream{}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(u.attempts.Add(1))
		h := sha256.New()
		size, _ := io.Copy(h, r.Body)
		u.mu.Lock()
		u.bodies = append(u.bodies, [32]byte(h.Sum(nil)))
		u.sizes = append(u.sizes, size)
		u.mu.Unlock()
		handle(n, w, r)
	}))
	u.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	u.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are expected
	return u
}

func sha(b []byte) [32]byte { return sha256.Sum256(b) }

func (u *upstream) bodyHashes() [][32]byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([][32]byte(nil), u.bodies...)
}

// statuses answers attempt n with codes[n-1], and the last code after that.
func statuses(codes ...int) func(int, http.ResponseWriter, *http.Request) {
	return func(n int, w http.ResponseWriter, _ *http.Request) {
		code := codes[min(n, len(codes))-1]
		w.Header().Set("X-Attempt", strconv.Itoa(n))
		w.WriteHeader(code)
		_, _ = io.WriteString(w, http.StatusText(code))
	}
}

// fakeClock replaces a Transport's clock and wait: waits are recorded and
// end at once (or when the context ends), and time advances by each wait.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	waits []time.Duration
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.waits = append(c.waits, d)
	c.t = c.t.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}

// advance moves the clock forward by d, as if d passed.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// slowBase is a base that takes d of the fake clock's time per request.
type slowBase struct {
	base  http.RoundTripper
	clock *fakeClock
	d     time.Duration
}

func (b slowBase) RoundTrip(req *http.Request) (*http.Response, error) {
	b.clock.advance(b.d)
	return b.base.RoundTrip(req)
}

func (c *fakeClock) recorded() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

// newTestTransport returns a Transport over a fresh pooled transport, with a
// fake clock so that tests never wait.
func newTestTransport(t *testing.T, opts ...Option) (*Transport, *fakeClock) {
	t.Helper()
	base := cleanhttp.DefaultPooledTransport()
	t.Cleanup(base.CloseIdleConnections)
	tr := New(base, opts...)
	clock := &fakeClock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	tr.now = clock.now
	tr.sleep = clock.sleep
	return tr, clock
}

// do sends req through tr with an http.Client, as users do.
func do(t *testing.T, tr http.RoundTripper, req *http.Request) (*http.Response, error) {
	t.Helper()
	return (&http.Client{Transport: tr}).Do(req)
}

// readAll reads and closes a response body.
func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// closeTracker records whether, and how often, a request body was closed.
type closeTracker struct {
	io.Reader
	closes atomic.Int32
}

func (c *closeTracker) Close() error {
	c.closes.Add(1)
	return nil
}

// allocsPerRun is testing.AllocsPerRun with the collector off: a
// collection empties the sync.Pools the Transport draws from (the pooled
// connection watches, the hedge timers), and a busy machine collects in the
// middle of a run. It skips the test under -race, where sync.Pool drops a
// quarter of what is put back and the detector's own bookkeeping allocates:
// test.sh runs the tests that count allocations (their names say Alloc)
// once more without it.
func allocsPerRun(t testing.TB, runs int, f func()) float64 {
	t.Helper()
	if raceEnabled {
		t.Skip("allocation counts are not stable under -race; test.sh counts them without it")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	return testing.AllocsPerRun(runs, f)
}
