package retryhttp

import (
	"context"
	"io"
	"math"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stoppedClock is a clock that moves only when the test moves it: the
// requests of a test happen in one instant, as a burst, unless it says
// otherwise. Waits end at once.
type stoppedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stoppedClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stoppedClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func withStoppedClock(tr *Transport) *stoppedClock {
	c := &stoppedClock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	tr.now = c.now
	tr.sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	return c
}

// sendAll sends n GETs from 10 goroutines and returns how many got a 200.
// Each carries its number in X-Request-Id, on every attempt.
func sendAll(t *testing.T, tr http.RoundTripper, url string, n int) int {
	t.Helper()
	var ok atomic.Int32
	var wg sync.WaitGroup
	for g := range 10 {
		wg.Go(func() {
			for i := g; i < n; i += 10 {
				req := mustRequest(t, http.MethodGet, url, nil)
				req.Header.Set("X-Request-Id", strconv.Itoa(i))
				resp, err := tr.RoundTrip(req)
				if !assert.NoError(t, err) {
					return
				}
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				}
				readAll(t, resp)
			}
		})
	}
	wg.Wait()
	return int(ok.Load())
}

func TestBudgetBoundsAmplificationInAnOutage(t *testing.T) {
	tests := []struct {
		name string
		opts []Option
		low  float64 // amplification bounds: attempts per request
		high float64
	}{
		{"default budget", nil, 1.0, 1.25},
		{"no budget", []Option{WithBudget(nil)}, 3.0, 3.0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, statuses(http.StatusServiceUnavailable))
			m, reg := newTestMetrics(t)
			tr, _ := newTestTransport(t, append(tt.opts, WithMetrics(m))...)
			withStoppedClock(tr)
			sendAll(t, tr, up.URL, 1000)
			amplification := float64(up.attempts.Load()) / 1000
			t.Logf("amplification %.3f", amplification)
			assert.GreaterOrEqual(t, amplification, tt.low)
			assert.LessOrEqual(t, amplification, tt.high)

			refused := testutil.ToFloat64(m.refusals)
			budget := testutil.ToFloat64(m.requests.WithLabelValues("GET", "budget"))
			assert.Equal(t, refused, budget, "each refusal ends one request with outcome budget")
			if tt.opts == nil {
				assert.Greater(t, refused, 700.0)
			} else {
				assert.Zero(t, refused)
			}
			problems, err := testutil.GatherAndLint(reg)
			require.NoError(t, err)
			assert.Empty(t, problems)
		})
	}
}

func TestBudgetRefusesNothingAtFivePercentFailures(t *testing.T) {
	// 5% of the requests, from early on, fail their first attempt. (Failing
	// every 20th arrival instead fails a request whose retries happen to
	// arrive 20 apart, as they do when its goroutine runs late.)
	var mu sync.Mutex
	failed := map[string]bool{}
	up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		i, _ := strconv.Atoi(id)
		mu.Lock()
		fail := i%20 == 7 && !failed[id]
		failed[id] = true
		mu.Unlock()
		if fail {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	m, _ := newTestMetrics(t)
	tr, _ := newTestTransport(t, WithMetrics(m))
	withStoppedClock(tr)
	ok := sendAll(t, tr, up.URL, 1000)
	assert.Equal(t, 1000, ok, "every request succeeded")
	assert.Zero(t, testutil.ToFloat64(m.refusals))
	assert.Greater(t, testutil.ToFloat64(m.retries.WithLabelValues("GET", "503")), 40.0)
}

func TestBudgetRefillsAfterAnOutage(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	m, _ := newTestMetrics(t)
	tr, _ := newTestTransport(t, WithMetrics(m))
	clock := withStoppedClock(tr)
	sendAll(t, tr, up.URL, 500)
	require.Greater(t, testutil.ToFloat64(m.refusals), 0.0, "the outage exhausted the budget")

	// Still exhausted: a single failure is not retried.
	single := func() (attempts int32) {
		before := up.attempts.Load()
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
		require.NoError(t, err)
		readAll(t, resp)
		return up.attempts.Load() - before
	}
	assert.Equal(t, int32(1), single())

	// The outage ends. Two minutes later the floor has refilled one retry:
	// a single failure is retried again.
	down.Store(false)
	clock.advance(2 * time.Minute)
	failOnce := newUpstream(t, statuses(http.StatusServiceUnavailable, http.StatusOK))
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, failOnce.URL, nil))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, int32(2), failOnce.attempts.Load())

	// After a whole window the outage's retries are forgotten too, and
	// four minutes on the floor holds its two retries again.
	clock.advance(DefaultBudgetWindow + 4*time.Minute)
	assert.InDelta(t, DefaultBudgetFloorHold, tr.budget.available(clock.now()), 0.01)
}

func TestSharedBudgetLimitsEveryTransport(t *testing.T) {
	up := newUpstream(t, statuses(http.StatusServiceUnavailable))
	shared := &Budget{} // the defaults, from its first use on the stopped clock
	var trs []*Transport
	for range 4 {
		tr, _ := newTestTransport(t, WithBudget(shared))
		withStoppedClock(tr)
		trs = append(trs, tr)
	}
	var wg sync.WaitGroup
	for _, tr := range trs {
		wg.Go(func() { sendAll(t, tr, up.URL, 250) })
	}
	wg.Wait()
	amplification := float64(up.attempts.Load()) / 1000
	assert.LessOrEqual(t, amplification, 1.25, "one budget for all four: %.3f", amplification)

	// Four budgets of their own would each have their own floor.
	up.attempts.Store(0)
	for range 4 {
		tr, _ := newTestTransport(t)
		withStoppedClock(tr)
		sendAll(t, tr, up.URL, 250)
	}
	assert.Greater(t, float64(up.attempts.Load())/1000, amplification)
}

func TestBudgetArithmetic(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := &Budget{}
	b.once.Do(func() { b.init(BudgetConfig{Ratio: 0.5, MinPerSecond: 2, Window: 10 * time.Second}, start) })
	assert.Equal(t, 2.0, b.available(start), "a new budget holds its floor")

	for range 10 {
		b.earn(func() time.Time { return start })
	}
	assert.Equal(t, 7.0, b.available(start), "10 requests earn 5, plus the floor of 2")
	spent := 0
	for {
		if _, ok := b.spend(start); !ok {
			break
		}
		spent++
	}
	assert.Equal(t, 7, spent)
	assert.Zero(t, b.available(start))

	// Half a second refills one floor retry; the floor never exceeds 1 s worth.
	assert.InDelta(t, 1.0, b.available(start.Add(500*time.Millisecond)), 1e-9)
	assert.InDelta(t, 2.0, b.available(start.Add(5*time.Second)), 1e-9)

	// Earnings last one window: 9 s later they count, 11 s later they don't.
	b2 := &Budget{}
	b2.once.Do(func() { b2.init(BudgetConfig{Ratio: 1, MinPerSecond: 1, Window: 10 * time.Second}, start) })
	for range 5 {
		b2.earn(func() time.Time { return start })
	}
	assert.InDelta(t, 6.0, b2.available(start.Add(9*time.Second)), 1e-9)
	assert.InDelta(t, 1.0, b2.available(start.Add(11*time.Second)), 1e-9)
}

func TestFractionalFloorAllowsRetriesAtItsRate(t *testing.T) {
	// MinPerSecond 0.5: one retry every 2 s, over a minute about 30 (and
	// the one a new budget holds), never none.
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := &Budget{}
	b.once.Do(func() { b.init(BudgetConfig{Ratio: 0.2, MinPerSecond: 0.5, Window: 10 * time.Second}, start) })
	spent := 0
	for ms := 0; ms <= 60_000; ms += 100 {
		if _, ok := b.spend(start.Add(time.Duration(ms) * time.Millisecond)); ok {
			spent++
		}
	}
	assert.Equal(t, 31, spent, "one at once, then one every 2 s")

	tiny, err := NewBudget(BudgetConfig{MinPerSecond: 0.01})
	require.NoError(t, err)
	_, ok := tiny.spend(time.Now())
	assert.True(t, ok, "any positive floor allows a first retry")
}

func TestRefundGivesBackWhatSpendTook(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := &Budget{}
	b.once.Do(func() { b.init(BudgetConfig{Ratio: 0.5, MinPerSecond: 1, Window: 10 * time.Second}, start) })
	for range 4 {
		b.earn(func() time.Time { return start })
	}
	require.Equal(t, 3.0, b.available(start), "2 earned and 1 floor token")
	earned, ok := b.spend(start)
	require.True(t, ok)
	assert.False(t, earned.token)
	assert.Equal(t, 2.0, b.available(start))
	b.refund(earned)
	assert.Equal(t, 3.0, b.available(start), "the earned retry came back")

	var receipts []receipt
	for {
		r, ok := b.spend(start)
		if !ok {
			break
		}
		receipts = append(receipts, r)
	}
	require.Len(t, receipts, 3)
	assert.True(t, receipts[2].token, "the floor pays last")
	b.refund(receipts[2])
	assert.Equal(t, 1.0, b.available(start), "the token came back")
	b.refund(receipts[2])
	assert.Equal(t, 1.0, b.available(start), "never above the floor's capacity")
	(*Budget)(nil).refund(receipts[0]) // no budget: nothing to give back
}

func TestZeroBudgetHasTheDefaults(t *testing.T) {
	var b Budget
	now := time.Now()
	assert.Equal(t, float64(DefaultBudgetFloorHold), b.available(now))
	for range 100 {
		b.earn(func() time.Time { return now })
	}
	assert.InDelta(t, DefaultBudgetFloorHold+DefaultBudgetRatio*100, b.available(now), 1e-9)
	assert.InDelta(t, b.available(now), b.Available(), 1)
}

func TestNewBudgetRejectsBadValues(t *testing.T) {
	tests := []struct {
		c     BudgetConfig
		field string
	}{
		{BudgetConfig{Ratio: -0.1}, "Ratio"},
		{BudgetConfig{Ratio: math.NaN()}, "Ratio"},
		{BudgetConfig{Ratio: math.Inf(1)}, "Ratio"},
		{BudgetConfig{MinPerSecond: -1}, "MinPerSecond"},
		{BudgetConfig{Window: -time.Second}, "Window"},
	}
	for _, tt := range tests {
		b, err := NewBudget(tt.c)
		assert.Nil(t, b)
		assert.ErrorContains(t, err, "retryhttp: invalid BudgetConfig."+tt.field)
	}
	b, err := NewBudget(BudgetConfig{Ratio: 0.1, MinPerSecond: 1, Window: time.Second})
	require.NoError(t, err)
	b.ready(time.Now()) // a Budget starts on its first use
	assert.Equal(t, 0.1, b.ratio)
	assert.Equal(t, 100*time.Millisecond, b.slot)
}

func TestBudgetConcurrentUse(t *testing.T) {
	b, err := NewBudget(BudgetConfig{})
	require.NoError(t, err)
	var spent atomic.Int64
	var wg sync.WaitGroup
	now := time.Now()
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				b.earn(func() time.Time { return now })
				if _, ok := b.spend(now); ok {
					spent.Add(1)
				}
			}
		})
	}
	wg.Wait()
	// 8000 requests earn 1600 retries, plus the floor of 10: never more.
	assert.LessOrEqual(t, spent.Load(), int64(1610))
	assert.GreaterOrEqual(t, spent.Load(), int64(1600))
}

func TestBudgetGauge(t *testing.T) {
	m, reg := newTestMetrics(t)
	assert.Zero(t, testutil.CollectAndCount(m, "retryhttp_budget_retries_available"), "no budget yet, no gauge")
	shared := &Budget{}
	New(nil, WithMetrics(m), WithBudget(shared))
	New(nil, WithMetrics(m), WithBudget(shared)) // counted once
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP retryhttp_budget_retries_available Retries the retry budgets of the Transports using these metrics would allow now.
# TYPE retryhttp_budget_retries_available gauge
retryhttp_budget_retries_available 2
`), "retryhttp_budget_retries_available"))
	own := New(nil, WithMetrics(m)) // its own default budget adds its floor
	assert.InDelta(t, 4.0, testutil.ToFloat64(gaugeOnly{m}), 0.01)
	runtime.KeepAlive(own) // the gauge holds budgets weakly: a collected Transport drops out
}

// gaugeOnly collects just the budget gauge of m, for testutil.ToFloat64.
type gaugeOnly struct{ m *Metrics }

func (g gaugeOnly) Describe(ch chan<- *prometheus.Desc) { ch <- g.m.avail }
func (g gaugeOnly) Collect(ch chan<- prometheus.Metric) {
	if v, ok := g.m.available(); ok {
		ch <- prometheus.MustNewConstMetric(g.m.avail, prometheus.GaugeValue, v)
	}
}

func TestBudgetReadsTheClockUntilASlotIsBusy(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start
	reads := 0
	clock := func() time.Time { reads++; return now }
	b := &Budget{}
	b.earn(clock) // the first use reads the clock to start; count 1
	reads = 0
	for range 15 {
		b.earn(clock) // counts 2 to 16: a quiet slot reads the clock
	}
	assert.Equal(t, 15, reads, "one read for each of a slot's first 16 requests")
	for range 16 {
		b.earn(clock) // counts 17 to 32: a busy slot, one read at the 32nd
	}
	assert.Equal(t, 16, reads)

	// Time moves 3 s on; a busy client's next 16 requests count in the
	// slot seen last, then the clock is read and counting moves to the new
	// slot.
	now = start.Add(3 * time.Second)
	for range 16 {
		b.earn(clock)
	}
	assert.Equal(t, 17, reads)
	assert.Equal(t, b.epoch(now), b.current.Load())
	assert.InDelta(t, DefaultBudgetFloorHold+DefaultBudgetRatio*(32+16), b.available(now), 1e-9, "every request counted")

	// A quiet client's every request counts in its own second: 12 s of one
	// request a second leave the last 10 in the window.
	q := &Budget{}
	for i := range 12 {
		at := start.Add(time.Duration(i) * time.Second)
		q.earn(func() time.Time { return at })
		assert.Equal(t, q.epoch(at), q.current.Load(), "request %d counts in its own slot", i)
	}
	assert.InDelta(t, DefaultBudgetFloorHold+DefaultBudgetRatio*10, q.available(start.Add(11*time.Second)), 1e-2)
}

func TestSlotNeverGoesBackInTime(t *testing.T) {
	var s slotCount
	assert.Equal(t, uint32(1), s.add(20))
	assert.Equal(t, uint32(2), s.add(20))
	assert.Equal(t, uint32(1), s.add(30), "a later period resets the slot")
	assert.Equal(t, uint32(2), s.add(20), "a stale slot number counts in the later period")
	assert.Equal(t, float64(2), s.in(30))
	assert.Zero(t, s.in(40), "out of the window")
}

func TestBudgetPaysOnlyForRetriesThatAreSent(t *testing.T) {
	// GetBody fails, the replay buffer overflowed, or the caller canceled
	// during the wait: the retry was never sent, and the budget keeps what
	// it had.
	up := newUpstream(t, statuses(503))
	tests := []struct {
		name string
		req  func(t *testing.T, tr *Transport) *http.Request
	}{
		{"GetBody fails", func(t *testing.T, _ *Transport) *http.Request {
			req := mustRequest(t, http.MethodPut, up.URL, strings.NewReader("abc"))
			req.GetBody = func() (io.ReadCloser, error) { return nil, errTestBody }
			return req
		}},
		{"body past the replay buffer", func(t *testing.T, _ *Transport) *http.Request {
			return mustRequest(t, http.MethodPut, up.URL, onlyReader{strings.NewReader(strings.Repeat("x", 200))})
		}},
		{"canceled during the wait", func(t *testing.T, tr *Transport) *http.Request {
			ctx, cancel := context.WithCancel(context.Background())
			tr.sleep = func(ctx context.Context, _ time.Duration) error { cancel(); return ctx.Err() }
			return mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &Budget{}
			tr, _ := newTestTransport(t, WithBudget(b), WithReplayBuffer(100))
			clock := withStoppedClock(tr)
			b.once.Do(func() { b.init(BudgetConfig{Ratio: 0.2, MinPerSecond: 3, Window: 10 * time.Second}, clock.now()) })
			req := tt.req(t, tr)
			before := b.available(clock.now())
			resp, err := tr.RoundTrip(req)
			if err == nil {
				readAll(t, resp)
			}
			assert.Equal(t, int32(1), up.attempts.Swap(0), "no retry was sent")
			assert.Equal(t, before+0.2, b.available(clock.now()), "the request earned its 0.2 and nothing was spent")
		})
	}
}
