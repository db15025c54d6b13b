package attempt_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clock numbers the events of a test (a request's arrival at a server, a
// hook's run) in the order they happened, and notes when.
type clock struct{ n atomic.Int64 }

type event struct {
	seq int64
	at  time.Time
}

func (c *clock) tick() event { return event{seq: c.n.Add(1), at: time.Now()} }

// recServer answers 429 Retry-After: retryAfter to requests with
// X-Throttle, 503 to requests with X-Fail, 200 otherwise, and records
// every arrival on the test's clock, with its Authorization.
type recServer struct {
	*httptest.Server
	mu      sync.Mutex
	arrived []event
	auths   []string
}

func newRecServer(t *testing.T, c *clock, retryAfter string) *recServer {
	s := &recServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.arrived = append(s.arrived, c.tick())
		s.auths = append(s.auths, r.Header.Get("Authorization"))
		s.mu.Unlock()
		switch {
		case r.Header.Get("X-Throttle") != "":
			w.Header().Set("Retry-After", retryAfter)
			w.WriteHeader(http.StatusTooManyRequests)
		case r.Header.Get("X-Fail") != "":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// arrivals returns the arrivals so far.
func (s *recServer) arrivals() []event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]event(nil), s.arrived...)
}

// lastAuth returns the Authorization of the last request that arrived.
func (s *recServer) lastAuth() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auths[len(s.auths)-1]
}

// hookLog records each run of a WithBeforeRetry function on the clock.
type hookLog struct {
	c    *clock
	mu   sync.Mutex
	runs []event
}

func (h *hookLog) ran() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.runs = append(h.runs, h.c.tick())
}

func (h *hookLog) all() []event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]event(nil), h.runs...)
}

// hold makes tr hold url's host (or the scope of auth) with a 429, without
// retrying it, and returns when the server sent the 429: the hold lasts
// from a moment after that.
func hold(t *testing.T, tr http.RoundTripper, s *recServer, auth string) event {
	t.Helper()
	req := mustReq(t, http.MethodGet, s.URL, nil).WithContext(retryhttp.ContextWithoutRetries(context.Background()))
	req.Header.Set("X-Throttle", "1")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	a := s.arrivals()
	return a[len(a)-1]
}

// moveTo makes a hook's next request go to s's host.
func moveTo(next *http.Request, s *recServer) {
	u := *next.URL
	u.Host = s.Listener.Addr().String()
	next.URL, next.Host = &u, ""
}

// requireLastHookThenSend checks the order the WithBeforeRetry doc
// promises when a retry waited for a hold: the hook's last run came after
// the hold ended (the 429 was sent at held.at, for a hold of holdFor), and
// the retry reached the server after that run.
func requireLastHookThenSend(t *testing.T, hooks []event, held event, holdFor time.Duration, retry event) {
	t.Helper()
	require.NotEmpty(t, hooks)
	last := hooks[len(hooks)-1]
	assert.GreaterOrEqual(t, last.at.Sub(held.at), holdFor, "the hook's last run came after the hold ended")
	assert.Greater(t, last.seq, held.seq)
	assert.Greater(t, retry.seq, last.seq, "the retry was sent after the hook's last run")
	assert.GreaterOrEqual(t, retry.at.Sub(held.at), holdFor, "the retry was sent after the hold")
}

// A retry whose host another request's 429 holds during its backoff runs
// its WithBeforeRetry hook once, after the hold, right before it is sent.
func TestHookRunsAfterTheHostsHold(t *testing.T) {
	var c clock
	s := newRecServer(t, &c, "1")
	hooks := &hookLog{c: &c}
	var held event
	var tr *retryhttp.Transport
	tr = retryhttp.New(nil, retryhttp.WithPolicy(fast),
		retryhttp.WithObserver(func(a retryhttp.Attempt) {
			if a.Retry && a.Request.Header.Get("X-Fail") != "" {
				held = hold(t, tr, s, "") // during the backoff, the host gets held
			}
		}),
		retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
			hooks.ran()
			next.Header.Del("X-Fail")
			return nil
		}))
	req := mustReq(t, http.MethodGet, s.URL, nil)
	req.Header.Set("X-Fail", "1")
	resp, err := tr.RoundTrip(req) // in the test's goroutine, where the observer's hold may fail the test
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	arrived := s.arrivals()
	require.Len(t, arrived, 3, "the attempt, the 429, the retry")
	require.Len(t, hooks.all(), 1)
	requireLastHookThenSend(t, hooks.all(), held, time.Second, arrived[2])
}

// A hook that moves the retry to another host that is held: the retry
// waits for that host's hold, then the hook runs again (it ran twice in
// all), and the retry goes out after that second run, with what it made.
func TestHookThatFailsOverToAHeldHostRunsAgainAfterItsHold(t *testing.T) {
	var c clock
	a := newRecServer(t, &c, "1")
	b := newRecServer(t, &c, "1")
	hooks := &hookLog{c: &c}
	tr := retryhttp.New(nil, retryhttp.WithPolicy(fast),
		retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
			hooks.ran()
			moveTo(next, b)
			next.Header.Del("X-Fail")
			next.Header.Set("Authorization", fmt.Sprintf("signed-%d", len(hooks.all())))
			return nil
		}))
	held := hold(t, tr, b, "") // b is held for 1 s
	req := mustReq(t, http.MethodGet, a.URL, nil)
	req.Header.Set("X-Fail", "1")
	resp, err := roundTrip(t, tr, req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	arrived := b.arrivals()
	require.Len(t, arrived, 2, "the 429, the retry")
	assert.Len(t, hooks.all(), 2, "before the wait for b, and after it")
	requireLastHookThenSend(t, hooks.all(), held, time.Second, arrived[1])
	assert.Equal(t, "signed-2", b.lastAuth(), "the retry carries what the last run made")
}

// WithBeforeRetry's doc: when the hook moves the retry to a host whose
// hold outlasts MaxRetryAfter, the request ends with ErrThrottled although
// the hook ran (once: it is not run again for a retry that is refused),
// and nothing reaches that host.
func TestHookMovingTheRetryToAHostHeldTooLongRanOnce(t *testing.T) {
	var c clock
	a := newRecServer(t, &c, "30")
	b := newRecServer(t, &c, "30")
	var hooks atomic.Int32
	tr := retryhttp.New(nil, retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond, MaxRetryAfter: time.Second}),
		retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
			hooks.Add(1)
			moveTo(next, b)
			return nil
		}))
	hold(t, tr, b, "") // b is held for 30 s
	req := mustReq(t, http.MethodGet, a.URL, nil)
	req.Header.Set("X-Fail", "1")
	_, err := roundTrip(t, tr, req)
	require.ErrorIs(t, err, retryhttp.ErrThrottled)
	var rerr *retryhttp.Error
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, 1, rerr.Attempts, "the attempt to a; the retry was not sent")
	assert.Equal(t, int32(1), hooks.Load(), "the hook ran once, for the retry that b then refused")
	assert.Len(t, a.arrivals(), 1)
	assert.Len(t, b.arrivals(), 1, "only the 429 that holds b")
}

// With WithHoldKey, a hook that changes the request's credential to one
// whose scope is held: the retry waits for that scope's hold, then the
// hook runs again, and the retry goes out after that run.
func TestHookThatChangesTheHoldKeyRunsAgainAfterTheNewKeysHold(t *testing.T) {
	var c clock
	s := newRecServer(t, &c, "1")
	hooks := &hookLog{c: &c}
	tr := retryhttp.New(nil, retryhttp.WithPolicy(fast),
		retryhttp.WithHoldKey(func(r *http.Request) string { return r.Header.Get("Authorization") }),
		retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
			hooks.ran()
			next.Header.Set("Authorization", "key-2")
			next.Header.Del("X-Fail")
			return nil
		}))
	held := hold(t, tr, s, "key-2") // key-2's scope is held for 1 s
	req := mustReq(t, http.MethodGet, s.URL, nil)
	req.Header.Set("Authorization", "key-1")
	req.Header.Set("X-Fail", "1")
	resp, err := roundTrip(t, tr, req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	arrived := s.arrivals()
	require.Len(t, arrived, 3, "the 429, the attempt, the retry")
	assert.Len(t, hooks.all(), 2, "before the wait for key-2's scope, and after it")
	requireLastHookThenSend(t, hooks.all(), held, time.Second, arrived[2])
}

// heldSignal is a recorder that closes the channel it returns at the first
// EventHeld: an attempt is about to wait for its host.
func heldSignal() (retryhttp.Option, chan struct{}) {
	ch := make(chan struct{})
	var once sync.Once
	return retryhttp.WithRecorder(func(e retryhttp.Event) {
		if e.Kind == retryhttp.EventHeld {
			once.Do(func() { close(ch) })
		}
	}), ch
}

// cancelWhenHeld sends req with a context that is canceled once an attempt
// waits for its held host, and returns RoundTrip's error.
func cancelWhenHeld(t *testing.T, tr http.RoundTripper, held chan struct{}, req *http.Request) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-held:
			cancel()
		case <-ctx.Done():
		}
	}()
	resp, err := roundTrip(t, tr, req.WithContext(ctx))
	if err == nil {
		resp.Body.Close()
	}
	return err
}

// A context canceled while attempt 1 waits for its held host ends the
// request with an *Error whose Waiting is true and Attempts 0, that is
// context.Canceled; the same for a retry waiting for a failover host's
// hold, with Attempts 1.
func TestWaitingWhileHeld(t *testing.T) {
	var c clock
	s := newRecServer(t, &c, "30")
	rec, held := heldSignal()
	tr := retryhttp.New(nil, retryhttp.WithPolicy(fast), rec)
	hold(t, tr, s, "")
	err := cancelWhenHeld(t, tr, held, mustReq(t, http.MethodGet, s.URL, nil))
	var rerr *retryhttp.Error
	require.ErrorAs(t, err, &rerr)
	assert.True(t, rerr.Waiting)
	assert.Equal(t, 0, rerr.Attempts)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Len(t, s.arrivals(), 1, "only the 429")

	// A retry failed over to a held host, canceled while it waits.
	b := newRecServer(t, &c, "30")
	rec, held = heldSignal()
	tr2 := retryhttp.New(nil, retryhttp.WithPolicy(fast), rec,
		retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
			moveTo(next, b)
			return nil
		}))
	hold(t, tr2, b, "")
	req := mustReq(t, http.MethodGet, s.URL, nil)
	req.Header.Set("X-Fail", "1")
	err = cancelWhenHeld(t, tr2, held, req)
	require.ErrorAs(t, err, &rerr)
	assert.True(t, rerr.Waiting, "%v", err)
	assert.Equal(t, 1, rerr.Attempts)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Len(t, b.arrivals(), 1, "only the 429")
}

// WithHoldKey scopes: one key's 429 does not hold another's, the empty
// key is a scope of its own, and a nil func means one hold per host.
func TestHoldKeyScopes(t *testing.T) {
	var c clock
	s := newRecServer(t, &c, "60") // far longer than the test
	tr := retryhttp.New(nil, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 1}),
		retryhttp.WithHoldKey(func(r *http.Request) string { return r.Header.Get("Authorization") }))
	hold(t, tr, s, "k1")
	send := func(tr http.RoundTripper, auth string) error {
		req := mustReq(t, http.MethodGet, s.URL, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := roundTrip(t, tr, req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	assert.ErrorIs(t, send(tr, "k1"), retryhttp.ErrThrottled)
	assert.NoError(t, send(tr, "k2"))
	assert.NoError(t, send(tr, ""))
	hold(t, tr, s, "")
	assert.ErrorIs(t, send(tr, ""), retryhttp.ErrThrottled)
	assert.NoError(t, send(tr, "k2"))

	tr2 := retryhttp.New(nil, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 1}), retryhttp.WithHoldKey(nil))
	hold(t, tr2, s, "k1")
	assert.ErrorIs(t, send(tr2, "k2"), retryhttp.ErrThrottled, "nil: one hold per host")
}

// WithHoldKey: "The number of keys kept is bounded like the number of
// hosts." A key of its own for every request (2 KiB long, so that the keys
// weigh more than the heap's noise), every response announcing a quota:
// the heap kept after 6000 keys is not four times what 1500 keys kept, as
// it would be if every key were kept.
func TestHoldKeysKeptAreBounded(t *testing.T) {
	base := rtFunc(func(r *http.Request) (*http.Response, error) {
		return quotaResp(r, 200, "100", "50", "60"), nil
	})
	tr := retryhttp.New(base, retryhttp.WithHoldKey(func(r *http.Request) string { return r.Header.Get("X-Key") }))
	var n int
	send := func(k int) {
		for range k {
			n++
			req := mustReq(t, http.MethodGet, "http://api.example/x", nil)
			req.Header.Set("X-Key", fmt.Sprintf("%02048d", n))
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			resp.Body.Close()
		}
	}
	heap := func() int64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC() // and what sync.Pools held
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	h0 := heap()
	send(1500)
	h1 := heap() - h0
	send(4500)
	h2 := heap() - h0
	t.Logf("heap kept: %d KiB after 1500 keys, %d KiB after 6000", h1>>10, h2>>10)
	require.Greater(t, h1, int64(1<<20), "keys are kept")
	assert.Less(t, h2, 2*h1, "the keys kept are bounded")
	runtime.KeepAlive(tr)
}
