package pipeline_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/require"
)

var hedgeFast = retryhttp.WithHedging(retryhttp.Hedging{Delay: 5 * time.Millisecond})

// byAttempt is a base that answers each copy with the function for its
// attempt number (AttemptFromContext), counting calls.
type byAttempt struct {
	calls atomic.Int32
	mu    sync.Mutex
	fns   map[int]func(r *http.Request) (*http.Response, error)
	seen  []int
}

func (b *byAttempt) RoundTrip(r *http.Request) (*http.Response, error) {
	b.calls.Add(1)
	n := retryhttp.AttemptFromContext(r.Context())
	b.mu.Lock()
	b.seen = append(b.seen, n)
	f := b.fns[n]
	b.mu.Unlock()
	if f == nil {
		consume(r)
		resp, _ := response(r, 200, "default")
		return resp, nil
	}
	return f(r)
}

func (b *byAttempt) numbers() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.seen...)
}

func getReq(t *testing.T, ctx context.Context) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://hedge.test/x", nil)
	require.NoError(t, err)
	req.Header.Set("X-Keep", "me")
	return req
}

// TestAHedgeWinsOverAHungFirstCopy: the first copy answers only when
// canceled; the hedge's response wins, its body reads whole, the first
// copy is canceled with ErrHedgeLost as its cause, and observers, the
// recorder and the series all tell the same story.
func TestAHedgeWinsOverAHungFirstCopy(t *testing.T) {
	var cause atomic.Value
	b := &byAttempt{fns: map[int]func(*http.Request) (*http.Response, error){
		1: func(r *http.Request) (*http.Response, error) {
			<-r.Context().Done()
			cause.Store(context.Cause(r.Context()))
			return nil, r.Context().Err()
		},
		2: func(r *http.Request) (*http.Response, error) {
			resp, _ := response(r, 200, strings.Repeat("hedge wins ", 1000))
			return resp, nil
		},
	}}
	rg := newRig(t, b, hedgeFast)
	req := getReq(t, context.Background())
	s := snap(req)
	resp, err := rg.rt.RoundTrip(req)
	requireContract(t, resp, err)
	require.NoError(t, err)
	s.requireUnchanged(t, req)
	require.True(t, resp.Request == req)
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, strings.Repeat("hedge wins ", 1000), string(got))
	require.NoError(t, resp.Body.Close())
	require.ErrorIs(t, cause.Load().(error), retryhttp.ErrHedgeLost)

	at := rg.obs.all()
	require.Len(t, at, 2, dumpAttempts(at))
	loser, winner := at[0], at[1]
	require.Equal(t, 1, loser.Number)
	require.False(t, loser.Hedge)
	require.ErrorIs(t, loser.Err, retryhttp.ErrHedgeLost)
	require.False(t, loser.Retry)
	require.Empty(t, loser.Reason)
	require.Positive(t, loser.Duration)
	require.Equal(t, 2, winner.Number)
	require.True(t, winner.Hedge)
	require.NoError(t, winner.Err)
	require.Equal(t, 200, winner.Response.StatusCode)
	require.False(t, winner.Retry)
	require.Empty(t, winner.Reason)
	require.Equal(t, 2, retryhttp.AttemptFromContext(winner.Request.Context()))

	rg.requireAgree(t, 1)
	e := rg.request(t)
	require.Equal(t, "ok", e.Outcome)
	require.Equal(t, 2, e.Attempt)
	require.Len(t, rg.rec.of(retryhttp.EventHedge), 1)
	require.Equal(t, 2, rg.rec.of(retryhttp.EventHedge)[0].Attempt)
	require.Len(t, rg.rec.of(retryhttp.EventHedgeWon), 1)
	require.Equal(t, 2, rg.rec.of(retryhttp.EventHedgeWon)[0].Attempt)
	require.Empty(t, rg.rec.of(retryhttp.EventRetry))
}

// TestALosingFirstCopysLateResponseIsClosed: over a base that ignores the
// cancellation a while, the first copy answers 200 after the hedge won:
// its body is closed, and observers see it lost.
func TestALosingFirstCopysLateResponseIsClosed(t *testing.T) {
	var late *respBody
	b := &byAttempt{fns: map[int]func(*http.Request) (*http.Response, error){
		1: func(r *http.Request) (*http.Response, error) {
			<-r.Context().Done() // the hedge won
			resp, body := response(r, 200, "late")
			late = body
			return resp, nil
		},
		2: func(r *http.Request) (*http.Response, error) {
			resp, _ := response(r, 200, "hedge")
			return resp, nil
		},
	}}
	rg := newRig(t, b, hedgeFast)
	resp, err := rg.rt.RoundTrip(getReq(t, context.Background()))
	require.NoError(t, err)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "hedge", string(got))
	require.NotNil(t, late)
	require.Equal(t, int32(1), late.closes.Load(), "the loser's body must be closed once")
	at := rg.obs.all()
	require.Len(t, at, 2, dumpAttempts(at))
	require.ErrorIs(t, at[0].Err, retryhttp.ErrHedgeLost)
	require.Nil(t, at[0].Response)
	rg.requireAgree(t, 1)
	codes := map[int]int{}
	for _, e := range rg.rec.of(retryhttp.EventAttempt) {
		codes[e.Attempt] = e.Code
	}
	require.Equal(t, map[int]int{1: 0, 2: 200}, codes, "a lost copy counts as an attempt without a response")
}

// TestAHedgeThatLosesIsCanceledAndReported: the first copy answers once
// the hedge is in flight; the hedge is canceled and reported lost, with
// Hedge true.
func TestAHedgeThatLosesIsCanceledAndReported(t *testing.T) {
	hedgeIn := make(chan struct{})
	var hedgeCanceled atomic.Bool
	var hedgeBody atomic.Pointer[respBody]
	b := &byAttempt{fns: map[int]func(*http.Request) (*http.Response, error){
		1: func(r *http.Request) (*http.Response, error) {
			<-hedgeIn
			resp, _ := response(r, 200, "first")
			return resp, nil
		},
		2: func(r *http.Request) (*http.Response, error) {
			close(hedgeIn)
			<-r.Context().Done()
			hedgeCanceled.Store(errors.Is(context.Cause(r.Context()), retryhttp.ErrHedgeLost))
			resp, body := response(r, 200, "too late") // a base that answers anyway
			hedgeBody.Store(body)
			return resp, nil
		},
	}}
	rg := newRig(t, b, hedgeFast)
	resp, err := rg.rt.RoundTrip(getReq(t, context.Background()))
	require.NoError(t, err)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "first", string(got))
	require.Eventually(t, hedgeCanceled.Load, 2*time.Second, time.Millisecond, "the losing hedge must be canceled with ErrHedgeLost")
	at := rg.obs.all()
	require.Len(t, at, 2, dumpAttempts(at))
	var loser, winner retryhttp.Attempt
	for _, a := range at {
		if a.Number == 2 {
			loser = a
		} else {
			winner = a
		}
	}
	require.True(t, loser.Hedge)
	require.ErrorIs(t, loser.Err, retryhttp.ErrHedgeLost)
	require.False(t, winner.Hedge)
	require.Equal(t, 1, winner.Number)
	require.Equal(t, at[len(at)-1].Number, 1, "the copy that decides is reported last")
	require.Eventually(t, func() bool { hb := hedgeBody.Load(); return hb != nil && hb.closes.Load() == 1 }, 2*time.Second, time.Millisecond)
	rg.requireAgree(t, 1)
	require.Empty(t, rg.rec.of(retryhttp.EventHedgeWon))
	require.Len(t, rg.rec.of(retryhttp.EventHedge), 1)
}

// TestWhenEveryCopyFailsTheCopiesCountTowardMaxAttempts: two copies of
// attempt 1 answer 503; the retry is attempt 3, the last MaxAttempts
// allows; its 503 exhausts the request.
func TestWhenEveryCopyFailsTheCopiesCountTowardMaxAttempts(t *testing.T) {
	hedgeDone := make(chan struct{})
	var bodies []*respBody
	var mu sync.Mutex
	answer := func(r *http.Request) *http.Response {
		resp, body := response(r, 503, "busy")
		mu.Lock()
		bodies = append(bodies, body)
		mu.Unlock()
		return resp
	}
	b := &byAttempt{}
	b.fns = map[int]func(*http.Request) (*http.Response, error){
		1: func(r *http.Request) (*http.Response, error) {
			<-hedgeDone
			return answer(r), nil
		},
		2: func(r *http.Request) (*http.Response, error) {
			defer close(hedgeDone)
			return answer(r), nil
		},
		3: func(r *http.Request) (*http.Response, error) { return answer(r), nil },
		4: func(r *http.Request) (*http.Response, error) { return answer(r), nil },
	}
	// The retry (attempt 3) is not hedged: MaxAttempts leaves no room.
	rg := newRig(t, b, hedgeFast)
	resp, err := rg.rt.RoundTrip(getReq(t, context.Background()))
	require.NoError(t, err)
	require.Equal(t, 503, resp.StatusCode)
	resp.Body.Close()
	require.Equal(t, []int{1, 2, 3}, b.numbers())
	mu.Lock()
	for i, body := range bodies {
		require.Equal(t, int32(1), body.closes.Load(), "body %d", i)
	}
	mu.Unlock()
	at := rg.obs.all()
	require.Len(t, at, 3, dumpAttempts(at))
	retries := 0
	for _, a := range at[:2] {
		if a.Retry {
			retries++
			require.Equal(t, "503", a.Reason)
		} else {
			require.Empty(t, a.Reason, "a copy that does not decide has no Reason")
			require.NotNil(t, a.Response)
		}
	}
	require.Equal(t, 1, retries, dumpAttempts(at))
	require.Equal(t, 3, at[2].Number)
	require.Equal(t, retryhttp.ReasonExhausted, at[2].Reason)
	rg.requireAgree(t, 1)
	e := rg.request(t)
	require.Equal(t, "exhausted", e.Outcome)
	require.Equal(t, 3, e.Attempt)
	require.Len(t, rg.rec.of(retryhttp.EventRetry), 1)
	require.Len(t, rg.rec.of(retryhttp.EventHedge), 1)
	require.Empty(t, rg.rec.of(retryhttp.EventHedgeWon))
}

// TestAHedgesWaitSignalStopsTheHedges: the hedge gets a 429 that asks for
// a 10 ms wait: no further hedge is sent for that attempt (MaxHedges 2
// would allow one), the retry waits what the 429 asked, and the retry is
// not hedged.
func TestAHedgesWaitSignalStopsTheHedges(t *testing.T) {
	release := make(chan struct{})
	b := &byAttempt{}
	b.fns = map[int]func(*http.Request) (*http.Response, error){
		1: func(r *http.Request) (*http.Response, error) {
			<-release
			resp, _ := response(r, 503, "busy")
			return resp, nil
		},
		2: func(r *http.Request) (*http.Response, error) {
			resp, _ := response(r, 429, "slow down", "Retry-After-Ms", "10")
			return resp, nil
		},
		3: func(r *http.Request) (*http.Response, error) {
			time.Sleep(60 * time.Millisecond) // long past the hedge delay
			resp, _ := response(r, 200, "ok")
			return resp, nil
		},
	}
	rg := newRig(t, b, retryhttp.WithHedging(retryhttp.Hedging{Delay: 5 * time.Millisecond, MaxHedges: 2}),
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 6, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	go func() {
		// Many hedge delays after the 429 came in.
		for b.calls.Load() < 2 {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(60 * time.Millisecond)
		close(release)
	}()
	resp, err := rg.rt.RoundTrip(getReq(t, context.Background()))
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	resp.Body.Close()
	require.Equal(t, []int{1, 2, 3}, b.numbers(), "no hedge after a copy asked for a wait, nor for the retry")
	retries := rg.rec.of(retryhttp.EventRetry)
	require.Len(t, retries, 1)
	require.True(t, retries[0].ServerWait, "the retry waits what the 429 asked")
	require.Equal(t, "429", retries[0].Reason)
	require.Equal(t, 2, retries[0].Attempt, "the retry follows the copy whose response asked for the wait")
	rg.requireAgree(t, 1)
}

// TestAPanicInAHedgeComesOutOfRoundTrip: the base, or the Classifier,
// panics in the hedge's goroutine: RoundTrip panics with that value in the
// caller's goroutine, the first copy is canceled, and nothing is left
// running.
func TestAPanicInAHedgeComesOutOfRoundTrip(t *testing.T) {
	for _, where := range []string{"base", "classifier"} {
		t.Run(where, func(t *testing.T) {
			g0 := baseline()
			var firstCanceled atomic.Bool
			b := &byAttempt{fns: map[int]func(*http.Request) (*http.Response, error){
				1: func(r *http.Request) (*http.Response, error) {
					<-r.Context().Done()
					firstCanceled.Store(true)
					return nil, r.Context().Err()
				},
				2: func(r *http.Request) (*http.Response, error) {
					if where == "base" {
						panic("hedge base panics")
					}
					resp, _ := response(r, 200, "ok")
					return resp, nil
				},
			}}
			opts := []retryhttp.Option{hedgeFast}
			if where == "classifier" {
				opts = append(opts, retryhttp.WithClassifier(func(req *http.Request, _ *http.Response, _ error) retryhttp.Decision {
					if retryhttp.AttemptFromContext(req.Context()) == 2 {
						panic("classifier panics")
					}
					return retryhttp.UseDefault
				}))
			}
			rg := newRig(t, b, opts...)
			p := recovered(func() { _, _ = rg.rt.RoundTrip(getReq(t, context.Background())) })
			require.Equal(t, where+" panics", strings.Replace(p.(string), "hedge base", "base", 1))
			require.True(t, firstCanceled.Load())
			require.LessOrEqual(t, settleGoroutines(g0), g0, "goroutines left behind")
		})
	}
}

// TestAPanicOfTheFirstCopyLeavesNoHedgeBehind: the first copy's base
// panics while its hedge is in flight. The panic comes out of RoundTrip;
// the hedge, whose answer nobody will read, must be canceled and its
// response closed. (Before sendFirst, the round was abandoned by the panic:
// a leaked connection with a real base.)
func TestAPanicOfTheFirstCopyLeavesNoHedgeBehind(t *testing.T) {
	hedgeIn := make(chan struct{})
	var hedgeBody atomic.Pointer[respBody]
	var canceled atomic.Bool
	b := &byAttempt{fns: map[int]func(*http.Request) (*http.Response, error){
		1: func(r *http.Request) (*http.Response, error) {
			<-hedgeIn
			panic("first copy panics")
		},
		2: func(r *http.Request) (*http.Response, error) {
			close(hedgeIn)
			select {
			case <-r.Context().Done():
				canceled.Store(true)
				return nil, r.Context().Err()
			case <-time.After(300 * time.Millisecond):
			}
			resp, body := response(r, 200, "nobody reads this")
			hedgeBody.Store(body)
			return resp, nil
		},
	}}
	rg := newRig(t, b, hedgeFast)
	p := recovered(func() { _, _ = rg.rt.RoundTrip(getReq(t, context.Background())) })
	require.Equal(t, "first copy panics", p)
	require.Eventually(t, func() bool {
		body := hedgeBody.Load()
		return canceled.Load() || (body != nil && body.closes.Load() == 1)
	}, 2*time.Second, 5*time.Millisecond, "the orphaned hedge was neither canceled nor its response closed")
}

// TestAPanicOfTheFirstCopySendsNoHedgeAfterwards: the first copy's base
// panics before the hedge delay: no hedge may be sent for a request that
// has ended. (Before sendFirst, the timer stayed armed and sent a hedge
// nobody waited for.) A busy machine can only make this test miss the
// defect, never fail it falsely.
func TestAPanicOfTheFirstCopySendsNoHedgeAfterwards(t *testing.T) {
	b := &byAttempt{fns: map[int]func(*http.Request) (*http.Response, error){
		1: func(r *http.Request) (*http.Response, error) { panic("first copy panics") },
	}}
	rg := newRig(t, b, retryhttp.WithHedging(retryhttp.Hedging{Delay: 20 * time.Millisecond}))
	p := recovered(func() { _, _ = rg.rt.RoundTrip(getReq(t, context.Background())) })
	require.Equal(t, "first copy panics", p)
	time.Sleep(200 * time.Millisecond) // ten hedge delays
	require.Equal(t, []int{1}, b.numbers(), "a hedge was sent after RoundTrip ended")
	require.Empty(t, rg.rec.of(retryhttp.EventHedge))
}

// TestHedgeBodiesAreClosed: a PUT with GetBody is hedged; the caller's
// body is closed once, and every body GetBody made is closed.
func TestHedgeBodiesAreClosed(t *testing.T) {
	var made []*body
	var mu sync.Mutex
	getBody := func() (io.ReadCloser, error) {
		b := newBody("payload")
		mu.Lock()
		made = append(made, b)
		mu.Unlock()
		return b, nil
	}
	b := &byAttempt{fns: map[int]func(*http.Request) (*http.Response, error){
		1: func(r *http.Request) (*http.Response, error) {
			<-r.Context().Done()
			r.Body.Close()
			return nil, r.Context().Err()
		},
		2: func(r *http.Request) (*http.Response, error) {
			require.Equal(t, "payload", consume(r))
			resp, _ := response(r, 200, "ok")
			return resp, nil
		},
	}}
	rg := newRig(t, b, hedgeFast)
	req, caller := getBodyReq(t, context.Background(), "http://hedge.test/x", getBody)
	s := snap(req)
	resp, err := rg.rt.RoundTrip(req)
	require.NoError(t, err)
	s.requireUnchanged(t, req)
	resp.Body.Close()
	requireClosedOnce(t, caller)
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, made)
	for _, m := range made {
		require.Equal(t, int32(1), m.closes.Load())
	}
	rg.requireAgree(t, 1)
}

// TestHedgesStopAtMaxAttempts: MaxHedges 2 would allow two hedges, but
// MaxAttempts 2 leaves room for one; both copies fail, and the request is
// exhausted without a retry. The Classifier is asked once per copy.
func TestHedgesStopAtMaxAttempts(t *testing.T) {
	hedgeDone := make(chan struct{})
	b := &byAttempt{fns: map[int]func(*http.Request) (*http.Response, error){
		1: func(r *http.Request) (*http.Response, error) {
			<-hedgeDone
			time.Sleep(30 * time.Millisecond) // six hedge delays
			resp, _ := response(r, 503, "busy")
			return resp, nil
		},
		2: func(r *http.Request) (*http.Response, error) {
			defer close(hedgeDone)
			resp, _ := response(r, 503, "busy")
			return resp, nil
		},
	}}
	var mu sync.Mutex
	asked := map[int]int{}
	rg := newRig(t, b, retryhttp.WithHedging(retryhttp.Hedging{Delay: 5 * time.Millisecond, MaxHedges: 2}),
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}),
		retryhttp.WithClassifier(func(req *http.Request, _ *http.Response, _ error) retryhttp.Decision {
			mu.Lock()
			asked[retryhttp.AttemptFromContext(req.Context())]++
			mu.Unlock()
			return retryhttp.UseDefault
		}))
	resp, err := rg.rt.RoundTrip(getReq(t, context.Background()))
	require.NoError(t, err)
	require.Equal(t, 503, resp.StatusCode)
	resp.Body.Close()
	require.Equal(t, []int{1, 2}, b.numbers())
	mu.Lock()
	require.Equal(t, map[int]int{1: 1, 2: 1}, asked, "the Classifier is asked once per copy")
	mu.Unlock()
	rg.requireAgree(t, 1)
	e := rg.request(t)
	require.Equal(t, "exhausted", e.Outcome)
	require.Equal(t, 2, e.Attempt)
	at := rg.obs.all()
	require.Len(t, at, 2, dumpAttempts(at))
	require.Equal(t, retryhttp.ReasonExhausted, at[1].Reason)
}

// TestHeldIsReportedForTheCopyThatWaited: the host is held briefly; a
// hedged request's first copy waits for it, then hangs, and its hedge
// (sent once the hold is over, without waiting) wins. Attempt.Held is
// "how long the attempt waited for its host's quota before it was sent":
// the first copy's, not the winning hedge's, which never waited.
func TestHeldIsReportedForTheCopyThatWaited(t *testing.T) {
	var calls atomic.Int32
	b := &byAttempt{fns: map[int]func(*http.Request) (*http.Response, error){
		1: func(r *http.Request) (*http.Response, error) {
			if r.Header.Get("X-Case") == "short" {
				return holdingBase(&calls, nil)(r)
			}
			<-r.Context().Done()
			return nil, r.Context().Err()
		},
		2: func(r *http.Request) (*http.Response, error) {
			resp, _ := response(r, 200, "hedge")
			return resp, nil
		},
	}}
	rg := newRig(t, b, hedgeFast)
	hold(t, rg.rt, "http://hedge.test/", "short")
	resp, err := rg.rt.RoundTrip(getReq(t, context.Background()))
	require.NoError(t, err)
	resp.Body.Close()
	held := rg.rec.of(retryhttp.EventHeld)
	if len(held) == 0 {
		t.Skip("the hold was over before the request came: nothing to check")
	}
	at := rg.obs.all()[1:]
	require.Len(t, at, 2, dumpAttempts(at))
	require.Equal(t, 1, at[0].Number)
	require.Equal(t, 2, at[1].Number)
	require.True(t, at[1].Hedge)
	require.Positive(t, at[0].Held, "the first copy waited for its host: %s", dumpAttempts(at))
	require.Zero(t, at[1].Held, "the hedge never waited for its host: %s", dumpAttempts(at))
}
