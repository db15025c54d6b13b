package hedging_test

// Observers and metrics under a mix of races: every copy reported exactly
// once, before RoundTrip returns, with unique numbers within MaxAttempts that
// match AttemptFromContext; Hedge flags and ErrHedgeLost right; the counters
// consistent with what the base received.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type copyInfo struct {
	number int  // AttemptFromContext of the copy
	ended  bool // the base returned
	byCtx  bool // it returned because its context ended
	status int
}

func TestObserversAndMetricsUnderMixedRaces(t *testing.T) {
	const maxAttempts = 4
	const delay = 8 * time.Millisecond
	var mu sync.Mutex
	copies := map[string][]*copyInfo{}
	var calls atomic.Int32
	// scenario s, and the copy's place among its request's copies, decide.
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		calls.Add(1)
		id := r.Header.Get(idHeader)
		s, _ := strconv.Atoi(r.Header.Get("X-Scenario"))
		ci := &copyInfo{number: retryhttp.AttemptFromContext(r.Context())}
		mu.Lock()
		copies[id] = append(copies[id], ci)
		k := len(copies[id])
		mu.Unlock()
		wait, status := time.Duration(0), 200
		switch s {
		case 0: // fast
		case 1: // the first copy slow, the hedge fast
			if k == 1 {
				wait = 10 * delay
			}
		case 2: // the first answers after the hedge was sent; the hedge is slow
			if k == 1 {
				wait = 2 * delay
			} else {
				wait = 10 * delay
			}
		case 3: // the first is a slow 503, the hedge a 200
			if k == 1 {
				wait, status = 3*delay, 503
			} else {
				wait = 4 * delay
			}
		case 4: // everything slow 503
			wait, status = 2*delay, 503
		case 5: // the first slow 200, the hedge a fast 503
			if k == 1 {
				wait = 4 * delay
			} else {
				status = 503
			}
		}
		select {
		case <-r.Context().Done():
			mu.Lock()
			ci.ended, ci.byCtx = true, true
			mu.Unlock()
			return nil, r.Context().Err()
		case <-time.After(wait):
		}
		mu.Lock()
		ci.ended, ci.status = true, status
		mu.Unlock()
		res := testkit.Resp(status, "")
		res.Header.Set("X-Attempt", strconv.Itoa(ci.number))
		return res, nil
	})
	m, reg := newMetrics(t)
	var obsMu sync.Mutex
	reported := map[string][]retryhttp.Attempt{}
	returned := map[string]bool{}
	var lateReports atomic.Int32
	rt := hedgeRT(t, base, retryhttp.Hedging{Delay: delay, MaxHedges: 2}, retryhttp.WithMetrics(m),
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: maxAttempts, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}),
		retryhttp.WithObserver(func(a retryhttp.Attempt) {
			id := a.Request.Header.Get(idHeader)
			obsMu.Lock()
			defer obsMu.Unlock()
			if returned[id] {
				lateReports.Add(1)
			}
			a.Request, a.Response = nil, nil
			reported[id] = append(reported[id], a)
		}))

	type outcome struct {
		status  int
		attempt int
	}
	results := map[string]outcome{}
	var resMu sync.Mutex
	var wg sync.WaitGroup
	const requests = 300
	next := atomic.Int32{}
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > requests {
					return
				}
				req, id := get(t, nil, "http://example.invalid/")
				req.Header.Set("X-Scenario", strconv.Itoa(i%6))
				res, err := rt.RoundTrip(req)
				obsMu.Lock()
				returned[id] = true
				obsMu.Unlock()
				if !assert.NoError(t, err) {
					continue
				}
				n, _ := strconv.Atoi(res.Header.Get("X-Attempt"))
				res.Body.Close()
				resMu.Lock()
				results[id] = outcome{res.StatusCode, n}
				resMu.Unlock()
			}
		}()
	}
	wg.Wait()
	time.Sleep(100 * time.Millisecond) // let any late report show

	assert.Zero(t, lateReports.Load(), "attempts reported after their RoundTrip returned")
	obsMu.Lock()
	defer obsMu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	totalReports, hedgeReports, hedgeWins := 0, 0, 0
	winsByStatus := map[int]int{}
	problems := 0
	for id, cs := range copies {
		reps := reported[id]
		totalReports += len(reps)
		byNumber := map[int]retryhttp.Attempt{}
		for _, a := range reps {
			if _, dup := byNumber[a.Number]; dup {
				t.Errorf("request %s: number %d reported twice: %+v", id, a.Number, reps)
			}
			byNumber[a.Number] = a
			if a.Hedge {
				hedgeReports++
			}
			if a.Number == 1 && a.Hedge {
				t.Errorf("request %s: attempt 1 marked as a hedge", id)
			}
			if a.Number > maxAttempts {
				t.Errorf("request %s: number %d above MaxAttempts", id, a.Number)
			}
		}
		if len(reps) != len(cs) {
			problems++
			if problems < 5 {
				t.Errorf("request %s: %d copies sent, %d reported: %+v", id, len(cs), len(reps), reps)
			}
		}
		ctxNums := []int{}
		for _, c := range cs {
			ctxNums = append(ctxNums, c.number)
			a, ok := byNumber[c.number]
			if !ok {
				t.Errorf("request %s: the base saw attempt %d, no observer report has it: %+v", id, c.number, reps)
				continue
			}
			if c.byCtx && a.Err != nil && !isLost(a.Err) && results[id].status != 0 {
				t.Errorf("request %s: copy %d canceled because another won, reported with %v", id, c.number, a.Err)
			}
			// A copy that answered just as another won may be reported as
			// lost (its answer was discarded); but the copy whose response
			// the caller got never is.
			if o, ok := results[id]; ok && o.attempt == c.number && isLost(a.Err) {
				t.Errorf("request %s: copy %d's response was returned, yet it is reported as ErrHedgeLost", id, c.number)
			}
		}
		sort.Ints(ctxNums)
		for i := 1; i < len(ctxNums); i++ {
			if ctxNums[i] == ctxNums[i-1] {
				t.Errorf("request %s: AttemptFromContext %d given to two copies: %v", id, ctxNums[i], ctxNums)
			}
		}
		if o, ok := results[id]; ok {
			if a, ok := byNumber[o.attempt]; ok && a.Hedge {
				hedgeWins++
				winsByStatus[o.status]++
			}
		}
	}
	assert.Equal(t, int(calls.Load()), totalReports, "every copy reported once")
	assert.Equal(t, float64(calls.Load()), sum(t, reg, "retryhttp_attempts_total", nil), "attempts_total equals what the base received")
	assert.Equal(t, float64(hedgeReports), sum(t, reg, "retryhttp_hedges_total", map[string]string{"method": "GET"}), "hedges_total")
	// Final answers only here; a hedge's 503 returned when the retries are
	// exhausted is TestHedgeWinsCountsEveryReturnedHedgeResponse's.
	assert.Equal(t, float64(winsByStatus[200]), sum(t, reg, "retryhttp_hedge_wins_total", map[string]string{"method": "GET"}), "hedge_wins_total: hedges whose final response was returned")
	assert.Equal(t, float64(requests), sum(t, reg, "retryhttp_requests_total", nil))
	t.Logf("copies %d, hedges %d, requests answered by a hedge's response %d (by status %v)", calls.Load(), hedgeReports, hedgeWins, winsByStatus)
}

// Over a real server: attempts_total counts every copy the server received,
// and beside them only copies canceled in flight because another won; the
// hedge counters match the observer.
func TestMetricsMatchServerArrivals(t *testing.T) {
	for _, proto := range []string{"h1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			type copyID struct {
				id string
				k  int
			}
			var arrivedMu sync.Mutex
			arrived := map[copyID]bool{}
			u := newUpstream(t, proto == "h2", func(id string, k int, w http.ResponseWriter, r *http.Request) {
				arrivedMu.Lock()
				arrived[copyID{id, k}] = true
				arrivedMu.Unlock()
				n, _ := atoi(id)
				if n%2 == 0 && k == 1 && hang(r, time.Minute) {
					return
				}
				_, _ = io.WriteString(w, "ok")
			})
			m, reg := newMetrics(t)
			rec := &recorder{}
			rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: 15 * time.Millisecond}, retryhttp.WithMetrics(m), retryhttp.WithObserver(rec.observe))
			// Warm the connections so no hedge dies in a dial.
			for i := 0; i < 40; i++ {
				req, _ := get(t, nil, u.url)
				req.Header.Set(idHeader, fmt.Sprint(2*i+1)) // odd: fast
				res, err := rt.RoundTrip(req)
				require.NoError(t, err)
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
			for i := 0; i < 40; i++ {
				req, _ := get(t, nil, u.url)
				req.Header.Set(idHeader, fmt.Sprint(1000+2*i))
				res, err := rt.RoundTrip(req)
				require.NoError(t, err)
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
			hedges, lost, lostInFlight := 0, 0, 0
			arrivedMu.Lock()
			for _, s := range rec.snapshot() {
				if s.Hedge {
					hedges++
				}
				if isLost(s.Err) {
					lost++
				}
				if !arrived[copyID{s.id, s.Number}] {
					// A copy canceled before the server read it (a fast
					// request hedged when -race or a busy machine slowed
					// it, and answered first): sent, never received.
					assert.True(t, isLost(s.Err), "request %s: copy %d never arrived, yet was not canceled for another (%v)", s.id, s.Number, s.Err)
					lostInFlight++
				}
			}
			require.Len(t, arrived, int(u.arrivals.Load()), "each copy arrives once")
			arrivedMu.Unlock()
			assert.Equal(t, float64(int(u.arrivals.Load())+lostInFlight), sum(t, reg, "retryhttp_attempts_total", nil), "attempts_total vs server arrivals and copies canceled in flight")
			assert.Equal(t, float64(hedges), sum(t, reg, "retryhttp_hedges_total", nil))
			// 40 first copies hung: their hedges won. A fast request slowed
			// by -race may have been hedged too, either copy winning.
			wins := sum(t, reg, "retryhttp_hedge_wins_total", nil)
			assert.GreaterOrEqual(t, wins, 40.0)
			assert.LessOrEqual(t, wins, float64(hedges))
			assert.GreaterOrEqual(t, hedges, 40)
			assert.GreaterOrEqual(t, lost, 40)
			t.Logf("arrivals %d, hedges %d; attempts_total by code: 200=%v error=%v", u.arrivals.Load(), hedges,
				sum(t, reg, "retryhttp_attempts_total", map[string]string{"code": "200"}), sum(t, reg, "retryhttp_attempts_total", map[string]string{"code": "error"}))
		})
	}
}

// Observers run in the goroutine of RoundTrip: an observer that writes
// unsynchronized state is safe when one request runs at a time (-race would
// say otherwise).
func TestObserverNeedsNoLockForOneRequestAtATime(t *testing.T) {
	var count int // deliberately unsynchronized
	b := &countingBase{f: func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
		if k%2 == 1 {
			return hangForever(ctx, k, r)
		}
		return testkit.Resp(200, "ok"), nil
	}}
	rt := hedgeRT(t, b, retryhttp.Hedging{Delay: 2 * time.Millisecond}, retryhttp.WithObserver(func(a retryhttp.Attempt) { count++ }))
	for i := 0; i < 50; i++ {
		req, _ := get(t, nil, "http://example.invalid/")
		res, err := rt.RoundTrip(req)
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, 2*(i+1), count)
	}
}

// Metrics' godoc: retryhttp_hedge_wins_total counts "each hedge whose response
// was returned". When every copy fails and the attempts run out, the response
// returned (a 503) may be a hedge's: it is returned, so it counts.
func TestHedgeWinsCountsOnlyWins(t *testing.T) {
	// The first copy fails once the hedge is in; the hedge fails last, once
	// the Transport has had the first copy's failure for a while.
	b := &countingBase{}
	b.f = func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
		wait := b.arrived(2)
		if k == 2 {
			wait = b.returned(1)
		}
		if err := await(ctx, wait); err != nil {
			return nil, err
		}
		if k == 2 {
			if err := after(ctx, processed); err != nil {
				return nil, err
			}
		}
		res := testkit.Resp(503, "copy "+strconv.Itoa(k))
		res.Header.Set("X-Attempt", strconv.Itoa(retryhttp.AttemptFromContext(r.Context())))
		return res, nil
	}
	m, reg := newMetrics(t)
	rec := &recorder{}
	rt := hedgeRT(t, b, retryhttp.Hedging{Delay: 10 * time.Millisecond}, retryhttp.WithMetrics(m), retryhttp.WithObserver(rec.observe),
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	req, _ := get(t, guarded(t), "http://example.invalid/")
	res, err := rt.RoundTrip(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, 503, res.StatusCode)
	require.Equal(t, "copy 2", string(body), "the last failure, the hedge's, is returned; attempts %+v", rec.snapshot())
	assert.Equal(t, 1.0, sum(t, reg, "retryhttp_hedges_total", nil))
	// Reviewed: the docs disagreed (Metrics: "returned"; README: "won"). A
	// hedge wins when its response is final and comes first; a hedge whose
	// failure is returned because every copy failed won nothing. The
	// Metrics doc now says so.
	assert.Zero(t, sum(t, reg, "retryhttp_hedge_wins_total", nil), "a failure returned is no win")
}
