package pipeline_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/require"
)

// holdingBase answers a request whose X-Case header is "hold" with a 429
// and Retry-After: 30 (which holds its host for 30 s), one whose X-Case is
// "short" with a 429 and retry-after-ms: 30, and every other request with
// the function given (200 if nil).
func holdingBase(calls *atomic.Int32, other func(r *http.Request) (*http.Response, error)) baseFunc {
	return func(r *http.Request) (*http.Response, error) {
		consume(r)
		calls.Add(1)
		switch r.Header.Get("X-Case") {
		case "hold":
			resp, _ := response(r, 429, "slow down", "Retry-After", "30")
			return resp, nil
		case "short":
			resp, _ := response(r, 429, "slow down", "Retry-After-Ms", "30")
			return resp, nil
		}
		if other != nil {
			return other(r)
		}
		resp, _ := response(r, 200, "ok")
		return resp, nil
	}
}

// hold makes rt hold url's host for 30 s, with one request that gets a
// 429 with Retry-After: 30 and no retry.
func hold(t *testing.T, rt http.RoundTripper, url, kind string) {
	t.Helper()
	req, err := http.NewRequestWithContext(retryhttp.ContextWithoutRetries(context.Background()), http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("X-Case", kind)
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err)
	require.Equal(t, 429, resp.StatusCode)
	resp.Body.Close()
}

// TestARequestItsHeldHostRefusesKeepsTheContract: a first attempt that its
// held host refuses is not sent; its body is closed once, the error says
// throttled with no attempt, observers see one Attempt with ErrThrottled,
// Reason "throttled" and no Duration, and the request counts with outcome
// "throttled" and no EventAttempt.
func TestARequestItsHeldHostRefusesKeepsTheContract(t *testing.T) {
	for _, kind := range []string{"replay buffer", "GetBody", "retries off", "no body"} {
		t.Run(kind, func(t *testing.T) {
			var calls atomic.Int32
			rg := newRig(t, holdingBase(&calls, nil))
			hold(t, rg.rt, "http://held.test/", "hold")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var req *http.Request
			var b *body
			switch kind {
			case "replay buffer":
				req, b = bodyReq(t, ctx, "http://held.test/x")
			case "GetBody":
				req, b = getBodyReq(t, ctx, "http://held.test/x", nil)
			case "retries off":
				req, b = bodyReq(t, retryhttp.ContextWithoutRetries(context.Background()), "http://held.test/x")
			case "no body":
				var err error
				req, err = http.NewRequestWithContext(ctx, http.MethodGet, "http://held.test/x", nil)
				require.NoError(t, err)
			}
			s := snap(req)
			resp, err := rg.rt.RoundTrip(req)
			requireContract(t, resp, err)
			s.requireUnchanged(t, req)
			require.ErrorIs(t, err, retryhttp.ErrThrottled)
			var te *retryhttp.ThrottledError
			require.ErrorAs(t, err, &te)
			require.Equal(t, "http://held.test", te.Host)
			var re *retryhttp.Error
			require.ErrorAs(t, err, &re)
			require.Equal(t, 0, re.Attempts)
			require.Equal(t, retryhttp.ReasonThrottled, re.Reason)
			require.False(t, re.Waiting)
			if b != nil {
				requireClosedOnce(t, b)
			}
			require.Equal(t, int32(1), calls.Load(), "the refused request must not reach the base")
			rg.requireAgree(t, 2)
			reqs := rg.rec.of(retryhttp.EventRequest)
			require.Equal(t, "throttled", reqs[1].Outcome)
			require.Equal(t, retryhttp.ReasonThrottled, reqs[1].Reason)
			require.Equal(t, 0, reqs[1].Attempt)
			at := rg.obs.all()
			require.Len(t, at, 2, dumpAttempts(at))
			a := at[1]
			require.Equal(t, 1, a.Number)
			require.ErrorIs(t, a.Err, retryhttp.ErrThrottled)
			require.Equal(t, retryhttp.ReasonThrottled, a.Reason)
			require.Zero(t, a.Duration)
			require.False(t, a.Retry)
			require.False(t, a.Hedge)
			require.Nil(t, a.Response)
			require.NotNil(t, a.Request)
		})
	}
}

// TestARetryItsHeldHostRefusesKeepsTheContract: the first attempt gets a
// 503 and, while it is in flight, another request has the host held for
// 30 s; the retry, whose deadline comes first, is refused. The body is
// closed once, no retry is counted or reported, and the budget gets its
// retry back.
func TestARetryItsHeldHostRefusesKeepsTheContract(t *testing.T) {
	for _, withGet := range []bool{false, true} {
		t.Run(map[bool]string{false: "replay buffer", true: "GetBody"}[withGet], func(t *testing.T) {
			bud, err := retryhttp.NewBudget(retryhttp.BudgetConfig{Ratio: 1e-9, MinPerSecond: 1e-9})
			require.NoError(t, err)
			var calls atomic.Int32
			var rg *rig
			rg = newRig(t, holdingBase(&calls, func(r *http.Request) (*http.Response, error) {
				if r.Header.Get("X-Case") == "a" && retryhttp.AttemptFromContext(r.Context()) == 1 {
					hold(t, rg.rt, "http://held.test/", "hold") // the host is held before A's answer is in
				}
				resp, _ := response(r, 503, "busy")
				return resp, nil
			}), retryhttp.WithBudget(bud))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var req *http.Request
			var b *body
			if withGet {
				req, b = getBodyReq(t, ctx, "http://held.test/x", nil)
			} else {
				req, b = bodyReq(t, ctx, "http://held.test/x")
			}
			req.Header.Set("X-Case", "a")
			before := bud.Available()
			s := snap(req)
			resp, err := rg.rt.RoundTrip(req)
			requireContract(t, resp, err)
			s.requireUnchanged(t, req)
			require.ErrorIs(t, err, retryhttp.ErrThrottled)
			var re *retryhttp.Error
			require.ErrorAs(t, err, &re)
			require.Equal(t, 1, re.Attempts)
			require.Equal(t, retryhttp.ReasonThrottled, re.Reason)
			requireClosedOnce(t, b)
			require.InDelta(t, before, bud.Available(), 0.01, "the retry not sent must be refunded")
			require.Equal(t, int32(2), calls.Load())
			rg.requireAgree(t, 2)
			require.Empty(t, rg.rec.of(retryhttp.EventRetry))
			reqs := rg.rec.of(retryhttp.EventRequest)
			a := reqs[len(reqs)-1]
			require.Equal(t, "throttled", a.Outcome)
			require.Equal(t, retryhttp.ReasonThrottled, a.Reason)
			require.Equal(t, 1, a.Attempt)
			var mine []retryhttp.Attempt
			for _, at := range rg.obs.all() {
				if at.Request.Header.Get("X-Case") == "a" {
					mine = append(mine, at)
				}
			}
			require.Len(t, mine, 1, dumpAttempts(mine))
			require.True(t, mine[0].Retry)
		})
	}
}

// TestCancelWhileHeldEndsTheRequest cancels the context when the attempt
// starts to wait for its held host (EventHeld), on the first attempt and
// on a retry.
func TestCancelWhileHeldEndsTheRequest(t *testing.T) {
	t.Run("first attempt", func(t *testing.T) {
		var calls atomic.Int32
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rg := newRig(t, holdingBase(&calls, nil), retryhttp.WithRecorder(func(e retryhttp.Event) {
			if e.Kind == retryhttp.EventHeld {
				cancel()
			}
		}))
		hold(t, rg.rt, "http://held.test/", "hold")
		req, b := bodyReq(t, ctx, "http://held.test/x")
		s := snap(req)
		resp, err := rg.rt.RoundTrip(req)
		requireContract(t, resp, err)
		s.requireUnchanged(t, req)
		require.ErrorIs(t, err, context.Canceled)
		var re *retryhttp.Error
		require.ErrorAs(t, err, &re)
		require.Equal(t, 0, re.Attempts)
		require.True(t, re.Waiting)
		require.Equal(t, retryhttp.ReasonCanceled, re.Reason)
		requireClosedOnce(t, b)
		rg.requireAgree(t, 2)
		reqs := rg.rec.of(retryhttp.EventRequest)
		require.Equal(t, "canceled", reqs[1].Outcome)
		require.Equal(t, 0, reqs[1].Attempt)
		require.Len(t, rg.rec.of(retryhttp.EventHeld), 1)
		require.Equal(t, 1, rg.rec.of(retryhttp.EventHeld)[0].Attempt)
		at := rg.obs.all()
		require.Len(t, at, 2, dumpAttempts(at))
		require.ErrorIs(t, at[1].Err, context.Canceled)
		require.Equal(t, retryhttp.ReasonCanceled, at[1].Reason)
		require.False(t, at[1].Retry)
	})
	t.Run("retry", func(t *testing.T) {
		var calls atomic.Int32
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var rg *rig
		rg = newRig(t, holdingBase(&calls, func(r *http.Request) (*http.Response, error) {
			if retryhttp.AttemptFromContext(r.Context()) == 1 {
				hold(t, rg.rt, "http://held.test/", "hold")
			}
			resp, _ := response(r, 503, "busy")
			return resp, nil
		}), retryhttp.WithRecorder(func(e retryhttp.Event) {
			if e.Kind == retryhttp.EventHeld {
				cancel()
			}
		}))
		req, b := bodyReq(t, ctx, "http://held.test/x")
		s := snap(req)
		resp, err := rg.rt.RoundTrip(req)
		requireContract(t, resp, err)
		s.requireUnchanged(t, req)
		require.ErrorIs(t, err, context.Canceled)
		var re *retryhttp.Error
		require.ErrorAs(t, err, &re)
		require.Equal(t, 1, re.Attempts)
		require.True(t, re.Waiting)
		requireClosedOnce(t, b)
		rg.requireAgree(t, 2)
		require.Empty(t, rg.rec.of(retryhttp.EventRetry))
		held := rg.rec.of(retryhttp.EventHeld)
		require.Len(t, held, 1)
		require.Equal(t, 2, held[0].Attempt)
		reqs := rg.rec.of(retryhttp.EventRequest)
		require.Equal(t, "canceled", reqs[1].Outcome)
		require.Equal(t, 1, reqs[1].Attempt)
		var mine []retryhttp.Attempt
		for _, a := range rg.obs.all() {
			if a.Request.Header.Get("X-Case") == "" {
				mine = append(mine, a)
			}
		}
		require.Len(t, mine, 1, dumpAttempts(mine))
		require.True(t, mine[0].Retry)
	})
}

// TestAHookThatMovesTheRetryToAHeldHost: the retry's hook sends it to
// another host. When that host is held past the deadline, the request
// ends throttled although the hook ran; when it is held briefly, the retry
// waits for it, the hook runs again after the wait, and the retry goes to
// the new host with its Held time.
func TestAHookThatMovesTheRetryToAHeldHost(t *testing.T) {
	t.Run("held past the deadline", func(t *testing.T) {
		var calls, hooks atomic.Int32
		rg := newRig(t, holdingBase(&calls, func(r *http.Request) (*http.Response, error) {
			resp, _ := response(r, 503, "busy")
			return resp, nil
		}), retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
			hooks.Add(1)
			next.URL.Host = "other.test"
			return nil
		}))
		hold(t, rg.rt, "http://other.test/", "hold")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, b := bodyReq(t, ctx, "http://first.test/x")
		s := snap(req)
		resp, err := rg.rt.RoundTrip(req)
		requireContract(t, resp, err)
		s.requireUnchanged(t, req)
		require.ErrorIs(t, err, retryhttp.ErrThrottled)
		var te *retryhttp.ThrottledError
		require.ErrorAs(t, err, &te)
		require.Equal(t, "http://other.test", te.Host)
		require.Equal(t, int32(1), hooks.Load())
		require.Equal(t, int32(2), calls.Load())
		requireClosedOnce(t, b)
		rg.requireAgree(t, 2)
		require.Empty(t, rg.rec.of(retryhttp.EventRetry))
		reqs := rg.rec.of(retryhttp.EventRequest)
		require.Equal(t, "throttled", reqs[1].Outcome)
		require.Equal(t, 1, reqs[1].Attempt)
	})
	t.Run("held briefly", func(t *testing.T) {
		var calls, hooks atomic.Int32
		var hosts []string
		rg := newRig(t, holdingBase(&calls, func(r *http.Request) (*http.Response, error) {
			hosts = append(hosts, r.URL.Host)
			if r.URL.Host == "first.test" {
				resp, _ := response(r, 503, "busy")
				return resp, nil
			}
			resp, _ := response(r, 200, "ok")
			return resp, nil
		}), retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
			hooks.Add(1)
			next.URL.Host = "other.test"
			return nil
		}))
		hold(t, rg.rt, "http://other.test/", "short")
		req, b := bodyReq(t, context.Background(), "http://first.test/x")
		s := snap(req)
		resp, err := rg.rt.RoundTrip(req)
		requireContract(t, resp, err)
		s.requireUnchanged(t, req)
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		resp.Body.Close()
		requireClosedOnce(t, b)
		require.Equal(t, []string{"first.test", "other.test"}, hosts)
		// The hold may be over by the time the hook runs; when the retry
		// waited for it, the hook ran again after the wait.
		held := rg.rec.of(retryhttp.EventHeld)
		at := rg.obs.all()
		last := at[len(at)-1]
		require.Equal(t, 2, last.Number)
		if len(held) == 1 {
			require.Equal(t, int32(2), hooks.Load())
			require.Equal(t, 2, held[0].Attempt)
			require.Positive(t, last.Held)
		} else {
			require.Empty(t, held)
			require.Equal(t, int32(1), hooks.Load())
			require.Zero(t, last.Held)
		}
		rg.requireAgree(t, 2)
		require.Len(t, rg.rec.of(retryhttp.EventRetry), 1)
	})
}

// quotaBase answers every request with a 200 that announces one request
// left in a window that ends in 30 s, unless X-Case asks otherwise.
func quotaBase(panics *atomic.Int32) baseFunc {
	return func(r *http.Request) (*http.Response, error) {
		consume(r)
		switch r.Header.Get("X-Case") {
		case "panic":
			panics.Add(1)
			panic("base panics")
		case "panic-retry":
			if retryhttp.AttemptFromContext(r.Context()) == 2 {
				panics.Add(1)
				panic("base panics on the retry")
			}
			resp, _ := response(r, 503, "busy", "X-RateLimit-Remaining", "1", "X-RateLimit-Reset", "30")
			return resp, nil
		}
		resp, _ := response(r, 200, "ok", "X-RateLimit-Remaining", "1", "X-RateLimit-Reset", "30")
		return resp, nil
	}
}

// TestAPanicWhileAdmittedGivesTheHostsPlaceBack: the host announces one
// request left; a request admitted to it whose base (or hook, or
// recorder) panics must give its place back, or every later request is
// held until the window ends.
func TestAPanicWhileAdmittedGivesTheHostsPlaceBack(t *testing.T) {
	type variant struct {
		name  string
		xcase string
		opts  func(panicNow *atomic.Bool) []retryhttp.Option
	}
	variants := []variant{
		{name: "base on the first attempt", xcase: "panic"},
		{name: "base on a retry", xcase: "panic-retry"},
		{name: "hook", xcase: "hook", opts: func(p *atomic.Bool) []retryhttp.Option {
			return []retryhttp.Option{retryhttp.WithBeforeRetry(func(*http.Request, retryhttp.Attempt) error {
				if p.Load() {
					panic("hook panics")
				}
				return nil
			})}
		}},
		{name: "recorder on EventRetry", xcase: "rec", opts: func(p *atomic.Bool) []retryhttp.Option {
			return []retryhttp.Option{retryhttp.WithRecorder(func(e retryhttp.Event) {
				if e.Kind == retryhttp.EventRetry && p.Load() {
					panic("recorder panics")
				}
			})}
		}},
		{name: "observer", xcase: "obs", opts: func(p *atomic.Bool) []retryhttp.Option {
			return []retryhttp.Option{retryhttp.WithObserver(func(retryhttp.Attempt) {
				if p.Load() {
					panic("observer panics")
				}
			})}
		}},
		{name: "classifier", xcase: "cls", opts: func(p *atomic.Bool) []retryhttp.Option {
			return []retryhttp.Option{retryhttp.WithClassifier(func(*http.Request, *http.Response, error) retryhttp.Decision {
				if p.Load() {
					panic("classifier panics")
				}
				return retryhttp.UseDefault
			})}
		}},
	}
	for _, v := range variants {
		for _, bare := range []bool{false, true} {
			name := v.name
			if bare {
				name += " (bare)"
			}
			t.Run(name, func(t *testing.T) {
				var panics atomic.Int32
				var panicNow atomic.Bool
				base := quotaBase(&panics)
				if v.xcase == "hook" || v.xcase == "rec" {
					inner := base
					base = func(r *http.Request) (*http.Response, error) {
						if retryhttp.AttemptFromContext(r.Context()) == 1 && r.Header.Get("X-Case") != "" {
							consume(r)
							resp, _ := response(r, 503, "busy", "X-RateLimit-Remaining", "1", "X-RateLimit-Reset", "30")
							return resp, nil
						}
						return inner(r)
					}
				}
				var opts []retryhttp.Option
				if v.opts != nil {
					opts = v.opts(&panicNow)
				}
				var rt http.RoundTripper
				if bare {
					rt = retryhttp.New(base, append([]retryhttp.Option{retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil)}, opts...)...)
				} else {
					rt = newRig(t, base, opts...).rt
				}
				get := func(xcase string, ctx context.Context) (*http.Response, error) {
					req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://quota.test/", nil)
					require.NoError(t, err)
					if xcase != "" {
						req.Header.Set("X-Case", xcase)
					}
					return rt.RoundTrip(req)
				}
				resp, err := get("", context.Background()) // the host announces its quota
				require.NoError(t, err)
				resp.Body.Close()

				panicNow.Store(true)
				p := recovered(func() {
					if resp, err := get(v.xcase, context.Background()); err == nil {
						resp.Body.Close()
					}
				})
				require.NotNil(t, p, "the panic must reach the caller")
				panicNow.Store(false)

				for i := 0; i < 3; i++ {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					resp, err := get("", ctx)
					cancel()
					require.NoError(t, err, "request %d after the panic: the host kept the panicking attempt in flight", i)
					resp.Body.Close()
				}
			})
		}
	}
}

// TestAHedgeThatPanicsGivesItsHostsPlaceBack: the host announces two
// requests left; a hedged attempt's first copy and its hedge are admitted,
// and the hedge's base panics. Once the panic has come out of RoundTrip,
// the host must have both places back.
func TestAHedgeThatPanicsGivesItsHostsPlaceBack(t *testing.T) {
	for _, who := range []int{1, 2} {
		t.Run(map[int]string{1: "first copy panics", 2: "hedge panics"}[who], func(t *testing.T) {
			hedgeIn := make(chan struct{})
			var armed atomic.Bool
			base := baseFunc(func(r *http.Request) (*http.Response, error) {
				consume(r)
				if armed.Load() {
					n := retryhttp.AttemptFromContext(r.Context())
					if n == 2 {
						close(hedgeIn)
					}
					if n == who {
						if who == 1 {
							<-hedgeIn
						}
						panic("panics while admitted")
					}
					select {
					case <-r.Context().Done():
						return nil, r.Context().Err()
					case <-time.After(100 * time.Millisecond):
					}
				}
				resp, _ := response(r, 200, "ok", "X-RateLimit-Remaining", "2", "X-RateLimit-Reset", "30")
				return resp, nil
			})
			rg := newRig(t, base, hedgeFast)
			get := func(ctx context.Context) (*http.Response, error) {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://quota.test/", nil)
				require.NoError(t, err)
				return rg.rt.RoundTrip(req)
			}
			resp, err := get(context.Background())
			require.NoError(t, err)
			resp.Body.Close()
			armed.Store(true)
			p := recovered(func() {
				if resp, err := get(context.Background()); err == nil {
					resp.Body.Close()
				}
			})
			require.Equal(t, "panics while admitted", p)
			armed.Store(false)
			time.Sleep(150 * time.Millisecond) // the copy that did not panic is back
			for i := 0; i < 3; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := get(ctx)
				cancel()
				require.NoError(t, err, "request %d after the panic", i)
				resp.Body.Close()
			}
		})
	}
}

// TestAHoldKeyThatPanicsInTheHedgeTimerComesOutOfRoundTrip: WithHoldKey's
// function panics when the hedge timer asks it: RoundTrip panics with it,
// and no hedge is sent.
func TestAHoldKeyThatPanicsInTheHedgeTimerComesOutOfRoundTrip(t *testing.T) {
	var armed atomic.Bool
	var fromTimer atomic.Bool
	b := &byAttempt{fns: map[int]func(*http.Request) (*http.Response, error){
		1: func(r *http.Request) (*http.Response, error) {
			if armed.Load() {
				fromTimer.Store(true)
				time.Sleep(50 * time.Millisecond) // past the hedge delay: the timer asks the key
			}
			resp, _ := response(r, 200, "ok", "X-RateLimit-Remaining", "100", "X-RateLimit-Reset", "30")
			return resp, nil
		},
	}}
	rg := newRig(t, b, hedgeFast, retryhttp.WithHoldKey(func(r *http.Request) string {
		if fromTimer.Load() {
			panic("key panics")
		}
		return "k"
	}))
	resp, err := rg.rt.RoundTrip(getReq(t, context.Background()))
	require.NoError(t, err)
	resp.Body.Close()
	armed.Store(true)
	p := recovered(func() {
		if resp, err := rg.rt.RoundTrip(getReq(t, context.Background())); err == nil {
			resp.Body.Close()
		}
	})
	require.Equal(t, "key panics", p)
	require.Equal(t, []int{1, 1}, b.numbers())
}

// TestAHookErrorWhileAdmittedGivesTheHostsPlaceBack: the retry is
// admitted to a host with one request left, and its hook fails.
func TestAHookErrorWhileAdmittedGivesTheHostsPlaceBack(t *testing.T) {
	var fail atomic.Bool
	base := baseFunc(func(r *http.Request) (*http.Response, error) {
		consume(r)
		code := 200
		if fail.Load() {
			code = 503
		}
		resp, _ := response(r, code, "x", "X-RateLimit-Remaining", "1", "X-RateLimit-Reset", "30")
		return resp, nil
	})
	rt := retryhttp.New(base, retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil),
		retryhttp.WithBeforeRetry(func(*http.Request, retryhttp.Attempt) error { return errors.New("no") }))
	get := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://quota.test/", nil)
		resp, err := rt.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	require.NoError(t, get())
	fail.Store(true)
	require.Error(t, get())
	fail.Store(false)
	for i := 0; i < 3; i++ {
		require.NoError(t, get(), "request %d after the hook error", i)
	}
}
