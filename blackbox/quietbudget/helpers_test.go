// Package quietbudget tests, through the exported API and a real loopback
// server, what the retry budget's new defaults (a floor of two retries
// held, one more every two minutes) leave to a client with little
// traffic, to a shared Budget, to a Budget with a MinPerSecond of its own,
// and to the gauge retryhttp_budget_retries_available.
//
// Time is the Transport's own: the tests lend it a stopped clock through
// internal/seam (the seam retryhttp storm uses), whose Sleep moves the
// clock on by the wait asked for, so that hours of a client's life take
// milliseconds and no test depends on the wall clock.
package quietbudget_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/internal/seam"
)

// clock is a stopped clock; Sleep moves it on.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *clock) Sleep(ctx context.Context, d time.Duration) error {
	if d > 0 {
		c.Advance(d)
	}
	return ctx.Err()
}

// withClock gives tr a stopped clock (seeded jitter) and returns it.
func withClock(tr *retryhttp.Transport) *clock {
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	seam.Set(tr, seam.Clock{Now: c.Now, Sleep: c.Sleep, Rand: rand.New(rand.NewPCG(1, 2))})
	return c
}

// server is a loopback server that answers 503 to the first fail[id]
// attempts of the request whose X-Request-Id is id, and 200 otherwise; it
// counts every attempt.
type server struct {
	*httptest.Server
	mu       sync.Mutex
	fail     map[string]int
	seen     map[string]int
	attempts int
}

func newServer(t *testing.T) *server {
	s := &server{fail: map[string]int{}, seen: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		s.mu.Lock()
		s.attempts++
		s.seen[id]++
		fail := s.seen[id] <= s.fail[id]
		s.mu.Unlock()
		if fail {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(s.Close)
	return s
}

// failFirst makes request id's first n attempts fail with 503.
func (s *server) failFirst(id string, n int) {
	s.mu.Lock()
	s.fail[id] = n
	s.mu.Unlock()
}

// get sends request id through tr and returns its status.
func get(t *testing.T, tr http.RoundTripper, url, id string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("X-Request-Id", id)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func id(i int) string { return strconv.Itoa(i) }
