package retryhttp

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// capacityLimit is a server of fixed capacity: it serves capacity
// requests in each second of its clock and answers a bare 429 (no
// Retry-After, no quota fields) to every request beyond; it logs when each
// came and how it was answered.
type capacityLimit struct {
	mu       sync.Mutex
	now      func() time.Time
	capacity int
	window   time.Time
	served   int
	log      []served // every request, in order
}

type served struct {
	at   time.Time
	code int
}

// answer answers one request, now.
func (l *capacityLimit) answer() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if w := now.Truncate(time.Second); w != l.window {
		l.window, l.served = w, 0
	}
	code := http.StatusOK
	if l.served >= l.capacity {
		code = http.StatusTooManyRequests
	} else {
		l.served++
	}
	l.log = append(l.log, served{now, code})
	return code
}

func (l *capacityLimit) setCapacity(n int) {
	l.mu.Lock()
	l.capacity = n
	l.mu.Unlock()
}

// answered returns how many requests it has answered.
func (l *capacityLimit) answered() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.log)
}

// share returns, over [from, to), the share of requests answered 429 and
// the 200s per second.
func (l *capacityLimit) share(from, to time.Time) (throttled, goodput float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, bad := 0, 0
	for _, r := range l.log {
		if !r.at.Before(from) && r.at.Before(to) {
			n++
			if r.code == http.StatusTooManyRequests {
				bad++
			}
		}
	}
	return float64(bad) / float64(max(n, 1)), float64(n-bad) / to.Sub(from).Seconds()
}

// capacityBase is a capacityLimit on the fake clock, in memory.
type capacityBase struct{ capacityLimit }

func (b *capacityBase) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: b.answer(), Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

// offer sends requests through tr, without retries, from one goroutine:
// the i-th arrives at i/rate seconds of the fake clock and is sent then,
// or once the one before it was, when the adaptive rate made that one wait
// longer; until the clock reads end. Arrivals that queue behind the rate
// are sent as fast as it allows, as many callers' goroutines would be.
func offer(t *testing.T, tr *Transport, clock *fakeClock, rate float64, end time.Time) (refused int) {
	t.Helper()
	gap := time.Duration(float64(time.Second) / rate)
	ctx := ContextWithoutRetries(context.Background())
	next := clock.now()
	for clock.now().Before(end) {
		if d := next.Sub(clock.now()); d > 0 {
			clock.advance(d)
		}
		next = next.Add(gap)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.example/", nil)
		require.NoError(t, err)
		resp, err := tr.RoundTrip(req)
		switch {
		case errors.Is(err, ErrThrottled):
			refused++
		case err != nil:
			t.Fatal(err)
		default:
			resp.Body.Close()
		}
	}
	return refused
}

// adaptiveTransport returns a Transport over a capacityBase, both on a
// fake clock that starts at the start of this second (so that contexts'
// deadlines mean something to it, and a run does not depend on where in a
// second it starts).
func adaptiveTransport(t *testing.T, capacity int, opts ...Option) (*Transport, *fakeClock, *capacityBase) {
	clock := &fakeClock{t: time.Now().Truncate(time.Second)}
	base := &capacityBase{capacityLimit{now: clock.now, capacity: capacity}}
	tr := New(base, opts...)
	tr.now, tr.sleep = clock.now, clock.sleep
	return tr, clock, base
}

// Against a host that answers a bare 429 beyond its capacity, offered three
// times that: with the adaptive rate, after 2 s few requests are throttled
// and most of the capacity is used; without it, two requests in three are
// throttled. Slow hosts pay more for the probing (CUBIC's growth past the
// last rate finds the limit with a throttle every cycle of a few seconds).
func TestAdaptiveRateKeepsABareThrottlingHostBelowItsCapacity(t *testing.T) {
	tests := []struct {
		capacity  int
		throttled float64 // at most, after 2 s
	}{
		{5, 0.15},
		{20, 0.05},
		{50, 0.05},
		{200, 0.05},
		{1000, 0.05},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.capacity), func(t *testing.T) {
			tr, clock, base := adaptiveTransport(t, tt.capacity, WithAdaptiveRate(AdaptiveRate{}))
			start := clock.now()
			offer(t, tr, clock, 3*float64(tt.capacity), start.Add(30*time.Second))
			throttled, goodput := base.share(start.Add(2*time.Second), start.Add(30*time.Second))
			t.Logf("capacity %d/s: %.1f%% 429 after 2 s, goodput %.1f/s", tt.capacity, 100*throttled, goodput)
			assert.LessOrEqual(t, throttled, tt.throttled)
			assert.GreaterOrEqual(t, goodput, 0.85*float64(tt.capacity))

			without, clock, base := adaptiveTransport(t, tt.capacity)
			start = clock.now()
			offer(t, without, clock, 3*float64(tt.capacity), start.Add(30*time.Second))
			throttled, goodput = base.share(start.Add(2*time.Second), start.Add(30*time.Second))
			assert.InDelta(t, 2.0/3, throttled, 0.01, "without it, two requests in three are throttled")
			assert.InDelta(t, float64(tt.capacity), goodput, 1)
		})
	}
}

// When the host's capacity doubles, the rate grows to it: within 10 s, it
// uses 85% of the new capacity.
func TestAdaptiveRateGrowsWhenTheCapacityDoubles(t *testing.T) {
	tr, clock, base := adaptiveTransport(t, 100, WithAdaptiveRate(AdaptiveRate{}))
	start := clock.now()
	offer(t, tr, clock, 300, start.Add(20*time.Second))
	base.setCapacity(200)
	offer(t, tr, clock, 300, start.Add(40*time.Second))
	recovered := -1
	for s := 20; s < 40; s++ {
		_, goodput := base.share(start.Add(time.Duration(s)*time.Second), start.Add(time.Duration(s+1)*time.Second))
		if goodput >= 170 {
			recovered = s - 20
			break
		}
	}
	t.Logf("85%% of the doubled capacity within %d s", recovered)
	require.GreaterOrEqual(t, recovered, 0, "never recovered")
	assert.LessOrEqual(t, recovered, 10)
	throttled, _ := base.share(start.Add(22*time.Second), start.Add(40*time.Second))
	assert.LessOrEqual(t, throttled, 0.05)
}

// Until a host throttles, its rate sleeps: no state, no wait; a throttle
// wakes it, and once the host has stopped throttling for a while, it
// sleeps again.
func TestAHostsRateSleepsUntilItThrottlesAndAfter(t *testing.T) {
	tr, clock, base := adaptiveTransport(t, 100, WithAdaptiveRate(AdaptiveRate{}))
	start := clock.now()
	offer(t, tr, clock, 50, start.Add(10*time.Second))
	assert.Zero(t, tr.rate.hosts.n.Load(), "a host that does not throttle has no rate")
	assert.Empty(t, clock.recorded(), "nothing waited")

	offer(t, tr, clock, 300, start.Add(20*time.Second))
	assert.Equal(t, int32(1), tr.rate.hosts.n.Load(), "a throttle wakes the host's rate")
	assert.NotEmpty(t, clock.recorded(), "requests waited for the rate")

	base.setCapacity(1000)
	offer(t, tr, clock, 300, start.Add(25*time.Second))
	assert.Equal(t, int32(1), tr.rate.hosts.n.Load(), "awake until rateQuiet has passed without a throttle")
	offer(t, tr, clock, 300, start.Add(60*time.Second))
	assert.Zero(t, tr.rate.hosts.n.Load(), "asleep again")
	waits := len(clock.recorded())
	offer(t, tr, clock, 300, start.Add(65*time.Second))
	assert.Len(t, clock.recorded(), waits, "nothing waits once it sleeps")
}

// Throttling is per host: one host's 429s slow nobody else.
func TestHostsArePacedApart(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	slow := &capacityBase{capacityLimit{now: clock.now, capacity: 10}}
	var other atomic.Int32
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if req.URL.Host == "api.example" { // offer's host
			return slow.RoundTrip(req)
		}
		other.Add(1)
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	})
	tr := New(base, WithAdaptiveRate(AdaptiveRate{}))
	tr.now, tr.sleep = clock.now, clock.sleep
	start := clock.now()
	offer(t, tr, clock, 30, start.Add(10*time.Second))
	require.Equal(t, int32(1), tr.rate.hosts.n.Load())
	waits := len(clock.recorded())
	require.NotZero(t, waits)
	for range 100 {
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://fast.example/", nil))
		require.NoError(t, err)
		resp.Body.Close()
	}
	assert.Len(t, clock.recorded(), waits, "the other host's requests did not wait")
	assert.Equal(t, int32(100), other.Load())
}

// A throttle that says how long to wait (Retry-After, a spent quota) is
// the host hold's to keep: it does not wake the adaptive rate. One that
// announces a quota with room left says nothing of how fast to go: it
// does.
func TestAThrottleThatSaysHowMuchLeavesTheRateAsleep(t *testing.T) {
	tests := []struct {
		name   string
		code   int
		header http.Header
		wakes  bool
	}{
		{"429", 429, nil, true},
		{"503", 503, nil, true},
		{"429 Retry-After", 429, http.Header{"Retry-After": {"1"}}, false},
		{"503 Retry-After", 503, http.Header{"Retry-After": {"1"}}, false},
		{"429 RateLimit spent", 429, http.Header{"Ratelimit": {`"default";r=0;t=1`}}, false},
		{"429 with a quota not spent", 429, http.Header{"X-Ratelimit-Remaining": {"5"}, "X-Ratelimit-Reset": {"30"}}, true},
		{"429 OpenAI tokens left", 429, http.Header{"X-Ratelimit-Remaining-Requests": {"5"}, "X-Ratelimit-Reset-Requests": {"1s"}}, true},
		{"429 x-amz-retry-after", 429, http.Header{"X-Amz-Retry-After": {"1500"}}, false},
		{"429 malformed Retry-After", 429, http.Header{"Retry-After": {"soon"}}, true},
		{"500", 500, nil, false},
		{"403", 403, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
				h := tt.header.Clone()
				if h == nil {
					h = http.Header{}
				}
				return &http.Response{StatusCode: tt.code, Header: h, Body: http.NoBody, Request: req}, nil
			})
			tr := New(base, WithAdaptiveRate(AdaptiveRate{}), WithPolicy(Policy{MaxAttempts: 1}))
			resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://api.example/", nil))
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, tt.wakes, tr.rate.hosts.n.Load() == 1)
		})
	}
}

// A Classifier that says Throttled wakes the rate as a 429 does, and the
// answer is retried as Retry would retry it.
func TestAClassifierCanSayAHostThrottles(t *testing.T) {
	var calls atomic.Int32
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		code := http.StatusBadRequest // an API's ThrottlingException
		if calls.Add(1) > 1 {
			code = http.StatusOK
		}
		return &http.Response{StatusCode: code, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	})
	tr := New(base, WithAdaptiveRate(AdaptiveRate{}), WithClassifier(func(_ *http.Request, resp *http.Response, _ error) Decision {
		if resp != nil && resp.StatusCode == http.StatusBadRequest {
			return Throttled
		}
		return UseDefault
	}))
	tr.sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://api.example/", nil))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "retried")
	assert.Equal(t, int32(2), calls.Load())
	assert.Equal(t, int32(1), tr.rate.hosts.n.Load(), "the host's rate woke")
	assert.Equal(t, "Throttled", Throttled.String())

	plain := New(base, WithClassifier(func(*http.Request, *http.Response, error) Decision { return Throttled }))
	plain.sleep = tr.sleep
	calls.Store(0)
	resp, err = plain.RoundTrip(mustRequest(t, http.MethodGet, "http://api.example/", nil))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, int32(3), calls.Load(), "without the adaptive rate, Throttled is Retry: every answer retried")
}

// A request whose turn would come after its deadline, or after its
// Policy's MaxRetryAfter, is not sent: it fails at once with ErrThrottled,
// and its token is given back.
func TestARequestTheRateWouldDelayTooLongIsNotSent(t *testing.T) {
	tr, clock, base := adaptiveTransport(t, 2, WithAdaptiveRate(AdaptiveRate{}), WithPolicy(Policy{MaxRetryAfter: 100 * time.Millisecond}))
	start := clock.now()
	refused := offer(t, tr, clock, 20, start.Add(10*time.Second))
	assert.NotZero(t, refused, "a wait past MaxRetryAfter is refused")
	for _, w := range clock.recorded() {
		assert.LessOrEqual(t, w, 100*time.Millisecond, "no wait above MaxRetryAfter")
	}

	before := base.answered()
	var tokens []float64
	state := func() float64 {
		s := tr.rate.hosts.get(hostKey{scheme: "http", host: "api.example"})
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.tokens
	}
	tokens = append(tokens, state())
	ctx, cancel := context.WithDeadline(context.Background(), clock.now().Add(time.Millisecond))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://api.example/", nil)
	require.NoError(t, err)
	_, err = tr.RoundTrip(req)
	require.ErrorIs(t, err, ErrThrottled)
	var te *ThrottledError
	require.ErrorAs(t, err, &te)
	assert.True(t, te.Adaptive)
	assert.Equal(t, "http://api.example", te.Host)
	assert.Contains(t, err.Error(), "adaptive rate")
	var re *Error
	require.ErrorAs(t, err, &re)
	assert.Equal(t, ReasonThrottled, re.Reason)
	assert.Zero(t, re.Attempts)
	tokens = append(tokens, state())
	assert.Equal(t, tokens[0], tokens[1], "the token was given back")
	assert.Equal(t, before, base.answered(), "not sent")
}

// An attempt that waits for its host's rate is an EventPaced, with its
// wait, counted in retryhttp_paced_requests_total and
// retryhttp_pace_delay_seconds; an Attempt's Held includes the wait.
func TestPacedRequestsAreCountedAndObserved(t *testing.T) {
	m, reg := newTestMetrics(t)
	var mu sync.Mutex
	var events []Event
	var held time.Duration
	tr, clock, _ := adaptiveTransport(t, 20, WithAdaptiveRate(AdaptiveRate{}), WithMetrics(m),
		WithRecorder(func(e Event) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}),
		WithObserver(func(a Attempt) {
			mu.Lock()
			held += a.Held
			mu.Unlock()
		}))
	start := clock.now()
	offer(t, tr, clock, 60, start.Add(10*time.Second))
	mu.Lock()
	defer mu.Unlock()
	var paced int
	var waited time.Duration
	for _, e := range events {
		if e.Kind == EventPaced {
			paced++
			waited += e.Wait
			assert.Positive(t, e.Wait)
			assert.Equal(t, "GET", e.Method)
		}
	}
	require.NotZero(t, paced)
	assert.Equal(t, waited, held, "observers see the waits in Held")
	want, got := series(t, reg), seriesOf(events)
	assert.Equal(t, float64(paced), want["retryhttp_paced_requests_total{method=GET}"])
	assert.InDelta(t, want["retryhttp_pace_delay_seconds_sum{}"], got["retryhttp_pace_delay_seconds_sum{}"], 1e-9)
	assert.Equal(t, "paced", EventPaced.String())
}

// In a full outage (every answer a 503, which wakes the rate), the budget
// still bounds the attempts: at most 1.25 per request, 1,000 requests a
// second for 5 s (the waits take no time, as in the budget's own test).
func TestTheOutageBoundHoldsWithTheAdaptiveRate(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	var attempts atomic.Int32
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		attempts.Add(1)
		return &http.Response{StatusCode: 503, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	})
	tr := New(base, WithAdaptiveRate(AdaptiveRate{}))
	tr.now = clock.now
	tr.sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	requests := 0
	for i := range 5000 {
		clock.advance(time.Millisecond)
		req := mustRequest(t, http.MethodGet, "http://api.example/"+strconv.Itoa(i), nil)
		resp, err := tr.RoundTrip(req)
		requests++
		if err == nil {
			resp.Body.Close()
		}
	}
	amplification := float64(attempts.Load()) / float64(requests)
	t.Logf("amplification %.3f", amplification)
	assert.LessOrEqual(t, amplification, 1.25)
	assert.Equal(t, int32(1), tr.rate.hosts.n.Load(), "the outage woke the rate")
}

func TestInvalidAdaptiveRates(t *testing.T) {
	tests := []struct {
		r     AdaptiveRate
		field string
	}{
		{AdaptiveRate{Beta: 1}, "AdaptiveRate.Beta"},
		{AdaptiveRate{Beta: -0.1}, "AdaptiveRate.Beta"},
		{AdaptiveRate{Beta: math.NaN()}, "AdaptiveRate.Beta"},
		{AdaptiveRate{Scale: -1}, "AdaptiveRate.Scale"},
		{AdaptiveRate{Scale: math.Inf(1)}, "AdaptiveRate.Scale"},
		{AdaptiveRate{MinRate: -1}, "AdaptiveRate.MinRate"},
		{AdaptiveRate{Smoothing: 1.5}, "AdaptiveRate.Smoothing"},
		{AdaptiveRate{Interval: -time.Second}, "AdaptiveRate.Interval"},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			var called atomic.Bool
			base := roundTripFunc(func(*http.Request) (*http.Response, error) { called.Store(true); return nil, errors.New("sent") })
			_, err := New(base, WithAdaptiveRate(tt.r)).RoundTrip(mustRequest(t, http.MethodGet, "http://api.example/", nil))
			var pe *PolicyError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tt.field, pe.Field)
			assert.False(t, called.Load())
		})
	}
	r, field, _ := AdaptiveRate{}.withDefaults()
	assert.Empty(t, field)
	assert.Equal(t, AdaptiveRate{Beta: 0.7, Scale: 0.4, MinRate: 0.5, Smoothing: 0.8, Interval: 500 * time.Millisecond}, r)
}

// While no host throttles, the adaptive rate costs no allocation.
func TestAdaptiveRateAllocatesNothingWhileAsleep(t *testing.T) {
	base := staticRT{&http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}}
	req := mustRequest(t, http.MethodGet, "http://example.invalid/", nil)
	tr := New(base, WithAdaptiveRate(AdaptiveRate{}))
	assert.Zero(t, allocsPerRun(t, 200, func() { _, _ = tr.RoundTrip(req) }))
}

// A hedge takes a token of its host's rate too, and is not sent when none
// is there at once: a host that throttles gets no extra copies.
func TestAHedgeNeedsATokenAtOnce(t *testing.T) {
	for _, awake := range []bool{false, true} {
		t.Run(fmt.Sprintf("awake=%v", awake), func(t *testing.T) {
			var calls atomic.Int32
			base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
				if calls.Add(1) == 1 {
					// The first copy is slow: a hedge is due. While the host
					// sleeps, it answers only once the hedge has won and
					// canceled it; awake, no hedge comes to cancel it.
					limit := time.After(200 * time.Millisecond)
					if !awake {
						limit = nil
					}
					select {
					case <-req.Context().Done():
					case <-limit:
					}
				}
				return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
			})
			var hedges atomic.Int32
			tr := New(base, WithAdaptiveRate(AdaptiveRate{}), WithHedging(Hedging{Delay: time.Millisecond}), WithBudget(nil), // hedges need no earnings
				WithRecorder(func(e Event) {
					if e.Kind == EventHedge {
						hedges.Add(1)
					}
				}))
			tr.sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() } // the first copy's wait for its token ends at once
			if awake {
				now := time.Now()
				s := tr.rate.state(hostKey{scheme: "http", host: "api.example"}, true, now)
				s.mu.Lock()
				s.measured = 1
				s.cutLocked(&tr.rate.cfg, now) // the floor: one token every 2 s, none there now
				s.mu.Unlock()
			}
			resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://api.example/", nil))
			require.NoError(t, err)
			resp.Body.Close()
			if awake {
				assert.Zero(t, hedges.Load(), "no token, no hedge")
				assert.Equal(t, int32(1), calls.Load())
			} else {
				assert.Equal(t, int32(1), hedges.Load(), "a sleeping host's rate does not stop hedges")
			}
		})
	}
}

// A MinRate so small that a wait has no end refuses the request rather
// than overflowing into a wait of zero.
func TestATinyMinRateRefusesRatherThanOverflows(t *testing.T) {
	s := newRateState(hostKey{host: "api.example"}, time.Now())
	cfg, _, _ := AdaptiveRate{MinRate: 1e-300}.withDefaults()
	now := time.Now()
	s.mu.Lock()
	s.measured = 1e-300
	s.cutLocked(&cfg, now)
	s.mu.Unlock()
	wait, _ := s.take(now)
	assert.Equal(t, time.Duration(math.MaxInt64), wait)
	wait, _ = s.take(now)
	assert.Equal(t, time.Duration(math.MaxInt64), wait, "and the next too")

	tr := New(nil, WithAdaptiveRate(AdaptiveRate{MinRate: 1e-300}))
	c := call{ctx: context.Background(), p: &tr.policy}
	stop, err := tr.decidePace(&c, mustRequest(t, http.MethodGet, "http://api.example/", nil), wait, now)
	assert.Equal(t, stopPaced, stop)
	assert.ErrorIs(t, err, ErrThrottled)
}

// awakeTransport returns a Transport on a fake clock whose rate for
// http://api.example is cut to its floor, one token a second, with no
// token in hand. Its waits are recorded and take no time: the clock moves
// only when the test moves it, so no token comes back by itself.
func awakeTransport(t *testing.T, base http.RoundTripper, opts ...Option) (*Transport, *fakeClock, *rateState) {
	t.Helper()
	tr := New(base, append([]Option{WithAdaptiveRate(AdaptiveRate{MinRate: 1})}, opts...)...)
	clock := &fakeClock{t: time.Now()}
	tr.now = clock.now
	tr.sleep = func(ctx context.Context, d time.Duration) error {
		clock.mu.Lock()
		clock.waits = append(clock.waits, d)
		clock.mu.Unlock()
		return ctx.Err()
	}
	s := tr.rate.state(hostKey{scheme: "http", host: "api.example"}, true, clock.now())
	s.mu.Lock()
	s.measured = 1
	s.cutLocked(&tr.rate.cfg, clock.now())
	s.mu.Unlock()
	return tr, clock, s
}

func (s *rateState) tokensNow() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens
}

// A retry that a WithBeforeRetry function stops is not sent: it gives its
// token back, as one its deadline refuses does.
func TestARetryItsHookStopsGivesItsTokenBack(t *testing.T) {
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 500, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	})
	hookErr := errors.New("no credentials")
	tr, _, s := awakeTransport(t, base, WithBudget(nil), WithBeforeRetry(func(*http.Request, Attempt) error { return hookErr }))
	before := s.tokensNow()
	_, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://api.example/", nil))
	require.ErrorIs(t, err, hookErr)
	assert.Equal(t, before-1, s.tokensNow(), "the first attempt's token spent, the retry's given back")
}

// A retry that a WithBeforeRetry function moves to another host takes a
// token of that host's rate, and gives back the one it took of the first.
func TestARetryMovedToAnotherHostTakesThatHostsToken(t *testing.T) {
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		code := 503
		if req.URL.Host == "api.example" { // the failover target
			code = 200
		}
		return &http.Response{StatusCode: code, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	})
	tr, clock, s := awakeTransport(t, base, WithBudget(nil), WithBeforeRetry(func(next *http.Request, _ Attempt) error {
		next.URL.Host, next.Host = "api.example", ""
		return nil
	}))
	before := s.tokensNow()
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://primary.example/", nil))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, before-1, s.tokensNow(), "the moved retry took a token of api.example's rate")
	waits := clock.recorded()
	require.Len(t, waits, 2, "the backoff, then the wait for api.example's token")
	assert.Equal(t, time.Second, waits[1], "a token of a rate of one a second, none in hand")
}

// A host nothing is sent to any more goes back to sleep, and the other
// hosts' requests stop paying for its lookups.
func TestAForgottenHostSleeps(t *testing.T) {
	var keys atomic.Int32
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	})
	tr, clock, _ := awakeTransport(t, base, WithHoldKey(func(*http.Request) string { keys.Add(1); return "" }))
	clock.advance(rateQuiet)
	for range 50 {
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://other.example/", nil))
		require.NoError(t, err)
		resp.Body.Close()
	}
	assert.Zero(t, tr.rate.hosts.n.Load(), "api.example sleeps")
	assert.LessOrEqual(t, keys.Load(), int32(2), "the first request's lookup put it to sleep; none after")
}

// A panic of WithHoldKey's function after a bare 429 closes the response,
// which nobody will read, before it goes on up.
func TestAHoldKeyPanicAfterAThrottleClosesTheResponse(t *testing.T) {
	body := &closeTracker{Reader: strings.NewReader("slow down")}
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 429, Header: http.Header{}, Body: body, Request: req}, nil
	})
	tr := New(base, WithAdaptiveRate(AdaptiveRate{}), WithHoldKey(func(*http.Request) string { panic("no key") }))
	require.PanicsWithValue(t, "no key", func() {
		_, _ = tr.RoundTrip(mustRequest(t, http.MethodGet, "http://api.example/", nil))
	})
	assert.Equal(t, int32(1), body.closes.Load())
}

// A long Interval still paces: a host that keeps throttling while its rate
// is measured stays awake until it can be cut.
func TestALongIntervalStillPaces(t *testing.T) {
	tr, clock, base := adaptiveTransport(t, 20, WithAdaptiveRate(AdaptiveRate{Interval: 15 * time.Second}))
	start := clock.now()
	offer(t, tr, clock, 60, start.Add(60*time.Second))
	throttled, goodput := base.share(start.Add(30*time.Second), start.Add(60*time.Second))
	t.Logf("%.1f%% 429 after 30 s, goodput %.1f/s", 100*throttled, goodput)
	assert.Less(t, throttled, 0.2)
	assert.NotEmpty(t, clock.recorded(), "requests waited for the rate")
}

// An error a Classifier calls Throttled (a reset an API uses to shed
// load, say) wakes the host's rate, as a bare 429 does.
func TestAnErrorTheClassifierCallsThrottledWakesTheRate(t *testing.T) {
	base := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, syscall.ECONNRESET })
	tr := New(base, WithAdaptiveRate(AdaptiveRate{}), WithPolicy(Policy{MaxAttempts: 1}),
		WithClassifier(func(_ *http.Request, _ *http.Response, err error) Decision {
			if err != nil {
				return Throttled
			}
			return UseDefault
		}))
	_, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://api.example/", nil))
	require.Error(t, err)
	assert.Equal(t, int32(1), tr.rate.hosts.n.Load())
}

// At most maxHosts hosts are awake at once: waking more puts those
// throttled least recently to sleep.
func TestAwakeHostsAreBounded(t *testing.T) {
	tr := New(nil, WithAdaptiveRate(AdaptiveRate{}))
	now := time.Now()
	for i := range maxHosts + 100 {
		s := tr.rate.state(hostKey{scheme: "http", host: "h" + strconv.Itoa(i)}, true, now.Add(time.Duration(i)*time.Millisecond))
		s.mu.Lock()
		s.throttledAt = now.Add(time.Duration(i) * time.Millisecond)
		s.mu.Unlock()
	}
	assert.LessOrEqual(t, int(tr.rate.hosts.n.Load()), maxHosts)
	assert.NotNil(t, tr.rate.hosts.get(hostKey{scheme: "http", host: "h" + strconv.Itoa(maxHosts+99)}), "the latest stays awake")
	assert.Nil(t, tr.rate.hosts.get(hostKey{scheme: "http", host: "h0"}), "the one throttled least recently sleeps")
}
