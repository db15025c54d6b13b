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

// TestAHookSeesWhatObserversSaw: the prev a WithBeforeRetry function gets
// is the Attempt observers saw; its changes go to the retry only.
func TestAHookSeesWhatObserversSaw(t *testing.T) {
	var calls atomic.Int32
	var gotToken []string
	var prevs []retryhttp.Attempt
	rg := newRig(t, baseFunc(func(r *http.Request) (*http.Response, error) {
		consume(r)
		gotToken = append(gotToken, r.Header.Get("Authorization"))
		code := 503
		if calls.Add(1) == 3 {
			code = 200
		}
		resp, _ := response(r, code, "x")
		return resp, nil
	}), retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
		prevs = append(prevs, prev)
		next.Header.Set("Authorization", "fresh")
		require.Equal(t, prev.Number+1, retryhttp.AttemptFromContext(next.Context()))
		return nil
	}))
	req, b := bodyReq(t, context.Background(), "http://hook.test/x")
	req.Header.Set("Authorization", "stale")
	s := snap(req)
	resp, err := rg.rt.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	s.requireUnchanged(t, req)
	requireClosedOnce(t, b)
	require.Equal(t, []string{"stale", "fresh", "fresh"}, gotToken)
	at := rg.obs.all()
	require.Len(t, at, 3)
	require.Len(t, prevs, 2)
	for i, p := range prevs {
		o := at[i]
		require.Equal(t, o.Number, p.Number)
		require.Equal(t, o.Retry, p.Retry)
		require.True(t, p.Retry)
		require.Equal(t, o.Reason, p.Reason)
		require.Equal(t, o.Wait, p.Wait)
		require.Equal(t, o.ServerWait, p.ServerWait)
		require.True(t, o.Request == p.Request)
		require.True(t, o.Response == p.Response)
	}
	require.Equal(t, "fresh", at[1].Request.Header.Get("Authorization"))
	rg.requireAgree(t, 1)
}

// TestARetryNotSentCostsNoBudget: a retry the hook stops, or whose wait
// the caller cancels, is refunded.
func TestARetryNotSentCostsNoBudget(t *testing.T) {
	for _, how := range []string{"hook", "cancel"} {
		t.Run(how, func(t *testing.T) {
			bud, err := retryhttp.NewBudget(retryhttp.BudgetConfig{Ratio: 1e-9, MinPerSecond: 1e-9})
			require.NoError(t, err)
			var calls atomic.Int32
			opts := []retryhttp.Option{retryhttp.WithBudget(bud)}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if how == "hook" {
				opts = append(opts, retryhttp.WithBeforeRetry(func(*http.Request, retryhttp.Attempt) error {
					return errors.New("no")
				}))
			} else {
				opts = append(opts, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, BaseDelay: time.Hour, MaxDelay: time.Hour}))
			}
			rg := newRig(t, statusBase(&calls, 503), opts...)
			if how == "cancel" {
				rg.obs.then = func(a retryhttp.Attempt) {
					if a.Retry {
						cancel()
					}
				}
			}
			before := bud.Available()
			_, err = rg.rt.RoundTrip(getReq(t, ctx))
			require.Error(t, err)
			require.InDelta(t, before, bud.Available(), 0.01)
			rg.requireAgree(t, 1)
			require.Empty(t, rg.rec.of(retryhttp.EventRetry))
		})
	}
}

// TestAHookErrorAfterTheHostsHold: the retry waits for its host's hold,
// and then its hook fails: the hold is counted once, for attempt 2, and
// the request ends with Reason "hook".
func TestAHookErrorAfterTheHostsHold(t *testing.T) {
	var calls atomic.Int32
	hookErr := errors.New("hook fails")
	var hookRan atomic.Int32
	var rg *rig
	rg = newRig(t, holdingBase(&calls, func(r *http.Request) (*http.Response, error) {
		if retryhttp.AttemptFromContext(r.Context()) == 1 {
			hold(t, rg.rt, "http://held.test/", "short")
		}
		resp, _ := response(r, 503, "busy")
		return resp, nil
	}), retryhttp.WithBeforeRetry(func(*http.Request, retryhttp.Attempt) error {
		hookRan.Add(1)
		return hookErr
	}))
	req, b := bodyReq(t, context.Background(), "http://held.test/x")
	resp, err := rg.rt.RoundTrip(req)
	requireContract(t, resp, err)
	require.ErrorIs(t, err, hookErr)
	requireClosedOnce(t, b)
	require.Equal(t, int32(1), hookRan.Load())
	rg.requireAgree(t, 2)
	reqs := rg.rec.of(retryhttp.EventRequest)
	require.Equal(t, "not_retryable", reqs[1].Outcome)
	require.Equal(t, retryhttp.ReasonHook, reqs[1].Reason)
	require.Equal(t, 1, reqs[1].Attempt)
	for _, h := range rg.rec.of(retryhttp.EventHeld) {
		require.Equal(t, 2, h.Attempt)
	}
}
