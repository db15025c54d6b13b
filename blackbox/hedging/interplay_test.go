package hedging_test

// Hedging together with the rest of the Transport: attempt timeouts,
// MaxAttempts, MaxHedges, the budget, wait signals, Classifiers,
// WithBeforeRetry, the caller's cancellation and deadline, per-request
// policies, and the caller's request left unchanged.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countingBase calls f for each copy, k its AttemptFromContext (the order
// in which copies reach the base may differ from the order in which they
// were sent, on a busy machine), and records arrivals; arrived(k) and
// returned(k) let a copy wait for another.
type countingBase struct {
	n     atomic.Int32
	mu    sync.Mutex
	times []time.Time
	marks map[[2]int]chan struct{}
	f     func(ctx context.Context, k int, r *http.Request) (*http.Response, error)
}

func (b *countingBase) mark(what, k int) chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.marks == nil {
		b.marks = map[[2]int]chan struct{}{}
	}
	ch, ok := b.marks[[2]int{what, k}]
	if !ok {
		ch = make(chan struct{})
		b.marks[[2]int{what, k}] = ch
	}
	return ch
}

// done closes mark (what, k), once: a base shared by several requests
// sees each attempt number more than once.
func (b *countingBase) done(what, k int) {
	ch := b.mark(what, k)
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// arrived is closed when copy k has reached the base, returned when the
// base has returned its answer.
func (b *countingBase) arrived(k int) <-chan struct{}  { return b.mark(0, k) }
func (b *countingBase) returned(k int) <-chan struct{} { return b.mark(1, k) }

func (b *countingBase) RoundTrip(r *http.Request) (*http.Response, error) {
	b.n.Add(1)
	k := retryhttp.AttemptFromContext(r.Context())
	b.mu.Lock()
	b.times = append(b.times, time.Now())
	b.mu.Unlock()
	b.done(0, k)
	defer b.done(1, k)
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return b.f(r.Context(), k, r)
}

// await blocks until ch is closed, or returns the context's error.
func await(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *countingBase) arrivals() []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]time.Time(nil), b.times...)
}

func hangForever(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestAttemptTimeoutShorterThanDelay(t *testing.T) {
	// Every copy hangs until its context ends. The attempt timeout (20 ms)
	// ends each attempt long before its hedge would be due (a minute): the
	// three attempts are retries, none a hedge, and it is the attempt
	// timeout, not the caller's deadline, that ends them.
	b := &countingBase{f: hangForever}
	rec := &recorder{}
	rt := hedgeRT(t, b, retryhttp.Hedging{Delay: time.Minute}, retryhttp.WithObserver(rec.observe),
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, AttemptTimeout: 20 * time.Millisecond, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	req, _ := get(t, guarded(t), "http://example.invalid/")
	res, err := rt.RoundTrip(req)
	require.Nil(t, res)
	require.ErrorIs(t, err, retryhttp.ErrAttemptTimeout)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "the attempt timeout ended it, not the caller's deadline")
	assert.Len(t, b.arrivals(), 3)
	for _, s := range rec.snapshot() {
		assert.False(t, s.Hedge, "no hedge can be sent before its attempt times out: %+v", s)
	}
}

func TestAttemptTimeoutLongerThanDelay(t *testing.T) {
	for _, maxAttempts := range []int{2, 3, 4} {
		b := &countingBase{f: hangForever}
		rec := &recorder{}
		m, reg := newMetrics(t)
		rt := hedgeRT(t, b, retryhttp.Hedging{Delay: 10 * time.Millisecond, MaxHedges: 3}, retryhttp.WithObserver(rec.observe), retryhttp.WithMetrics(m),
			retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: maxAttempts, AttemptTimeout: 60 * time.Millisecond, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
		req, _ := get(t, guarded(t), "http://example.invalid/")
		res, err := rt.RoundTrip(req)
		require.Nil(t, res)
		require.Error(t, err)
		assert.ErrorIs(t, err, retryhttp.ErrAttemptTimeout)
		assert.NotErrorIs(t, err, context.DeadlineExceeded, "the attempt timeout ended it, not the caller's deadline")
		var re *retryhttp.Error
		if assert.ErrorAs(t, err, &re) {
			assert.Equal(t, len(b.arrivals()), re.Attempts, "Error.Attempts counts every copy sent")
		}
		assert.Len(t, b.arrivals(), maxAttempts, "MaxAttempts %d counts every copy", maxAttempts)
		assert.Len(t, rec.snapshot(), maxAttempts, "each copy reported once: %+v", rec.snapshot())
		assert.Equal(t, float64(maxAttempts), sum(t, reg, "retryhttp_attempts_total", nil))
	}
}

// MaxHedges 3 with room for them: four copies, each a Delay after the
// previous one; the fourth answers.
func TestMaxHedgesThree(t *testing.T) {
	const delay = 30 * time.Millisecond
	b := &countingBase{f: func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
		if k < 4 {
			return hangForever(ctx, k, r)
		}
		return testkit.Resp(200, "fourth"), nil
	}}
	m, reg := newMetrics(t)
	rec := &recorder{}
	// When each hedge was sent: the recorder runs as the Transport decides
	// to send it, before the copy reaches the base (which a busy machine
	// may delay), so these instants are what the Delay bounds.
	var sentMu sync.Mutex
	var sent []time.Time
	rt := hedgeRT(t, b, retryhttp.Hedging{Delay: delay, MaxHedges: 3}, retryhttp.WithMetrics(m), retryhttp.WithObserver(rec.observe),
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 6, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}),
		retryhttp.WithRecorder(func(e retryhttp.Event) {
			if e.Kind == retryhttp.EventHedge {
				sentMu.Lock()
				sent = append(sent, time.Now())
				sentMu.Unlock()
			}
		}))
	req, _ := get(t, guarded(t), "http://example.invalid/")
	start := time.Now() // no later than the first copy's timer was armed
	res, err := rt.RoundTrip(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	assert.Equal(t, "fourth", string(body))
	require.Len(t, b.arrivals(), 4)
	sentMu.Lock()
	at := append([]time.Time{start}, sent...)
	sentMu.Unlock()
	require.Len(t, at, 4)
	for i := 1; i < len(at); i++ {
		assert.GreaterOrEqual(t, at[i].Sub(at[i-1]), delay, "copy %d came too soon after copy %d", i+1, i)
	}
	assert.Equal(t, 3.0, sum(t, reg, "retryhttp_hedges_total", map[string]string{"method": "GET"}))
	assert.Equal(t, 1.0, sum(t, reg, "retryhttp_hedge_wins_total", map[string]string{"method": "GET"}))
	assert.Zero(t, sum(t, reg, "retryhttp_retries_total", nil), "hedges are not retries")
	assert.Equal(t, 1.0, sum(t, reg, "retryhttp_requests_total", map[string]string{"outcome": "ok"}))
	lost := 0
	for _, s := range rec.snapshot() {
		if isLost(s.Err) {
			lost++
		}
	}
	assert.Equal(t, 3, lost)
}

// cancelOnceArrived returns a context that is canceled when copy n has
// reached b and then room for a copy too many (several Delays) has passed,
// or after the 20 s of guarded.
func cancelOnceArrived(t *testing.T, parent context.Context, b *countingBase, n int, room time.Duration) context.Context {
	ctx, cancel := context.WithCancel(parent)
	t.Cleanup(cancel)
	go func() {
		if await(ctx, b.arrived(n)) == nil {
			time.Sleep(room) // lets a copy too many show; no outcome depends on it
			cancel()
		}
	}()
	return ctx
}

// MaxHedges above MaxAttempts-1: the copies never exceed MaxAttempts, with
// the caller's cancellation ending the request.
func TestMaxHedgesBoundedByMaxAttempts(t *testing.T) {
	for _, maxAttempts := range []int{1, 2, 3} {
		b := &countingBase{f: hangForever}
		rt := hedgeRT(t, b, retryhttp.Hedging{Delay: 5 * time.Millisecond, MaxHedges: 10},
			retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: maxAttempts, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
		req, _ := get(t, cancelOnceArrived(t, guarded(t), b, maxAttempts, 50*time.Millisecond), "http://example.invalid/")
		_, err := rt.RoundTrip(req)
		require.Error(t, err)
		assert.ErrorIs(t, err, context.Canceled, "the caller's cancellation, not the guard's deadline, ended it")
		assert.Len(t, b.arrivals(), maxAttempts, "MaxAttempts %d", maxAttempts)
	}
}

// Every copy fails with a 503 after the race: the retries go on with the
// remaining attempts; with none left, the last 503 comes back readable.
func TestEveryCopyFailsThenRetries(t *testing.T) {
	for _, tc := range []struct {
		maxAttempts int
		wantStatus  int
	}{{2, 503}, {3, 200}, {5, 200}} {
		// The first copy fails once its hedge is in, the hedge at once.
		// The retry's own hedge would be due a Delay after the retry,
		// which answers at once: the Delay is far above the in-memory work.
		b := &countingBase{}
		b.f = func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
			if k == 1 {
				if err := await(ctx, b.arrived(2)); err != nil {
					return nil, err
				}
			}
			if k <= 2 {
				return testkit.Resp(503, "busy"), nil
			}
			return testkit.Resp(200, "ok"), nil
		}
		rec := &recorder{}
		rt := hedgeRT(t, b, retryhttp.Hedging{Delay: processed}, retryhttp.WithObserver(rec.observe),
			retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: tc.maxAttempts, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
		req, _ := get(t, nil, "http://example.invalid/")
		res, err := rt.RoundTrip(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		assert.Equal(t, tc.wantStatus, res.StatusCode, "MaxAttempts %d", tc.maxAttempts)
		if tc.wantStatus == 503 {
			assert.Equal(t, "busy", string(body))
		}
		want := min(tc.maxAttempts, 3)
		assert.Len(t, b.arrivals(), want, "MaxAttempts %d: attempts %+v", tc.maxAttempts, rec.snapshot())
		nums := map[int]bool{}
		for _, s := range rec.snapshot() {
			assert.False(t, nums[s.Number], "number %d reported twice: %+v", s.Number, rec.snapshot())
			nums[s.Number] = true
			assert.LessOrEqual(t, s.Number, tc.maxAttempts)
			assert.False(t, isLost(s.Err), "no copy was canceled: %+v", s)
		}
	}
}

// The budget pays for hedges: once it is spent, no hedge is sent; a hedge
// that is not sent (the first copy answered) costs nothing.
func TestBudgetExhaustedStopsHedges(t *testing.T) {
	budget, err := retryhttp.NewBudget(retryhttp.BudgetConfig{Ratio: 1e-9, MinPerSecond: 1e-6, Window: time.Hour})
	require.NoError(t, err)
	b := &countingBase{f: func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
		if r.Header.Get("X-Slow") != "" && AttemptNumber(r) == 1 {
			if err := after(ctx, 60*time.Millisecond); err != nil {
				return nil, err
			}
		}
		return testkit.Resp(200, "ok"), nil
	}}
	m, reg := newMetrics(t)
	rt := retryhttp.New(b, retryhttp.WithPolicy(testkit.Fast), retryhttp.WithBudget(budget), retryhttp.WithMetrics(m),
		retryhttp.WithHedging(retryhttp.Hedging{Delay: 10 * time.Millisecond}))
	avail := budget.Available()
	t.Logf("available at start: %v", avail)
	// Fast requests: no hedge, nothing spent.
	for i := 0; i < 20; i++ {
		req, _ := get(t, nil, "http://example.invalid/")
		res, err := rt.RoundTrip(req)
		require.NoError(t, err)
		res.Body.Close()
	}
	assert.InDelta(t, avail, budget.Available(), 1e-3, "a hedge never sent must cost nothing")
	// Slow requests: hedged while the budget lasts.
	for i := 0; i < 5; i++ {
		before := b.n.Load()
		req, _ := get(t, nil, "http://example.invalid/")
		req.Header.Set("X-Slow", "1")
		res, err := rt.RoundTrip(req)
		require.NoError(t, err)
		res.Body.Close()
		t.Logf("slow request %d: %d copies, available %v", i, b.n.Load()-before, budget.Available())
	}
	hedges := sum(t, reg, "retryhttp_hedges_total", nil)
	assert.LessOrEqual(t, hedges, float64(int(avail)), "more hedges than the budget held")
	assert.Equal(t, float64(25)+hedges, float64(b.n.Load()))
	assert.Zero(t, hedges, "the floor pays for no hedge, and 25 requests earned 25e-9 of one")
}

// AttemptNumber reads the attempt number the Transport puts in a copy's
// context.
func AttemptNumber(r *http.Request) int { return retryhttp.AttemptFromContext(r.Context()) }

// A hedge whose GetBody fails is not sent and must not be paid for. The
// budget's Ratio of 1 lets the request earn its hedge (hedges are paid
// from earnings only, never from the floor): the timer pays for the hedge,
// then GetBody fails, and the payment must come back.
func TestHedgeStoppedByGetBodyIsNotPaid(t *testing.T) {
	budget, err := retryhttp.NewBudget(retryhttp.BudgetConfig{Ratio: 1, MinPerSecond: 1e-6, Window: time.Hour})
	require.NoError(t, err)
	// The first copy answers once the hedge has asked GetBody for its body.
	askedForBody := make(chan struct{})
	b := &countingBase{f: func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
		if err := await(ctx, askedForBody); err != nil {
			return nil, err
		}
		return testkit.Resp(200, "ok"), nil
	}}
	rt := retryhttp.New(b, retryhttp.WithPolicy(testkit.Fast), retryhttp.WithBudget(budget),
		retryhttp.WithHedging(retryhttp.Hedging{Delay: 5 * time.Millisecond}))
	avail := budget.Available()
	req, err := http.NewRequestWithContext(guarded(t), http.MethodPut, "http://example.invalid/", strings.NewReader("x"))
	require.NoError(t, err)
	var once sync.Once
	req.GetBody = func() (io.ReadCloser, error) {
		once.Do(func() { close(askedForBody) })
		return nil, errors.New("no second body")
	}
	res, err := rt.RoundTrip(req)
	require.NoError(t, err, "the first copy answers only once the hedge asked for its body")
	res.Body.Close()
	assert.Equal(t, int32(1), b.n.Load())
	assert.InDelta(t, avail+1, budget.Available(), 1e-3, "the request earned one; the hedge GetBody stopped was charged")
}

// In an outage (every copy slow and failing), the default budget keeps
// the attempts within what it can pay for with hedging on: each request
// earns 0.2 of a copy, and the floor adds its retries (the ones a new
// budget holds, and one every two minutes), never a hedge. The floor's
// share depends on how long the run took, which is the machine's business:
// the bound counts it from the run's own duration, rather than assume a
// fast machine.
func TestOutageAmplificationWithHedging(t *testing.T) {
	for _, kind := range []string{"slow 503", "slow 200"} {
		t.Run(kind, func(t *testing.T) {
			b := &countingBase{f: func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
				if err := after(ctx, 4*time.Millisecond); err != nil {
					return nil, err
				}
				if kind == "slow 503" {
					return testkit.Resp(503, "down"), nil
				}
				return testkit.Resp(200, "ok"), nil
			}}
			rt := retryhttp.New(b, retryhttp.WithPolicy(testkit.Fast), retryhttp.WithHedging(retryhttp.Hedging{Delay: time.Millisecond}))
			const requests = 1000
			start := time.Now()
			var wg sync.WaitGroup
			next := atomic.Int32{}
			for g := 0; g < 20; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= requests {
						req, _ := http.NewRequest(http.MethodGet, "http://example.invalid/", nil)
						res, err := rt.RoundTrip(req)
						if err == nil {
							res.Body.Close()
						}
					}
				}()
			}
			wg.Wait()
			took := time.Since(start)
			amp := float64(b.n.Load()) / requests
			t.Logf("%s: %.3f attempts per request in %v", kind, amp, took.Round(time.Millisecond))
			bound := 1 + retryhttp.DefaultBudgetRatio // hedges: from earnings only
			if kind == "slow 503" {
				bound += (retryhttp.DefaultBudgetFloorHold + retryhttp.DefaultBudgetMinPerSecond*took.Seconds()) / requests // retries: the floor too
			}
			assert.LessOrEqual(t, amp, bound)
		})
	}
}

// A wait signal stops further hedges, whichever copy brings it.
func TestRetryAfterStopsFurtherHedges(t *testing.T) {
	t.Run("on the hedge", func(t *testing.T) {
		// MaxHedges 1: a hedge that failed makes room for another, one
		// Delay later, unless its answer asked for a wait. The first copy
		// stays out until the hedge's 429 is back and then for three
		// Delays more, room for a hedge too many to show.
		const delay = 40 * time.Millisecond
		b := &countingBase{}
		b.f = func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
			switch k {
			case 1:
				if err := await(ctx, b.returned(2)); err != nil {
					return nil, err
				}
				if err := after(ctx, 3*delay); err != nil {
					return nil, err
				}
				return testkit.Resp(200, "first"), nil
			case 2:
				r := testkit.Resp(429, "slow down")
				r.Header.Set("Retry-After", "1")
				return r, nil
			}
			return testkit.Resp(200, "third"), nil
		}
		rt := hedgeRT(t, b, retryhttp.Hedging{Delay: delay, MaxHedges: 1},
			retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
		req, _ := get(t, guarded(t), "http://example.invalid/")
		res, err := rt.RoundTrip(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		assert.Equal(t, "first", string(body))
		assert.Len(t, b.arrivals(), 2, "a hedge followed a Retry-After")
	})
	t.Run("on the first copy", func(t *testing.T) {
		// Two hedges may be in flight (MaxHedges 3): the second is due a
		// Delay after the first, and the first copy's 429 comes as soon as
		// the first hedge is in. The Delay leaves the Transport far more
		// than the in-memory work of reading that 429 before the second
		// hedge is due; the first hedge answers two Delays after that 429,
		// room for a hedge too many to show.
		const delay = processed
		b := &countingBase{}
		b.f = func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
			switch k {
			case 1:
				if err := await(ctx, b.arrived(2)); err != nil {
					return nil, err
				}
				r := testkit.Resp(429, "slow down")
				r.Header.Set("Retry-After", "1")
				return r, nil
			case 2:
				if err := await(ctx, b.returned(1)); err != nil {
					return nil, err
				}
				if err := after(ctx, 2*delay); err != nil {
					return nil, err
				}
				return testkit.Resp(200, "hedge"), nil
			}
			return testkit.Resp(200, "third"), nil
		}
		rec := &recorder{}
		m, reg := newMetrics(t)
		rt := hedgeRT(t, b, retryhttp.Hedging{Delay: delay, MaxHedges: 3}, retryhttp.WithObserver(rec.observe), retryhttp.WithMetrics(m),
			retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
		req, _ := get(t, guarded(t), "http://example.invalid/")
		res, err := rt.RoundTrip(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		assert.Equal(t, "hedge", string(body), "the hedge in flight still wins; attempts %+v", rec.snapshot())
		assert.Len(t, b.arrivals(), 2, "a hedge followed a Retry-After")
		// The Retry-After asks the next attempt to wait; the hedge already
		// in flight won, so there is no next attempt and nothing waited.
		assert.Zero(t, sum(t, reg, "retryhttp_retries_total", nil), "no retry, so no wait for the Retry-After")
	})
	// Every copy fails, the first copy's 503 with Retry-After: 1: the retry
	// waits the Retry-After, whichever copy failed last.
	for _, waitLast := range []bool{true, false} {
		name := "every copy failed, the Retry-After last: the retry waits it"
		if !waitLast {
			name = "every copy failed, the Retry-After first: the retry waits it"
		}
		t.Run(name, func(t *testing.T) {
			// The copy that fails second does so once the Transport has had
			// the other's failure for a while (half of processed); when that
			// is the hedge's, a further hedge would be due a Delay after it,
			// so the Delay is far longer.
			const delay = 2 * processed
			b := &countingBase{}
			b.f = func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
				if k > 2 {
					return testkit.Resp(200, "third"), nil
				}
				second := (k == 1) == waitLast // this copy fails after the other
				wait := b.arrived(2)
				if second {
					wait = b.returned(3 - k)
				}
				if err := await(ctx, wait); err != nil {
					return nil, err
				}
				if second {
					if err := after(ctx, processed/2); err != nil {
						return nil, err
					}
				}
				res := testkit.Resp(503, "busy")
				if k == 1 {
					res.Header.Set("Retry-After", "1")
				}
				return res, nil
			}
			rt := hedgeRT(t, b, retryhttp.Hedging{Delay: delay},
				retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
			req, _ := get(t, guarded(t), "http://example.invalid/")
			res, err := rt.RoundTrip(req)
			require.NoError(t, err)
			res.Body.Close()
			at := b.arrivals()
			require.Len(t, at, 3)
			// The retry waits at least a second after the Retry-After was
			// read, which is after the first copy arrived.
			assert.GreaterOrEqual(t, at[2].Sub(at[0]), time.Second, "the retry after a Retry-After: 1 came too soon")
		})
	}
}

// A Classifier that retries a 200: no copy is final, so no copy wins; the
// retries go on up to MaxAttempts and the last 200 comes back whole.
func TestClassifierRetriesA200(t *testing.T) {
	b := &countingBase{f: func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
		if k == 1 {
			if err := after(ctx, 40*time.Millisecond); err != nil {
				return nil, err
			}
		}
		r2 := testkit.Resp(200, "")
		r2.Body = &trackedBody{Reader: strings.NewReader("copy " + string(rune('0'+k)))}
		return r2, nil
	}}
	rec := &recorder{}
	m, reg := newMetrics(t)
	rt := hedgeRT(t, b, retryhttp.Hedging{Delay: 10 * time.Millisecond}, retryhttp.WithObserver(rec.observe), retryhttp.WithMetrics(m),
		retryhttp.WithClassifier(func(req *http.Request, res *http.Response, err error) retryhttp.Decision {
			if res != nil && res.StatusCode == 200 {
				return retryhttp.Retry
			}
			return retryhttp.UseDefault
		}))
	req, _ := get(t, nil, "http://example.invalid/")
	res, err := rt.RoundTrip(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	assert.Equal(t, 200, res.StatusCode)
	assert.Len(t, b.arrivals(), 3, "attempts %+v", rec.snapshot())
	assert.True(t, strings.HasPrefix(string(body), "copy "), "%q", body)
	assert.Equal(t, float64(len(b.arrivals())), sum(t, reg, "retryhttp_attempts_total", nil))
	t.Logf("attempts %+v; body %q; hedge wins %v", rec.snapshot(), body, sum(t, reg, "retryhttp_hedge_wins_total", nil))
}

// WithBeforeRetry with hedging: the hook may set headers on the copy it is
// given. Under -race, a hook writing a copy's Header while another copy is in
// flight must not race with it; the caller's request keeps its headers.
func TestBeforeRetryAndHedges(t *testing.T) {
	var hookCalls atomic.Int32
	seenTokens := sync.Map{}
	b := &countingBase{f: func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
		// Read every header while the hook may write the next copy's.
		for i := 0; i < 50; i++ {
			for k, v := range r.Header {
				_, _ = k, v
			}
			time.Sleep(100 * time.Microsecond)
		}
		seenTokens.Store(k, r.Header.Get("Authorization"))
		if k <= 2 {
			if err := after(ctx, 30*time.Millisecond); err != nil {
				return nil, err
			}
			return testkit.Resp(503, "busy"), nil
		}
		return testkit.Resp(200, "ok"), nil
	}}
	rec := &recorder{}
	rt := hedgeRT(t, b, retryhttp.Hedging{Delay: 5 * time.Millisecond}, retryhttp.WithObserver(rec.observe),
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}),
		retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
			n := hookCalls.Add(1)
			next.Header.Set("Authorization", "token-"+string(rune('0'+n)))
			next.Header.Set("X-Extra", "1")
			return nil
		}))
	req, _ := get(t, nil, "http://example.invalid/")
	req.Header.Set("Authorization", "token-0")
	res, err := rt.RoundTrip(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, "token-0", req.Header.Get("Authorization"))
	assert.Empty(t, req.Header.Get("X-Extra"))
	toks := map[int]string{}
	seenTokens.Range(func(k, v any) bool { toks[k.(int)] = v.(string); return true })
	t.Logf("hook calls %d, tokens per copy %v, attempts %+v", hookCalls.Load(), toks, rec.snapshot())
}

// The caller's context canceled, or its deadline passing, while every copy
// is in flight: RoundTrip returns promptly with the context's error, every
// copy is canceled, nothing is left behind.
func TestCallerContextEndsDuringTheRace(t *testing.T) {
	for _, proto := range []string{"h1", "h2"} {
		for _, how := range []string{"cancel", "deadline"} {
			t.Run(proto+"/"+how, func(t *testing.T) {
				checkGoroutines(t)
				u := newUpstream(t, proto == "h2", func(id string, k int, w http.ResponseWriter, r *http.Request) {
					hang(r, time.Minute) // only the client ends it
				})
				rec := &recorder{}
				rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: 10 * time.Millisecond, MaxHedges: 2}, retryhttp.WithObserver(rec.observe))
				// The caller's context ends once the three copies are in:
				// canceled as soon as the third arrives, or at a deadline
				// a second away (the copies are due at 0, 10 and 20 ms).
				var ctx context.Context
				var cancel context.CancelFunc
				if how == "cancel" {
					ctx, cancel = context.WithCancel(context.Background())
				} else {
					ctx, cancel = context.WithTimeout(context.Background(), time.Second)
				}
				defer cancel()
				req, id := get(t, ctx, u.url)
				if how == "cancel" {
					go func() {
						select {
						case <-u.arrived(id, 3):
							cancel()
						case <-ctx.Done():
						}
					}()
				}
				start := time.Now()
				res, err := rt.RoundTrip(req)
				took := time.Since(start)
				require.Nil(t, res)
				require.Error(t, err)
				if how == "cancel" {
					assert.ErrorIs(t, err, context.Canceled)
				} else {
					assert.ErrorIs(t, err, context.DeadlineExceeded)
				}
				// The copies hang for a minute unless canceled: returning
				// at all, well before, shows that none was waited for.
				assert.Less(t, took, 30*time.Second)
				assert.Equal(t, 3, u.copies(id))
				for _, s := range rec.of(id) {
					assert.False(t, isLost(s.Err), "no copy won, so none lost to another: %+v", s)
				}
				require.True(t, waitFor(2*time.Second, func() bool { return u.handlersRunning.Load() == 0 }), "server handlers still running")
				u.base.(interface{ CloseIdleConnections() }).CloseIdleConnections()
			})
		}
	}
}

// A per-request Policy changes the number of copies.
func TestPerRequestPolicyBoundsCopies(t *testing.T) {
	for _, tc := range []struct{ maxAttempts, want int }{{1, 1}, {2, 2}, {5, 4}} {
		b := &countingBase{f: func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
			if k < 4 {
				return hangForever(ctx, k, r)
			}
			return testkit.Resp(200, "ok"), nil
		}}
		rt := hedgeRT(t, b, retryhttp.Hedging{Delay: 5 * time.Millisecond, MaxHedges: 3})
		// The request ends when the fourth copy answers, or is canceled
		// once its last allowed copy is in (and room for one more passed).
		ctx := retryhttp.ContextWithPolicy(guarded(t), retryhttp.Policy{MaxAttempts: tc.maxAttempts})
		req, _ := get(t, cancelOnceArrived(t, ctx, b, tc.want, 50*time.Millisecond), "http://example.invalid/")
		res, err := rt.RoundTrip(req)
		if err == nil {
			res.Body.Close()
		} else {
			assert.ErrorIs(t, err, context.Canceled, "the caller's cancellation, not the guard's deadline, ended it")
		}
		assert.Len(t, b.arrivals(), tc.want, "per-request MaxAttempts %d", tc.maxAttempts)
	}
}

// The caller's request is never modified, whichever copy wins.
func TestRequestUnchangedByHedging(t *testing.T) {
	for _, proto := range []string{"h1", "h2"} {
		u := newUpstream(t, proto == "h2", func(id string, k int, w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			if k == 1 && hang(r, time.Minute) { // the first copy waits until the hedge wins
				return
			}
			w.Header().Set("X-Copy", fmt.Sprint(k))
			_, _ = io.WriteString(w, "ok")
		})
		rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: 5 * time.Millisecond})
		ctx := context.WithValue(context.Background(), struct{}{}, "v")
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.url+"path?q=1", strings.NewReader("body"))
		require.NoError(t, err)
		req.Header.Set(idHeader, "unchanged-"+proto)
		req.Header.Set("Authorization", "a")
		hdr := req.Header.Clone()
		urlCopy := *req.URL
		body := req.Body
		cl := req.ContentLength
		host := req.Host
		res, err := rt.RoundTrip(req)
		require.NoError(t, err)
		res.Body.Close()
		// The hedge won (the first copy may not even have reached the
		// server by then, on a busy machine).
		assert.Equal(t, "2", res.Header.Get("X-Copy"))
		assert.Equal(t, hdr, req.Header)
		assert.Equal(t, urlCopy, *req.URL)
		assert.Equal(t, (*url.Userinfo)(nil), req.URL.User)
		assert.True(t, body == req.Body)
		assert.Equal(t, cl, req.ContentLength)
		assert.Equal(t, host, req.Host)
		assert.True(t, ctx == req.Context())
		assert.Nil(t, req.Response)
	}
}

// The token-refresh recipe of the README ("For SDK authors") with hedging
// on: the first copy gets a 401, the retry carries the refreshed token set by
// WithBeforeRetry and is slow, so a hedge of the retry is sent. That hedge
// is a copy of the retry: it must carry the refreshed token too, or it gets
// a 401 that the recipe's Classifier (which retries only attempt 1's 401)
// takes as final, and the caller gets a 401 that it would not get without
// hedging.
func TestHedgeOfARetryCarriesTheHooksChanges(t *testing.T) {
	var mu sync.Mutex
	var tokens []string
	api := newUpstream(t, false, func(id string, k int, w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get("Authorization")
		mu.Lock()
		tokens = append(tokens, tok)
		mu.Unlock()
		if tok == "Bearer token-1" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if k == 2 { // the retry hangs until its hedge wins
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, "hello")
	})
	var refreshed atomic.Int32
	refreshed.Store(1)
	retryOnce401 := func(req *http.Request, resp *http.Response, err error) retryhttp.Decision {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized && retryhttp.AttemptFromContext(req.Context()) == 1 {
			return retryhttp.Retry
		}
		return retryhttp.UseDefault
	}
	rec := &recorder{}
	// The 401 comes back at once: the first attempt is never hedged as
	// long as the Transport reads it within the Delay, far more than its
	// in-memory work. (A hedge of attempt 1 would carry token-1 too, and its
	// 401 be final: TestTokenRefreshRecipeWhenTheHedgeGetsThe401.)
	rt := hedgeRT(t, api.base, retryhttp.Hedging{Delay: 2 * processed},
		retryhttp.WithClassifier(retryOnce401), retryhttp.WithObserver(rec.observe),
		retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
			if prev.Response != nil && prev.Response.StatusCode == http.StatusUnauthorized {
				next.Header.Set("Authorization", "Bearer token-"+string(rune('0'+refreshed.Add(1))))
			}
			return nil
		}))
	req, id := get(t, guarded(t), api.url)
	req.Header.Set("Authorization", "Bearer token-1")
	res, err := rt.RoundTrip(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	mu.Lock()
	t.Logf("tokens the server saw: %q; attempts %+v", tokens, rec.of(id))
	mu.Unlock()
	assert.Equal(t, 200, res.StatusCode, "the hedge of the retry went out with the caller's expired token")
	assert.Equal(t, "hello", string(body))
}

// The fail-over recipe: the retry goes to a second host; so must its hedge.
func TestHedgeOfARetryFollowsTheFailover(t *testing.T) {
	primary := newUpstream(t, false, func(id string, k int, w http.ResponseWriter, r *http.Request) {
		http.Error(w, "draining", http.StatusServiceUnavailable)
	})
	secondary := newUpstream(t, false, func(id string, k int, w http.ResponseWriter, r *http.Request) {
		if k == 2 { // the retry hangs until its hedge wins
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, "secondary")
	})
	secondaryHost := strings.TrimPrefix(strings.TrimSuffix(secondary.url, "/"), "http://")
	base := primary.base // both plain HTTP/1 servers on loopback
	// The primary's 503 comes back at once: the first attempt is not
	// hedged as long as the Transport reads it within the Delay.
	rt := hedgeRT(t, base, retryhttp.Hedging{Delay: 2 * processed},
		retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
			next.URL.Host, next.Host = secondaryHost, ""
			return nil
		}))
	req, id := get(t, guarded(t), primary.url)
	res, err := rt.RoundTrip(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	t.Logf("primary got %d copies, secondary %d", primary.copies(id), secondary.copies(id))
	assert.Equal(t, "secondary", string(body))
	assert.Equal(t, 2, secondary.copies(id), "the retry and its hedge")
	assert.Equal(t, 1, primary.copies(id), "a hedge of the fail-over retry went to the primary")
}

// The README's token-refresh recipe retries a 401 only when
// AttemptFromContext is 1. With hedging on, a hedge of the first attempt is
// numbered 2, as Hedging's doc says, so its 401 is final: when the first
// copy is slow, the caller gets the 401 that, without hedging, would have
// been retried with a fresh token. The first copy here never answers on
// its own, so the hedge's 401 comes first whatever the machine's speed.
func TestTokenRefreshRecipeWhenTheHedgeGetsThe401(t *testing.T) {
	for _, hedging := range []bool{false, true} {
		api := newUpstream(t, false, func(id string, k int, w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") == "Bearer token-1" {
				if k == 1 && hedging {
					<-r.Context().Done() // until the hedge's 401 ends the request
					return
				}
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			_, _ = io.WriteString(w, "hello")
		})
		retryOnce401 := func(req *http.Request, resp *http.Response, err error) retryhttp.Decision {
			if resp != nil && resp.StatusCode == http.StatusUnauthorized && retryhttp.AttemptFromContext(req.Context()) == 1 {
				return retryhttp.Retry
			}
			return retryhttp.UseDefault
		}
		hook := retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
			if prev.Response != nil && prev.Response.StatusCode == http.StatusUnauthorized {
				next.Header.Set("Authorization", "Bearer token-2")
			}
			return nil
		})
		opts := []retryhttp.Option{retryhttp.WithPolicy(testkit.Fast), retryhttp.WithBudget(nil), retryhttp.WithClassifier(retryOnce401), hook}
		if hedging {
			opts = append(opts, retryhttp.WithHedging(retryhttp.Hedging{Delay: 10 * time.Millisecond}))
		}
		rt := retryhttp.New(api.base, opts...)
		req, id := get(t, guarded(t), api.url)
		req.Header.Set("Authorization", "Bearer token-1")
		res, err := rt.RoundTrip(req)
		require.NoError(t, err)
		res.Body.Close()
		if hedging {
			assert.Equal(t, http.StatusUnauthorized, res.StatusCode, "the hedge's 401 is attempt 2's: final for the recipe")
			assert.Equal(t, 2, api.copies(id))
		} else {
			assert.Equal(t, http.StatusOK, res.StatusCode, "without hedging, the 401 is retried with the fresh token")
			assert.Equal(t, 2, api.copies(id))
		}
	}
}
