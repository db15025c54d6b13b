package sdk_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Observers are called for every attempt, in RoundTrip's goroutine, before
// it returns, in the order given, with the right fields.
func TestObserversSeeEveryAttempt(t *testing.T) {
	var mu sync.Mutex
	var sent []*http.Request
	codes := []int{503, 500, 200}
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, r)
		if len(sent) == 2 {
			return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
		}
		return testkit.Resp(codes[len(sent)-1], "b"), nil
	})
	var order []string
	var gids []int
	var returned atomic.Bool
	a := &recorder{}
	rt := testkit.NewRT(t, base,
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, BaseDelay: 30 * time.Millisecond, MaxDelay: 100 * time.Millisecond, Jitter: retryhttp.NoJitter}),
		retryhttp.WithObserver(func(at retryhttp.Attempt) {
			assert.False(t, returned.Load(), "an observer ran after RoundTrip returned")
			order = append(order, "first")
			gids = append(gids, goid())
			a.observe(at)
		}),
		retryhttp.WithObserver(nil),
		retryhttp.WithObserver(func(at retryhttp.Attempt) {
			order = append(order, "second")
			gids = append(gids, goid())
		}))
	me := goid()
	req, _ := http.NewRequest(http.MethodGet, "http://x.invalid/", nil)
	resp, err := rt.RoundTrip(req)
	returned.Store(true)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, []string{"first", "second", "first", "second", "first", "second"}, order)
	for _, g := range gids {
		assert.Equal(t, me, g, "an observer ran outside RoundTrip's goroutine")
	}
	as := a.all()
	require.Len(t, as, 3)
	for i, at := range as {
		assert.Equal(t, i+1, at.Number)
		assert.Same(t, sent[i], at.Request)
		assert.GreaterOrEqual(t, at.Duration, 15*time.Millisecond) // the base takes 20 ms
		assert.Less(t, at.Duration, 10*time.Second, "a duration, not a time")
		assert.True(t, (at.Response == nil) != (at.Err == nil), "attempt %d: Response and Err", i+1)
	}
	assert.Equal(t, 503, as[0].Response.StatusCode)
	assert.True(t, as[0].Retry)
	assert.Equal(t, "503", as[0].Reason)
	assert.Equal(t, 30*time.Millisecond, as[0].Wait)
	assert.Error(t, as[1].Err)
	assert.True(t, as[1].Retry)
	assert.Equal(t, 60*time.Millisecond, as[1].Wait)
	assert.Equal(t, 200, as[2].Response.StatusCode)
	assert.False(t, as[2].Retry)
	assert.Empty(t, as[2].Reason)
	assert.Zero(t, as[2].Wait)
	// The wait happened between the report and the next attempt.
	a.mu.Lock()
	gap := a.at[1].Sub(a.at[0])
	a.mu.Unlock()
	assert.GreaterOrEqual(t, gap, 30*time.Millisecond)
}

// Each give-up path reports its Reason in the last Attempt (or, after a
// Retry: true report, in the *Error only), in one log record, and in the
// *Error when there is no response.
func TestGiveUpReasons(t *testing.T) {
	type tc struct {
		name       string
		opts       []retryhttp.Option
		base       http.RoundTripper
		req        func() *http.Request
		reason     string
		reportLast bool // the give-up is in the last Attempt (else: no Attempt after a Retry: true)
		hasResp    bool
	}
	resp503 := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) { return testkit.Resp(503, ""), nil })
	get := func() *http.Request { r, _ := http.NewRequest(http.MethodGet, "http://x.invalid/", nil); return r }
	refused := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	})
	tight, _ := retryhttp.NewBudget(retryhttp.BudgetConfig{Ratio: 1e-9, MinPerSecond: 0.001})
	// drain it
	_, _ = testkit.NewRT(t, resp503, retryhttp.WithBudget(tight)).RoundTrip(get())
	hookErr := errors.New("no token")
	cases := []tc{
		{name: "exhausted", base: refused, req: get, reason: retryhttp.ReasonExhausted, reportLast: true},
		{name: "exhausted/response", base: resp503, req: get, reason: retryhttp.ReasonExhausted, reportLast: true, hasResp: true},
		{name: "method", base: resp503, req: func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, "http://x.invalid/", nil)
			return r
		}, reason: retryhttp.ReasonMethod, reportLast: true, hasResp: true},
		{name: "body", base: testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			_, _ = io.Copy(io.Discard, r.Body)
			return testkit.Resp(503, ""), nil
		}), req: func() *http.Request {
			r, _ := http.NewRequest(http.MethodPut, "http://x.invalid/", nil)
			r.Body = io.NopCloser(strings.NewReader(strings.Repeat("x", 100<<10)))
			return r
		}, reason: retryhttp.ReasonBody, reportLast: true, hasResp: true},
		{name: "retry_after", base: testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			rs := testkit.Resp(503, "")
			rs.Header.Set("Retry-After", "3600")
			return rs, nil
		}), req: get, reason: retryhttp.ReasonRetryAfter, reportLast: true, hasResp: true},
		{name: "deadline/next wait", base: resp503, opts: []retryhttp.Option{retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Hour, MaxDelay: time.Hour, Jitter: retryhttp.NoJitter})},
			req: func() *http.Request { return get().WithContext(ctxTimeout(t, time.Minute)) }, reason: retryhttp.ReasonDeadline, reportLast: true, hasResp: true},
		{name: "deadline/passed", base: testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			<-r.Context().Done()
			return nil, r.Context().Err()
		}), req: func() *http.Request { return get().WithContext(ctxTimeout(t, 30*time.Millisecond)) }, reason: retryhttp.ReasonDeadline, reportLast: true},
		{name: "budget", base: resp503, opts: []retryhttp.Option{retryhttp.WithBudget(tight)}, req: get, reason: retryhttp.ReasonBudget, reportLast: true, hasResp: true},
		{name: "permanent", base: testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			return nil, &tls.CertificateVerificationError{Err: errors.New("bad cert")}
		}), req: get, reason: retryhttp.ReasonPermanent, reportLast: true},
		{name: "classifier", base: resp503, opts: []retryhttp.Option{retryhttp.WithClassifier(always(retryhttp.DoNotRetry))}, req: get,
			reason: retryhttp.ReasonClassifier, reportLast: true, hasResp: true},
		{name: "canceled/in attempt", base: testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			<-r.Context().Done()
			return nil, r.Context().Err()
		}), req: func() *http.Request {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(30*time.Millisecond, cancel)
			return get().WithContext(ctx)
		}, reason: retryhttp.ReasonCanceled, reportLast: true},
		{name: "canceled/in wait", base: refused, opts: []retryhttp.Option{retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Hour, MaxDelay: time.Hour, Jitter: retryhttp.NoJitter})},
			req: func() *http.Request {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(50*time.Millisecond, cancel)
				return get().WithContext(ctx)
			}, reason: retryhttp.ReasonCanceled},
		{name: "hook", base: refused, opts: []retryhttp.Option{retryhttp.WithBeforeRetry(func(*http.Request, retryhttp.Attempt) error { return hookErr })},
			req: get, reason: retryhttp.ReasonHook},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &recorder{}
			logger, logs := newLogger()
			rt := testkit.NewRT(t, c.base, append(append([]retryhttp.Option{}, c.opts...), retryhttp.WithObserver(rec.observe), retryhttp.WithLogger(logger))...)
			resp, err := rt.RoundTrip(c.req())
			last := rec.last(t)
			if c.reportLast {
				assert.False(t, last.Retry)
				assert.Equal(t, c.reason, last.Reason)
			} else {
				assert.True(t, last.Retry, "an Attempt was reported after the one that said Retry: true")
			}
			assert.Equal(t, 1, strings.Count(logs.String(), "retryhttp: giving up"), logs.String())
			assert.Contains(t, logs.String(), "reason="+c.reason)
			if c.hasResp {
				require.NoError(t, err)
				resp.Body.Close()
				return
			}
			require.Nil(t, resp)
			var re *retryhttp.Error
			require.ErrorAs(t, err, &re)
			assert.Equal(t, c.reason, re.Reason)
			if c.name == "hook" {
				assert.ErrorIs(t, err, hookErr)
			}
			t.Logf("%s: %v", c.name, err)
		})
	}
}

// "Every give-up of a failed attempt states why ... in *Error's message
// when there is no response": the message itself, not only the field.
func TestErrorMessageSaysWhy(t *testing.T) {
	perm := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		return nil, &tls.CertificateVerificationError{Err: errors.New("x509: certificate signed by unknown authority")}
	})
	_, err := testkit.NewRT(t, perm).RoundTrip(testkit.NewReq(t, http.MethodGet, "https://x.invalid/", nil))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not retried", "the message of a permanent give-up does not say why: %q", err.Error())

	refused := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	})
	_, err = testkit.NewRT(t, refused).RoundTrip(testkit.NewReq(t, http.MethodGet, "https://x.invalid/", nil))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "attempts the Policy allows", "the message of an exhausted give-up does not say why: %q", err.Error())
}

// AttemptFromContext: 1 on the first attempt (also for a context that never
// saw a Transport), N on the N-th, for the base and the hook's next.
func TestAttemptFromContext(t *testing.T) {
	assert.Equal(t, 1, retryhttp.AttemptFromContext(context.Background()))
	var mu sync.Mutex
	var seen, hook []int
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, retryhttp.AttemptFromContext(r.Context()))
		if len(seen) < 4 {
			return testkit.Resp(503, ""), nil
		}
		return testkit.Resp(200, ""), nil
	})
	rt := testkit.NewRT(t, base, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}),
		retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
			hook = append(hook, retryhttp.AttemptFromContext(next.Context()))
			assert.Equal(t, prev.Number+1, retryhttp.AttemptFromContext(next.Context()))
			return nil
		}))
	req := testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil)
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, []int{1, 2, 3, 4}, seen)
	assert.Equal(t, []int{2, 3, 4}, hook)
	assert.Equal(t, 1, retryhttp.AttemptFromContext(req.Context()), "the caller's context was changed")
}

// Nested Transports (an SDK's Transport over an application's): each
// layer's first attempt is its own attempt 1.
func TestAttemptFromContextOfNestedTransports(t *testing.T) {
	var mu sync.Mutex
	var seen []int
	n := 0
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		seen = append(seen, retryhttp.AttemptFromContext(r.Context()))
		if n == 1 || n == 2 {
			return testkit.Resp(503, ""), nil
		}
		return testkit.Resp(200, ""), nil
	})
	inner := testkit.NewRT(t, base, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	outer := testkit.NewRT(t, inner, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	resp, err := outer.RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil))
	require.NoError(t, err)
	resp.Body.Close()
	t.Logf("attempt numbers the base saw: %v (inner attempts 1,2 then outer retry -> inner attempt 1)", seen)
}

var _ = bufio.NewReader
