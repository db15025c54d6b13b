package pipeline_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/require"
)

// consume reads and closes a request body as net/http does.
func consume(r *http.Request) string {
	if r.Body == nil {
		return ""
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	return string(b)
}

// statusBase answers every attempt with the statuses given in turn (the
// last one repeated), reading and closing the body.
func statusBase(calls *atomic.Int32, codes ...int) baseFunc {
	return func(r *http.Request) (*http.Response, error) {
		consume(r)
		n := int(calls.Add(1))
		code := codes[min(n, len(codes))-1]
		resp, _ := response(r, code, "answer")
		return resp, nil
	}
}

// bodyReq makes a PUT with a body that has no GetBody.
func bodyReq(t *testing.T, ctx context.Context, url string) (*http.Request, *body) {
	t.Helper()
	b := newBody("payload")
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, b)
	require.NoError(t, err)
	req.Header.Set("X-Keep", "me")
	return req, b
}

// getBodyReq makes a PUT whose body has a GetBody; the first body counts
// its Close calls.
func getBodyReq(t *testing.T, ctx context.Context, url string, getBody func() (io.ReadCloser, error)) (*http.Request, *body) {
	t.Helper()
	b := newBody("payload")
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, b)
	require.NoError(t, err)
	req.ContentLength = int64(len("payload"))
	if getBody == nil {
		getBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("payload")), nil }
	}
	req.GetBody = getBody
	return req, b
}

type endCase struct {
	name      string
	codes     []int
	opts      []retryhttp.Option
	withGet   bool // the body has a GetBody
	getBody   func() (io.ReadCloser, error)
	outcome   string
	reason    string
	n         int  // attempts sent
	resp      bool // a response is returned
	lastRetry bool // the last Attempt observed has Retry true
}

// TestEveryEndKeepsTheContract runs a request with a body through each
// way a request ends after its attempts were sent: the response or the
// error (never both), the caller's request unchanged, its body closed
// exactly once, the Events and the series in agreement, and the right
// outcome, Reason and attempt count.
func TestEveryEndKeepsTheContract(t *testing.T) {
	hookErr := errors.New("hook says no")
	cases := []endCase{
		{name: "success", codes: []int{200}, outcome: "ok", n: 1, resp: true},
		{name: "success after retries", codes: []int{503, 502, 200}, outcome: "ok", n: 3, resp: true},
		{name: "final 404", codes: []int{404}, outcome: "ok", n: 1, resp: true},
		{name: "exhausted", codes: []int{503}, outcome: "exhausted", reason: retryhttp.ReasonExhausted, n: 3, resp: true},
		{name: "classifier DoNotRetry", codes: []int{503},
			opts: []retryhttp.Option{retryhttp.WithClassifier(func(*http.Request, *http.Response, error) retryhttp.Decision {
				return retryhttp.DoNotRetry
			})}, outcome: "not_retryable", reason: retryhttp.ReasonClassifier, n: 1, resp: true},
		{name: "body past the replay buffer", codes: []int{503}, opts: []retryhttp.Option{retryhttp.WithReplayBuffer(0)},
			outcome: "not_retryable", reason: retryhttp.ReasonBody, n: 1, resp: true},
		{name: "GetBody fails", codes: []int{503}, withGet: true,
			getBody: func() (io.ReadCloser, error) { return nil, errors.New("no more") },
			outcome: "not_retryable", reason: retryhttp.ReasonBody, n: 1, resp: true},
		{name: "GetBody returns nil", codes: []int{503}, withGet: true,
			getBody: func() (io.ReadCloser, error) { return nil, nil },
			outcome: "not_retryable", reason: retryhttp.ReasonBody, n: 1, resp: true},
		{name: "hook error", codes: []int{503},
			opts:    []retryhttp.Option{retryhttp.WithBeforeRetry(func(*http.Request, retryhttp.Attempt) error { return hookErr })},
			outcome: "not_retryable", reason: retryhttp.ReasonHook, n: 1, lastRetry: true},
		{name: "hook error with GetBody", codes: []int{503}, withGet: true,
			opts:    []retryhttp.Option{retryhttp.WithBeforeRetry(func(*http.Request, retryhttp.Attempt) error { return hookErr })},
			outcome: "not_retryable", reason: retryhttp.ReasonHook, n: 1, lastRetry: true},
		{name: "hook error on the second retry", codes: []int{503},
			opts: []retryhttp.Option{retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
				if prev.Number == 2 {
					return hookErr
				}
				return nil
			})},
			outcome: "not_retryable", reason: retryhttp.ReasonHook, n: 2, lastRetry: true},
		{name: "retry-after above MaxRetryAfter", codes: []int{429},
			opts:    []retryhttp.Option{retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond, MaxRetryAfter: time.Second})},
			outcome: "too_late", reason: retryhttp.ReasonRetryAfter, n: 1, resp: true},
	}
	for _, tc := range cases {
		for _, withGet := range []bool{false, true} {
			if tc.withGet && !withGet {
				continue
			}
			if withGet && tc.reason == retryhttp.ReasonBody && !tc.withGet {
				continue // GetBody replays any body: no replay buffer involved
			}
			name := tc.name
			if withGet {
				name += " (GetBody)"
			}
			t.Run(name, func(t *testing.T) {
				var calls atomic.Int32
				base := statusBase(&calls, tc.codes...)
				if tc.name == "retry-after above MaxRetryAfter" {
					base = func(r *http.Request) (*http.Response, error) {
						consume(r)
						calls.Add(1)
						resp, _ := response(r, 429, "slow down", "Retry-After", "30")
						return resp, nil
					}
				}
				rg := newRig(t, base, tc.opts...)
				var req *http.Request
				var b *body
				if withGet {
					req, b = getBodyReq(t, context.Background(), "http://example.test/x", tc.getBody)
				} else {
					req, b = bodyReq(t, context.Background(), "http://example.test/x")
				}
				s := snap(req)
				resp, err := rg.rt.RoundTrip(req)
				requireContract(t, resp, err)
				s.requireUnchanged(t, req)
				if resp != nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					require.True(t, resp.Request == req, "resp.Request must be the caller's request")
				}
				requireClosedOnce(t, b)
				require.Equal(t, tc.resp, resp != nil, "response or error: %v", err)
				require.Equal(t, tc.n, int(calls.Load()), "attempts that reached the base")
				rg.requireAgree(t, 1)
				e := rg.request(t)
				require.Equal(t, tc.outcome, e.Outcome)
				require.Equal(t, tc.reason, e.Reason)
				require.Equal(t, tc.n, e.Attempt)
				at := rg.obs.all()
				require.Len(t, at, tc.n, dumpAttempts(at))
				last := at[len(at)-1]
				require.Equal(t, tc.lastRetry, last.Retry, dumpAttempts(at))
				if !tc.lastRetry {
					require.Equal(t, tc.reason, last.Reason, dumpAttempts(at))
				}
				for i, a := range at {
					require.Equal(t, i+1, a.Number)
					require.NotNil(t, a.Request)
				}
				if err != nil {
					var re *retryhttp.Error
					require.ErrorAs(t, err, &re)
					require.Equal(t, tc.n, re.Attempts)
					require.Equal(t, tc.reason, re.Reason)
					if tc.reason == retryhttp.ReasonHook {
						require.ErrorIs(t, err, hookErr)
						require.False(t, re.Waiting)
					}
				}
			})
		}
	}
}

// TestCancelDuringTheBackoffEndsTheRequest cancels the context from the
// observer that sees the attempt reported with Retry true: the wait ends
// at once, no further Attempt is reported, no EventRetry is counted, the
// body is closed once, and the error says canceled and waiting.
func TestCancelDuringTheBackoffEndsTheRequest(t *testing.T) {
	for _, withGet := range []bool{false, true} {
		t.Run(map[bool]string{false: "replay buffer", true: "GetBody"}[withGet], func(t *testing.T) {
			var calls atomic.Int32
			rg := newRig(t, statusBase(&calls, 503),
				retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, BaseDelay: time.Hour, MaxDelay: time.Hour, Jitter: retryhttp.NoJitter}))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rg.obs.then = func(a retryhttp.Attempt) {
				if a.Retry {
					cancel()
				}
			}
			var req *http.Request
			var b *body
			if withGet {
				req, b = getBodyReq(t, ctx, "http://example.test/x", nil)
			} else {
				req, b = bodyReq(t, ctx, "http://example.test/x")
			}
			s := snap(req)
			resp, err := rg.rt.RoundTrip(req)
			requireContract(t, resp, err)
			s.requireUnchanged(t, req)
			require.Error(t, err)
			require.ErrorIs(t, err, context.Canceled)
			var re *retryhttp.Error
			require.ErrorAs(t, err, &re)
			require.True(t, re.Waiting)
			require.Equal(t, 1, re.Attempts)
			require.Equal(t, retryhttp.ReasonCanceled, re.Reason)
			requireClosedOnce(t, b)
			require.Equal(t, int32(1), calls.Load())
			at := rg.obs.all()
			require.Len(t, at, 1, dumpAttempts(at))
			require.True(t, at[0].Retry)
			rg.requireAgree(t, 1)
			require.Empty(t, rg.rec.of(retryhttp.EventRetry))
			e := rg.request(t)
			require.Equal(t, "canceled", e.Outcome)
			require.Equal(t, retryhttp.ReasonCanceled, e.Reason)
			require.Equal(t, 1, e.Attempt)
		})
	}
}

// TestBudgetRefusalEndsTheRequest: a budget with one retry in it pays the
// first request's retry and refuses the second's.
func TestBudgetRefusalEndsTheRequest(t *testing.T) {
	bud, err := retryhttp.NewBudget(retryhttp.BudgetConfig{Ratio: 1e-9, MinPerSecond: 1e-9})
	require.NoError(t, err)
	var calls atomic.Int32
	rg := newRig(t, statusBase(&calls, 503, 200, 503), retryhttp.WithBudget(bud))

	req, b := bodyReq(t, context.Background(), "http://example.test/x")
	resp, err := rg.rt.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	requireClosedOnce(t, b)

	req, b = bodyReq(t, context.Background(), "http://example.test/x")
	s := snap(req)
	resp, err = rg.rt.RoundTrip(req)
	requireContract(t, resp, err)
	s.requireUnchanged(t, req)
	require.NoError(t, err)
	require.Equal(t, 503, resp.StatusCode)
	resp.Body.Close()
	requireClosedOnce(t, b)
	rg.requireAgree(t, 2)
	reqs := rg.rec.of(retryhttp.EventRequest)
	require.Equal(t, "budget", reqs[1].Outcome)
	require.Equal(t, retryhttp.ReasonBudget, reqs[1].Reason)
	require.Equal(t, 1, reqs[1].Attempt)
	require.Len(t, rg.rec.of(retryhttp.EventBudgetRefusal), 1)
	at := rg.obs.all()
	require.Equal(t, retryhttp.ReasonBudget, at[len(at)-1].Reason, dumpAttempts(at))
	require.False(t, at[len(at)-1].Retry)
}

// TestPermanentErrorEndsTheRequest: an error no retry can fix.
func TestPermanentErrorEndsTheRequest(t *testing.T) {
	boom := errors.New("boom")
	var calls atomic.Int32
	rg := newRig(t, baseFunc(func(r *http.Request) (*http.Response, error) {
		consume(r)
		calls.Add(1)
		return nil, boom
	}))
	req, b := bodyReq(t, context.Background(), "http://example.test/x")
	s := snap(req)
	resp, err := rg.rt.RoundTrip(req)
	requireContract(t, resp, err)
	s.requireUnchanged(t, req)
	require.ErrorIs(t, err, boom)
	var re *retryhttp.Error
	require.ErrorAs(t, err, &re)
	require.Equal(t, retryhttp.ReasonPermanent, re.Reason)
	require.Equal(t, 1, re.Attempts)
	requireClosedOnce(t, b)
	rg.requireAgree(t, 1)
	e := rg.request(t)
	require.Equal(t, "not_retryable", e.Outcome)
	require.Equal(t, 1, e.Attempt)
}

// TestARequestRejectedBeforeSendingKeepsTheContract: an invalid
// per-request Policy, or a nil URL: the body is closed once, the request
// counts once with outcome "not_retryable" and no attempt, and no Attempt
// is reported.
func TestARequestRejectedBeforeSendingKeepsTheContract(t *testing.T) {
	for _, how := range []string{"bad policy", "nil URL"} {
		t.Run(how, func(t *testing.T) {
			var calls atomic.Int32
			rg := newRig(t, statusBase(&calls, 200))
			ctx := context.Background()
			if how == "bad policy" {
				ctx = retryhttp.ContextWithPolicy(ctx, retryhttp.Policy{MaxAttempts: -1})
			}
			req, b := bodyReq(t, ctx, "http://example.test/x")
			if how == "nil URL" {
				req.URL = nil
			}
			resp, err := rg.rt.RoundTrip(req)
			requireContract(t, resp, err)
			require.Error(t, err)
			requireClosedOnce(t, b)
			require.Zero(t, calls.Load())
			rg.requireAgree(t, 1)
			e := rg.request(t)
			require.Equal(t, "not_retryable", e.Outcome)
			require.Zero(t, e.Attempt)
			require.Empty(t, rg.obs.all())
		})
	}
}

// TestAHedgeWhoseGetBodyFailsIsNotSent: no hedge, no EventHedge, and the
// request goes on with its first copy.
func TestAHedgeWhoseGetBodyFailsIsNotSent(t *testing.T) {
	b := &byAttempt{fns: map[int]func(*http.Request) (*http.Response, error){
		1: func(r *http.Request) (*http.Response, error) {
			consume(r)
			time.Sleep(40 * time.Millisecond) // eight hedge delays
			resp, _ := response(r, 200, "first")
			return resp, nil
		},
	}}
	rg := newRig(t, b, retryhttp.WithHedging(retryhttp.Hedging{Delay: 5 * time.Millisecond}))
	req, caller := getBodyReq(t, context.Background(), "http://hedge.test/x", func() (io.ReadCloser, error) {
		return nil, errors.New("no copy")
	})
	resp, err := rg.rt.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	requireClosedOnce(t, caller)
	require.Equal(t, []int{1}, b.numbers())
	require.Empty(t, rg.rec.of(retryhttp.EventHedge))
	rg.requireAgree(t, 1)
}
