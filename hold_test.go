package retryhttp

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEveryWaitSignalIsHonored(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	s := time.Second
	tests := []struct {
		name   string
		status int
		h      map[string]string
		asked  time.Duration
	}{
		{"429 Retry-After", 429, map[string]string{"Retry-After": "4"}, 4 * s},
		{"503 retry-after-ms", 503, map[string]string{"Retry-After-Ms": "2500"}, 2500 * time.Millisecond},
		{"503 x-ms-retry-after-ms", 503, map[string]string{"X-Ms-Retry-After-Ms": "700"}, 700 * time.Millisecond},
		{"429 RateLimit r=0", 429, map[string]string{"Ratelimit": `"default";r=0;t=9`}, 9 * s},
		{"429 GitHub", 429, map[string]string{"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": strconv.FormatInt(now.Add(5*s).Unix(), 10)}, 5 * s},
		{"403 GitHub primary limit", 403, map[string]string{"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": strconv.FormatInt(now.Add(6*s).Unix(), 10)}, 6 * s},
		{"502 older drafts", 502, map[string]string{"Ratelimit-Remaining": "0", "Ratelimit-Reset": "3"}, 3 * s},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					for k, v := range tt.h {
						w.Header().Set(k, v)
					}
					w.WriteHeader(tt.status)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			var seen []Attempt
			tr, clock := newTestTransport(t, WithObserver(func(a Attempt) { seen = append(seen, a) }))
			clock.t = now
			resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
			require.NoError(t, err)
			readAll(t, resp)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			waits := clock.recorded()
			require.NotEmpty(t, waits)
			assert.GreaterOrEqual(t, waits[0], tt.asked, "never back before the server said")
			assert.LessOrEqual(t, waits[0], tt.asked+max(tt.asked/10, DefaultBaseDelay))
			require.Len(t, seen, 2)
			assert.True(t, seen[0].ServerWait)
		})
	}
}

func TestA403IsFinalUnlessItIsARateLimit(t *testing.T) {
	for _, remaining := range []string{"", "1", "0 "} {
		up := newUpstream(t, func(n int, w http.ResponseWriter, _ *http.Request) {
			if remaining != "" {
				w.Header().Set("X-Ratelimit-Remaining", remaining)
			}
			w.WriteHeader(http.StatusForbidden)
		})
		tr, _ := newTestTransport(t)
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
		require.NoError(t, err)
		readAll(t, resp)
		want := int32(1)
		if remaining == "0 " {
			want = 3 // a throttle: retried like a 429 (with backoff, since no reset is given)
		}
		assert.Equal(t, want, up.attempts.Load(), "X-RateLimit-Remaining %q", remaining)
	}
}

// realTransport is a Transport on the real clock, over a fresh pooled base.
func realTransport(t *testing.T, opts ...Option) *Transport {
	base := cleanhttp.DefaultPooledTransport()
	t.Cleanup(base.CloseIdleConnections)
	return New(base, opts...)
}

func TestA429WithAResetHoldsTheHost(t *testing.T) {
	// GitHub's answer when the quota is spent: 429, nothing left, a reset
	// 2 s ahead. The request is retried once, after the reset; requests to
	// the same host meanwhile wait for it instead of meeting a certain 429.
	var mu sync.Mutex
	var resetAt time.Time
	var arrivals []time.Time
	up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		arrivals = append(arrivals, time.Now())
		if n == 1 {
			resetAt = time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
			w.Header().Set("X-Ratelimit-Remaining", "0")
			w.Header().Set("X-Ratelimit-Reset", strconv.FormatInt(resetAt.Unix(), 10))
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	var held atomic.Int64
	throttled := make(chan struct{}, 2) // an attempt got its 429, and the Transport has read it
	tr := realTransport(t, WithObserver(func(a Attempt) {
		if a.Held > 0 {
			held.Add(1)
		}
		if a.Response != nil && a.Response.StatusCode == http.StatusTooManyRequests {
			throttled <- struct{}{} // observers run after the answer's quota is learned
		}
	}))
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL+"/first", nil))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	<-throttled

	// The first request's retry is done. Others sent while the host was
	// held have waited for the reset too: send three once the Transport
	// has read a fresh 429 (not merely once the server has answered it:
	// the client may not have read it yet) and check that none arrives
	// before the reset.
	up.attempts.Store(0)
	mu.Lock()
	arrivals = nil
	mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() {
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL+"/again", nil))
		if assert.NoError(t, err) {
			readAll(t, resp)
		}
	})
	<-throttled
	for range 3 {
		wg.Go(func() {
			resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL+"/other", nil))
			if assert.NoError(t, err) {
				readAll(t, resp)
				assert.Equal(t, http.StatusOK, resp.StatusCode)
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, arrivals, 5, "the 429, its one retry, and the three others once each")
	for i, at := range arrivals[1:] {
		assert.False(t, at.Before(resetAt), "arrival %d at %v, before the reset at %v", i+2, at, resetAt)
	}
	assert.Equal(t, int64(3), held.Load(), "the three others were held")
}

func TestARequestHeldPastItsDeadlineIsNotSent(t *testing.T) {
	up := newUpstream(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	var last Attempt
	// The injected clock stands still, at the real time (the caller's
	// deadline is on the real clock): "at once" is "without a wait".
	tr, clock := newTestTransport(t, WithPolicy(Policy{MaxRetryAfter: time.Minute}), WithObserver(func(a Attempt) { last = a }))
	clock.t = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx))
	require.NoError(t, err, "the 429 itself comes back: its wait would pass the deadline")
	readAll(t, resp)

	body := &closeTracker{Reader: strings.NewReader("x")}
	req := mustRequest(t, http.MethodPut, up.URL+"/next", onlyReader{body}).WithContext(ctx)
	req.Body = body
	_, err = tr.RoundTrip(req)
	assert.Empty(t, clock.recorded(), "at once: no wait was started")
	require.ErrorIs(t, err, ErrThrottled)
	var te *ThrottledError
	require.ErrorAs(t, err, &te)
	assert.WithinDuration(t, clock.now().Add(30*time.Second), te.Until, time.Second, "it says until when")
	assert.Contains(t, err.Error(), "not sent")
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, ReasonThrottled, rerr.Reason)
	assert.Equal(t, 0, rerr.Attempts)
	assert.Equal(t, int32(1), up.attempts.Load(), "without touching the network")
	assert.Equal(t, int32(1), body.closes.Load())
	assert.Equal(t, ReasonThrottled, last.Reason, "observers see it")
	assert.ErrorIs(t, last.Err, ErrThrottled)

	// A request without retries never waits for a host: it fails fast.
	_, err = tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ContextWithoutRetries(context.Background())))
	assert.ErrorIs(t, err, ErrThrottled)
	assert.Equal(t, int32(1), up.attempts.Load())
}

func TestA503WithRetryAfterHoldsOnlyItsRequest(t *testing.T) {
	up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/busy" {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	tr, clock := newTestTransport(t, WithPolicy(Policy{MaxRetryAfter: time.Second}))
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL+"/busy", nil))
	require.NoError(t, err)
	readAll(t, resp)
	require.Empty(t, clock.recorded(), "the 503's 30 s are past MaxRetryAfter: returned, not waited")
	resp, err = tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL+"/other", nil))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, clock.recorded(), "not held: no wait before /other")
}

func TestASuccessfulResponseThatSpendsTheQuotaHoldsTheHost(t *testing.T) {
	// A 200 may say it was the last one: RateLimit r=0. The next request
	// waits for the reset (or fails fast without retries).
	up := newUpstream(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Ratelimit", `"default";r=0;t=40`)
		w.WriteHeader(http.StatusOK)
	})
	tr, clock := newTestTransport(t)
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
	require.NoError(t, err)
	readAll(t, resp)
	resp, err = tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
	require.NoError(t, err)
	readAll(t, resp)
	require.Len(t, clock.recorded(), 1)
	assert.GreaterOrEqual(t, clock.recorded()[0], 40*time.Second, "held until the reset")
	assert.Equal(t, int32(2), up.attempts.Load())
}

func TestHeldRequestsAreReleasedSpreadOut(t *testing.T) {
	tr, clock := newTestTransport(t)
	start := clock.now()
	h := tr.hosts.getOrAdd(hostKey{scheme: "http", host: "example.invalid"}, start)
	h.answered(false, &signals{}, start.Add(10*time.Second), start)
	req := mustRequest(t, http.MethodGet, "http://example.invalid/", nil)
	seen := map[time.Duration]bool{}
	for range 50 {
		clock.t = start // every request comes at the same instant
		c := call{req: req, ctx: req.Context(), p: &tr.policy}
		a := attempt{number: 1, out: req}
		s, err := tr.admit(&c, &a)
		require.Equal(t, stopNone, s, "%v", err)
		assert.GreaterOrEqual(t, a.held, 10*time.Second, "never before the hold ends")
		assert.LessOrEqual(t, a.held, 11*time.Second)
		seen[a.held] = true
		a.release()
	}
	assert.Greater(t, len(seen), 40, "50 held requests come back at many instants, not one")
}

func TestHostStateIsBounded(t *testing.T) {
	var hs hosts
	now := time.Now()
	for i := range 3 * maxHosts {
		h := hs.getOrAdd(hostKey{scheme: "https", host: "host" + strconv.Itoa(i)}, now)
		h.answered(false, &signals{quota: true, remaining: 10, reset: time.Hour, limit: -1}, time.Time{}, now)
	}
	assert.LessOrEqual(t, int(hs.n.Load()), maxHosts)
	assert.NotNil(t, hs.get(hostKey{scheme: "https", host: "host" + strconv.Itoa(3*maxHosts-1)}), "the newest is kept")
}

func TestNoHostStateAllocatesNothing(t *testing.T) {
	tr := New(staticRT{&http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{"Content-Type": {"text/plain"}}}})
	req := mustRequest(t, http.MethodGet, "http://example.invalid/", nil)
	assert.Zero(t, allocsPerRun(t, 200, func() { _, _ = tr.RoundTrip(req) }))
	assert.Zero(t, tr.hosts.n.Load())
}

// quotaServer enforces a quota of limit requests per window (fixed windows
// aligned on the clock) and announces it, with the draft's RateLimit and
// RateLimit-Policy or, when github is set, GitHub's X-RateLimit-* with the
// reset in epoch seconds. Requests over the quota get 429.
type quotaServer struct {
	*httptest.Server
	limit  int
	window time.Duration
	github bool

	mu        sync.Mutex
	current   time.Time
	used      int
	worst     int // the most arrivals over the quota in one window
	arrived   atomic.Int64
	throttled atomic.Int64
}

func newQuotaServer(t testing.TB, limit int, window time.Duration, github bool) *quotaServer {
	q := &quotaServer{limit: limit, window: window, github: github}
	q.Server = httptest.NewServer(http.HandlerFunc(q.serve))
	t.Cleanup(q.Close)
	return q
}

func (q *quotaServer) serve(w http.ResponseWriter, _ *http.Request) {
	now := time.Now()
	start := now.Truncate(q.window)
	end := start.Add(q.window)
	q.mu.Lock()
	if !start.Equal(q.current) {
		q.current, q.used = start, 0
	}
	q.used++
	remaining := q.limit - q.used
	q.worst = max(q.worst, -remaining)
	q.mu.Unlock()
	q.arrived.Add(1)
	over := remaining < 0
	remaining = max(remaining, 0)
	if q.github {
		w.Header().Set("X-Ratelimit-Limit", strconv.Itoa(q.limit))
		w.Header().Set("X-Ratelimit-Remaining", strconv.Itoa(remaining))
		w.Header().Set("X-Ratelimit-Reset", strconv.FormatInt(int64(math.Ceil(float64(end.UnixNano())/1e9)), 10))
	} else {
		reset := int(math.Ceil(end.Sub(now).Seconds()))
		w.Header().Set("Ratelimit", fmt.Sprintf(`"default";r=%d;t=%d`, remaining, reset))
		w.Header().Set("Ratelimit-Policy", fmt.Sprintf(`"default";q=%d;w=%d`, q.limit, int(q.window/time.Second)))
	}
	if over {
		q.throttled.Add(1)
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	_, _ = io.WriteString(w, "ok")
}

// sendConcurrently sends n GETs from g goroutines and returns how many got
// a 200.
func sendConcurrently(tr http.RoundTripper, url string, g, n int) (ok int64) {
	var wg sync.WaitGroup
	var got atomic.Int64
	var next atomic.Int64
	for range g {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := tr.RoundTrip(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						got.Add(1)
					}
				}
				cancel()
			}
		})
	}
	wg.Wait()
	return got.Load()
}

func TestAnnouncedQuotaIsKept(t *testing.T) {
	// 20 goroutines, 400 GETs, a quota of 50 requests per 2 s window: every
	// request succeeds, and no window gets more than 20 arrivals over the
	// quota, one per goroutine: a goroutine's own 429 holds the host until
	// the window's end. How few are answered 429 (none or nearly on an idle
	// machine, more when the goroutines that read answers run late) is
	// measured by BenchmarkQuota, with the hold and without.
	if testing.Short() {
		t.Skip("takes about 16 s: 8 windows of 2 s")
	}
	for _, github := range []bool{false, true} {
		t.Run(map[bool]string{false: "RateLimit", true: "X-RateLimit"}[github], func(t *testing.T) {
			t.Parallel()
			q := newQuotaServer(t, 50, 2*time.Second, github)
			tr := realTransport(t, WithPolicy(Policy{MaxAttempts: 6}))
			ok := sendConcurrently(tr, q.URL, 20, 400)
			arrived, throttled := q.arrived.Load(), q.throttled.Load()
			t.Logf("%d of 400 succeeded; %d arrived at the server, %d answered 429 (%.1f%%)",
				ok, arrived, throttled, 100*float64(throttled)/float64(arrived))
			assert.Equal(t, int64(400), ok, "every request succeeds")
			q.mu.Lock()
			defer q.mu.Unlock()
			assert.LessOrEqual(t, q.worst, 20, "arrivals over the quota in one window: at most one per goroutine")
		})
	}
}
