package retryhttp

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowFirst answers the first copy after slow (or when the client gives
// up on it, which it records), and every other at once. A first copy that
// must lose to its hedge gets a slow of a minute: only the hedge can answer
// in time, however late a busy machine runs the hedge's timer. Copies are told
// apart by the attempt number that hedgeTransport sends with each (the
// order in which they arrive, on a loaded machine, can put a hedge before
// the first copy it follows), and otherwise by that order.
type slowFirst struct {
	*upstream
	canceled atomic.Int32 // slow requests the client canceled
}

func newSlowFirst(t *testing.T, slow time.Duration, status func(n int) int) *slowFirst {
	s := &slowFirst{}
	s.upstream = newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if tag, err := strconv.Atoi(r.Header.Get(attemptHeader)); err == nil {
			n = tag
		}
		if n == 1 {
			select {
			case <-time.After(slow):
			case <-r.Context().Done():
				s.canceled.Add(1)
				return
			}
		}
		w.Header().Set("X-Attempt", strconv.Itoa(n))
		w.WriteHeader(status(n))
		_, _ = io.WriteString(w, "copy "+strconv.Itoa(n))
	})
	return s
}

func ok(int) int { return http.StatusOK }

// attemptHeader carries each attempt's number to a test server.
const attemptHeader = "X-Test-Attempt"

// hedgeTransport is realTransport over a base that tags each attempt
// with its number (AttemptFromContext) in attemptHeader. It has no budget
// unless opts give one: a fresh Transport's requests have earned no hedge.
func hedgeTransport(t *testing.T, opts ...Option) *Transport {
	base := cleanhttp.DefaultPooledTransport()
	t.Cleanup(base.CloseIdleConnections)
	return New(attemptTagger{base}, append([]Option{WithBudget(nil)}, opts...)...)
}

type attemptTagger struct{ base http.RoundTripper }

func (a attemptTagger) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context()) // a RoundTripper does not modify its request
	r.Header.Set(attemptHeader, strconv.Itoa(AttemptFromContext(r.Context())))
	return a.base.RoundTrip(r)
}

func TestAHedgeWinsOverASlowFirstCopy(t *testing.T) {
	up := newSlowFirst(t, time.Minute, ok)
	m, _ := newTestMetrics(t)
	var seen []Attempt
	tr := hedgeTransport(t, WithHedging(Hedging{Delay: 50 * time.Millisecond}), WithMetrics(m),
		WithObserver(func(a Attempt) { seen = append(seen, a) }))
	start := time.Now()
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
	require.NoError(t, err)
	assert.Equal(t, "copy 2", readAll(t, resp), "the hedge's answer")
	// The first copy answers after a minute unless canceled: RoundTrip did
	// not wait for it (a guard, three orders of magnitude above the Delay).
	assert.Less(t, time.Since(start), 10*time.Second, "RoundTrip waited for the first copy")
	assert.Eventually(t, func() bool { return up.canceled.Load() == 1 }, 5*time.Second, time.Millisecond,
		"the slow copy was canceled, not left running to its end")

	require.Len(t, seen, 2)
	slices.SortFunc(seen, func(a, b Attempt) int { return a.Number - b.Number })
	assert.ErrorIs(t, seen[0].Err, ErrHedgeLost, "the first copy lost the race")
	assert.False(t, seen[0].Hedge)
	assert.True(t, seen[1].Hedge, "the winner is a hedge")
	assert.Equal(t, 200, seen[1].Response.StatusCode)
	assert.Equal(t, 2, AttemptFromContext(seen[1].Request.Context()))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.hedges.WithLabelValues("GET")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.wins.WithLabelValues("GET")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.requests.WithLabelValues("GET", "ok")))
}

func TestNoHedgeWhenTheFirstCopyAnswersInTime(t *testing.T) {
	up := newUpstream(t, statuses(200))
	m, _ := newTestMetrics(t)
	tr := hedgeTransport(t, WithHedging(Hedging{Delay: time.Minute}), WithMetrics(m)) // never due
	for range 5 {
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
		require.NoError(t, err)
		readAll(t, resp)
	}
	assert.Equal(t, int32(5), up.attempts.Load())
	assert.Zero(t, testutil.CollectAndCount(m.hedges))
}

// In memory, hedging costs one allocation when no hedge is sent: the
// hedgeRound.
func TestAnUnsentHedgeAllocatesOnce(t *testing.T) {
	base := staticRT{&http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}}
	req := mustRequest(t, http.MethodGet, "http://example.invalid/", nil)
	plain := New(base)
	hedged := New(base, WithHedging(Hedging{Delay: time.Minute}))
	extra := allocsPerRun(t, 500, func() { _, _ = hedged.RoundTrip(req) }) -
		allocsPerRun(t, 500, func() { _, _ = plain.RoundTrip(req) })
	assert.Equal(t, 1.0, extra)
}

func TestOnlySafeRequestsAreHedged(t *testing.T) {
	tests := []struct {
		name   string
		req    func(url string) *http.Request
		hedged bool
	}{
		{"GET", func(u string) *http.Request { return mustRequest(t, http.MethodGet, u, nil) }, true},
		{"PUT with GetBody", func(u string) *http.Request { return mustRequest(t, http.MethodPut, u, strings.NewReader("v")) }, true},
		{"POST with an idempotency key", func(u string) *http.Request {
			r := mustRequest(t, http.MethodPost, u, strings.NewReader("v"))
			r.Header.Set("Idempotency-Key", "k")
			return r
		}, true},
		{"POST marked idempotent", func(u string) *http.Request {
			r := mustRequest(t, http.MethodPost, u, strings.NewReader("v"))
			return r.WithContext(ContextWithIdempotent(r.Context()))
		}, true},
		{"POST", func(u string) *http.Request { return mustRequest(t, http.MethodPost, u, strings.NewReader("v")) }, false},
		{"PUT streamed without GetBody", func(u string) *http.Request {
			return mustRequest(t, http.MethodPut, u, onlyReader{strings.NewReader("v")})
		}, false},
		{"GET without retries", func(u string) *http.Request {
			return mustRequest(t, http.MethodGet, u, nil).WithContext(ContextWithoutRetries(context.Background()))
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A request that must be hedged is answered by its hedge only
			// (its first copy would take a minute); one that must not gets
			// 300 ms for a wrongful hedge to show.
			slow := 300 * time.Millisecond
			if tt.hedged {
				slow = time.Minute
			}
			up := newSlowFirst(t, slow, ok)
			tr := hedgeTransport(t, WithHedging(Hedging{Delay: 20 * time.Millisecond}))
			resp, err := tr.RoundTrip(tt.req(up.URL))
			require.NoError(t, err)
			readAll(t, resp)
			want := map[bool]int32{true: 2, false: 1}[tt.hedged]
			assert.Equal(t, want, up.attempts.Load())
			for _, h := range up.bodyHashes()[1:] {
				assert.Equal(t, up.bodyHashes()[0], h, "the hedge carried the same body")
			}
		})
	}
}

func TestWhenEveryCopyFailsTheRetriesGoOn(t *testing.T) {
	// The first copy fails once its hedge has failed (each 503): a
	// retryable failure of one copy does not cancel the other. The next
	// hedge could follow only a Delay (500 ms) after the failed one, far
	// more than it takes to read the first copy's 503 that follows it at
	// once: both have failed, and the retry follows; MaxAttempts counts
	// both copies.
	hedgeFailed := make(chan struct{})
	var hedgeOnce sync.Once
	var firstCanceled atomic.Int32
	var up *upstream
	up = newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if tag, err := strconv.Atoi(r.Header.Get(attemptHeader)); err == nil {
			n = tag
		}
		switch n {
		case 1:
			select {
			case <-hedgeFailed:
			case <-r.Context().Done():
				firstCanceled.Add(1)
				return
			}
		case 2:
			defer hedgeOnce.Do(func() { close(hedgeFailed) }) // once its 503 is written
		}
		code := http.StatusServiceUnavailable
		if n > 2 {
			code = http.StatusOK
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "copy "+strconv.Itoa(n))
	})
	var mu sync.Mutex
	var seen []Attempt
	tr := hedgeTransport(t, WithHedging(Hedging{Delay: 500 * time.Millisecond}),
		WithPolicy(Policy{MaxAttempts: 3, BaseDelay: time.Millisecond}),
		WithObserver(func(a Attempt) { mu.Lock(); seen = append(seen, a); mu.Unlock() }))
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
	require.NoError(t, err)
	assert.Equal(t, "copy 3", readAll(t, resp))
	assert.Equal(t, int32(3), up.attempts.Load())
	assert.Zero(t, firstCanceled.Load(), "the first copy's failure was awaited, not canceled")
	mu.Lock()
	got := slices.Clone(seen)
	mu.Unlock()
	seen = got
	require.Len(t, seen, 3)
	slices.SortFunc(seen, func(a, b Attempt) int { return a.Number - b.Number })
	assert.Equal(t, []bool{false, true, false}, []bool{seen[0].Hedge, seen[1].Hedge, seen[2].Hedge}, "the third attempt is a retry, not a hedge")
	assert.Equal(t, []int{1, 2, 3}, []int{seen[0].Number, seen[1].Number, seen[2].Number})
	for _, a := range seen[:2] {
		require.NotNil(t, a.Response, "attempt %d", a.Number)
		assert.Equal(t, http.StatusServiceUnavailable, a.Response.StatusCode, "attempt %d failed on its own", a.Number)
	}

	// A failed hedge makes room for another: with hedges 30 ms apart, the
	// third attempt is a hedge sent while the slow copy is out; it wins,
	// and the slow copy is canceled.
	up3 := newSlowFirst(t, time.Minute, func(n int) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	var hedges []bool
	tr3 := hedgeTransport(t, WithHedging(Hedging{Delay: 30 * time.Millisecond}),
		WithPolicy(Policy{MaxAttempts: 3, BaseDelay: time.Millisecond}),
		WithObserver(func(a Attempt) {
			mu.Lock()
			defer mu.Unlock()
			if a.Number == 3 {
				hedges = append(hedges, a.Hedge)
			}
		}))
	resp, err = tr3.RoundTrip(mustRequest(t, http.MethodGet, up3.URL, nil))
	require.NoError(t, err)
	assert.Equal(t, "copy 3", readAll(t, resp))
	mu.Lock()
	assert.Equal(t, []bool{true}, hedges, "the third attempt is a hedge")
	mu.Unlock()
	assert.Eventually(t, func() bool { return up3.canceled.Load() == 1 }, 5*time.Second, time.Millisecond,
		"the slow copy was canceled when the hedge won")

	// With MaxAttempts 2, the hedge took the second attempt: no retry. (The
	// first copy's 503 comes once the hedge is in, whose own 503 is at once.)
	var in2 sync.Once
	hedgeIn := make(chan struct{})
	up2 := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(attemptHeader) == "1" {
			select {
			case <-hedgeIn:
			case <-r.Context().Done():
				return
			}
		} else {
			in2.Do(func() { close(hedgeIn) })
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	tr2 := hedgeTransport(t, WithHedging(Hedging{Delay: 30 * time.Millisecond}), WithPolicy(Policy{MaxAttempts: 2}))
	resp, err = tr2.RoundTrip(mustRequest(t, http.MethodGet, up2.URL, nil))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, int32(2), up2.attempts.Load())
}

func TestAWaitSignalStopsTheHedges(t *testing.T) {
	// Up to two hedges in flight, 500 ms apart. The first hedge is told to
	// wait (429 with Retry-After) at once, far within the 500 ms before the
	// second is due; the first copy answers 1 s after that 429 was written,
	// room for a second hedge to show: none follows.
	const delay = 500 * time.Millisecond
	var rejected sync.Once
	throttled := make(chan struct{})
	up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get(attemptHeader) {
		case "1":
			select {
			case <-throttled:
			case <-r.Context().Done():
				return
			}
			select {
			case <-time.After(2 * delay):
			case <-r.Context().Done():
				return
			}
			_, _ = io.WriteString(w, "copy 1")
		case "2":
			defer rejected.Do(func() { close(throttled) })
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			_, _ = io.WriteString(w, "copy "+r.Header.Get(attemptHeader))
		}
	})
	tr := hedgeTransport(t, WithHedging(Hedging{Delay: delay, MaxHedges: 2}), WithPolicy(Policy{MaxAttempts: 5}))
	up.Config.Handler = wrapRetryAfter(up.Config.Handler)
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
	require.NoError(t, err)
	assert.Equal(t, "copy 1", readAll(t, resp))
	assert.Equal(t, int32(2), up.attempts.Load(), "no hedge after the 429")
}

// wrapRetryAfter sets Retry-After: 1 on every response of h.
func wrapRetryAfter(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		h.ServeHTTP(w, r)
	})
}

func TestHedgesSpendTheBudget(t *testing.T) {
	// In an outage where every attempt is slow and then fails, hedges are
	// paid for like retries: the amplification stays within the budget's.
	up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		time.Sleep(15 * time.Millisecond)
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	tr, _ := newTestTransport(t, WithHedging(Hedging{Delay: 2 * time.Millisecond}))
	withStoppedClock(tr)
	sendAll(t, tr, up.URL, 500)
	amplification := float64(up.attempts.Load()) / 500
	t.Logf("amplification with hedging in an outage: %.3f", amplification)
	assert.LessOrEqual(t, amplification, 1.25)
	assert.Greater(t, amplification, 1.0, "some hedges or retries were paid for")
}

func TestHedgesArePaidOnlyFromWhatRequestsEarned(t *testing.T) {
	// A client with little traffic: every request is slow enough to be
	// hedged. The budget's floor pays for retries of failures, never for
	// hedges: hedging adds at most Ratio (0.2) of the requests, not the
	// floor's retries on top.
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if AttemptFromContext(r.Context()) == 1 {
			// Slow: 20 times the hedging delay, or until a hedge wins. (A
			// busy machine can only make hedges fewer, never more.)
			select {
			case <-r.Context().Done():
				return nil, r.Context().Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}, nil
	})
	var hedges, refusals atomic.Int32
	tr := New(base, WithHedging(Hedging{Delay: time.Millisecond}), WithRecorder(func(e Event) {
		switch e.Kind {
		case EventHedge:
			hedges.Add(1)
		case EventBudgetRefusal:
			refusals.Add(1)
		}
	}))
	const requests = 50
	for range requests {
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://example.invalid/", nil))
		require.NoError(t, err)
		resp.Body.Close()
	}
	t.Logf("%d hedges for %d requests", hedges.Load(), requests)
	assert.LessOrEqual(t, int(hedges.Load()), requests/5, "at most Ratio of the requests")
	assert.Positive(t, hedges.Load(), "the requests earned some")
	assert.Zero(t, refusals.Load(), "a hedge the budget does not pay for is not a refusal: no retry was refused")
}

func TestHedgeLosersLeaveNothingBehind(t *testing.T) {
	// 1000 hedged requests, a fifth of them slow: the losing copies are
	// canceled, their bodies closed, and goroutines and connections come
	// back to where they were.
	before := runtime.NumGoroutine()
	var open atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rand.IntN(5) == 0 {
			select {
			case <-time.After(time.Second):
			case <-r.Context().Done():
				return
			}
		}
		_, _ = io.WriteString(w, strings.Repeat("x", 100))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	base := cleanhttp.DefaultPooledTransport()
	tr := New(base, WithHedging(Hedging{Delay: 5 * time.Millisecond}), WithBudget(nil))
	var wg sync.WaitGroup
	var next atomic.Int32
	for range 20 {
		wg.Go(func() {
			for next.Add(1) <= 1000 {
				resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, srv.URL, nil))
				if assert.NoError(t, err) {
					assert.Len(t, readAll(t, resp), 100)
				}
			}
		})
	}
	wg.Wait()
	base.CloseIdleConnections()
	assert.Eventually(t, func() bool { base.CloseIdleConnections(); return open.Load() == 0 }, 10*time.Second, 10*time.Millisecond,
		"connections left open: %d", open.Load())
	srv.Close()
	waitForGoroutines(t, before)
}

func TestAdaptiveDelayNeedsAHundredObservations(t *testing.T) {
	up := newUpstream(t, statuses(200))
	m, _ := newTestMetrics(t)
	tr := hedgeTransport(t, WithHedging(Hedging{}), WithMetrics(m))
	k := hostKey{scheme: "http", host: strings.TrimPrefix(up.URL, "http://")}
	for i := range 120 {
		assert.Equal(t, i >= 100, tr.hedge.latencies.delay(k) > 0, "after %d observations", i)
		if i == 100 {
			assert.Zero(t, testutil.CollectAndCount(m.hedges), "no hedge before the hundredth observation")
		}
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
		require.NoError(t, err)
		readAll(t, resp)
	}
	// At the 95th percentile, about one request in twenty waits past the
	// delay and is hedged; how many of the last 20 were depends on the
	// machine (a busy one delays more of them), so it is not asserted.
}

func TestLatencyHistogram(t *testing.T) {
	for _, d := range []time.Duration{0, time.Microsecond, latencyMin, 2 * time.Millisecond, 300 * time.Millisecond, time.Hour} {
		i := latencyBucket(d)
		if i < latencyBuckets-1 {
			assert.GreaterOrEqual(t, latencyBound(i), d, "%v fits its bucket", d)
		}
		if i > 0 {
			assert.Less(t, latencyBound(i-1), d, "%v is in the first bucket that fits", d)
		}
	}
	for i := 1; i < latencyBuckets; i++ {
		assert.LessOrEqual(t, float64(latencyBound(i)), 1.19*float64(latencyBound(i-1)), "buckets grow by 2^(1/4)")
	}
	var l latencies
	l.percentile = 0.95
	k := hostKey{scheme: "http", host: "example.invalid"}
	for i := range 1000 {
		d := 2 * time.Millisecond
		if i%100 < 10 { // 10% at 50 ms
			d = 50 * time.Millisecond
		}
		l.observe(k, d)
	}
	p95 := l.delay(k)
	assert.GreaterOrEqual(t, p95, 50*time.Millisecond)
	assert.LessOrEqual(t, p95, 60*time.Millisecond)
	for range 2000 { // the host got fast: two generations later the estimate follows
		l.observe(k, 2*time.Millisecond)
	}
	assert.LessOrEqual(t, l.delay(k), 3*time.Millisecond)

	for i := range 2 * latencyHosts {
		l.observe(hostKey{scheme: "http", host: "host" + strconv.Itoa(i)}, time.Millisecond)
	}
	assert.LessOrEqual(t, int(l.hosts.n.Load()), latencyHosts, "hosts are bounded")
}

func TestHedgingOptionsAreValidated(t *testing.T) {
	for _, h := range []Hedging{{Delay: -1}, {MaxHedges: -1}, {Percentile: 1}, {Percentile: -0.5}} {
		_, err := New(nil, WithHedging(h)).RoundTrip(mustRequest(t, http.MethodGet, "http://127.0.0.1:1/", nil))
		var perr *PolicyError
		require.ErrorAs(t, err, &perr, "%+v", h)
		assert.Contains(t, perr.Field, "Hedging.")
	}
}

func TestHedgingWithAnAttemptTimeout(t *testing.T) {
	// The first copy hangs; its hedge, sent after 30 ms, answers; the
	// attempt timeout of the first copy (500 ms) does not cut the
	// hedge's answer, nor the body the caller reads.
	up := newSlowFirst(t, time.Minute, ok)
	var seen []Attempt
	tr := hedgeTransport(t, WithHedging(Hedging{Delay: 30 * time.Millisecond}),
		WithPolicy(Policy{AttemptTimeout: 500 * time.Millisecond}),
		WithObserver(func(a Attempt) { seen = append(seen, a) }))
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
	require.NoError(t, err)
	time.Sleep(600 * time.Millisecond) // past both attempt timeouts
	assert.Equal(t, "copy 2", readAll(t, resp))
	require.Len(t, seen, 2)
}
