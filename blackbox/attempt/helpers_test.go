// Package attempt_test pins, from outside the package, the pipeline of one
// attempt: HTTP/2 resends, attempt timeouts, holds and hooks, panics,
// transparent retries, the RoundTripper contract, and `retryhttp do` under
// signals and files.
//
// Every server is on loopback. No assertion depends on how fast the machine
// is: order is shown by events (channels, recorders, sequence numbers kept
// by the servers), and a timeout only guards against a hang, with a margin
// of seconds.
package attempt_test

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/require"
)

// fast retries at once, so that tests need no fake clock.
var fast = retryhttp.Policy{BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}

// guard is how long a test waits for what must happen before it calls it a
// hang: seconds, for what takes milliseconds on an idle machine.
const guard = 10 * time.Second

// requireClosedOnce waits for closes to reach 1, then checks that it stays
// there: a body closed exactly once.
func requireClosedOnce(t *testing.T, closes *atomic.Int32, what string) {
	t.Helper()
	require.Eventually(t, func() bool { return closes.Load() >= 1 }, guard, time.Millisecond, "%s closed", what)
	time.Sleep(20 * time.Millisecond) // a second Close, if any, would come now
	require.Equal(t, int32(1), closes.Load(), "%s closed exactly once", what)
}

func mustReq(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	return req
}

// roundTrip runs rt.RoundTrip(req), failing the test if it has not
// returned within guard.
func roundTrip(t *testing.T, rt http.RoundTripper, req *http.Request) (*http.Response, error) {
	t.Helper()
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := rt.RoundTrip(req)
		done <- result{resp, err}
	}()
	select {
	case r := <-done:
		return r.resp, r.err
	case <-time.After(guard):
		t.Fatalf("RoundTrip still running after %v", guard)
		return nil, nil
	}
}

// recovered returns what f panicked with, or nil.
func recovered(f func()) (p any) {
	defer func() { p = recover() }()
	f()
	return nil
}

// quotaResp is a response with code that announces a quota of limit
// requests per window of reset seconds, remaining of them left.
func quotaResp(r *http.Request, code int, limit, remaining, reset string) *http.Response {
	h := http.Header{}
	h.Set("X-RateLimit-Limit", limit)
	h.Set("X-RateLimit-Remaining", remaining)
	h.Set("X-RateLimit-Reset", reset)
	return &http.Response{StatusCode: code, Header: h, Body: http.NoBody, Request: r}
}

// rtFunc is a base made of a function.
type rtFunc = testkit.RoundTripFunc

// eventCounts counts a recorder's events by kind.
type eventCounts struct {
	mu sync.Mutex
	n  map[retryhttp.EventKind]int
}

func (c *eventCounts) rec(e retryhttp.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[retryhttp.EventKind]int{}
	}
	c.n[e.Kind]++
}

func (c *eventCounts) get(k retryhttp.EventKind) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}
