package pipeline_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/require"
)

// pacingBase answers a bare 429 (no Retry-After, no quota: the adaptive
// rate's to learn) to requests marked X-Case: throttle, a 503 to the first
// attempt of those marked busy-once, and 200 to the rest.
func pacingBase(r *http.Request) (*http.Response, error) {
	consume(r)
	code := 200
	switch r.Header.Get("X-Case") {
	case "throttle":
		code = 429
	case "busy-once":
		if retryhttp.AttemptFromContext(r.Context()) == 1 {
			code = 503
		}
	}
	resp, _ := response(r, code, "")
	return resp, nil
}

// TestPacedAttemptsAgreeWithTheSeries: once a host's adaptive rate is cut,
// first attempts and retries wait for it, each an EventPaced with its wait,
// counted in retryhttp_paced_requests_total and retryhttp_pace_delay_seconds
// and seen by observers in Attempt.Held; an attempt canceled during the
// wait is counted (it waited) but not sent, and its request keeps the
// contract.
func TestPacedAttemptsAgreeWithTheSeries(t *testing.T) {
	var cancelPaced atomic.Pointer[context.CancelFunc]
	rg := newRig(t, baseFunc(pacingBase), retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{MinRate: 2}),
		retryhttp.WithRecorder(func(e retryhttp.Event) {
			if c := cancelPaced.Load(); c != nil && e.Kind == retryhttp.EventPaced {
				(*c)()
			}
		}))
	// A bare 429 wakes the host's rate; another, a second later (the
	// least time between cuts), cuts it to MinRate: 2 requests a second,
	// with no token in hand, so that the next request waits for one unless
	// the test stalls for half a second.
	for i := range 2 {
		if i == 1 {
			time.Sleep(1100 * time.Millisecond)
		}
		hold(t, rg.rt, "http://paced.test/", "throttle")
	}
	require.Empty(t, rg.rec.of(retryhttp.EventPaced), "nothing waits before the first cut")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cancelPaced.Store(&cancel)
	req, b := bodyReq(t, ctx, "http://paced.test/x")
	s := snap(req)
	resp, err := rg.rt.RoundTrip(req)
	requireContract(t, resp, err)
	s.requireUnchanged(t, req)
	require.ErrorIs(t, err, context.Canceled)
	requireClosedOnce(t, b)
	cancelPaced.Store(nil)

	req, err = http.NewRequest(http.MethodGet, "http://paced.test/y", nil)
	require.NoError(t, err)
	req.Header.Set("X-Case", "busy-once")
	resp, err = rg.rt.RoundTrip(req)
	requireContract(t, resp, err)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	resp.Body.Close()

	rg.requireAgree(t, 4)
	paced := rg.rec.of(retryhttp.EventPaced)
	require.Len(t, paced, 3, dump(rg.rec.all()))
	for i, want := range []struct {
		method  string
		attempt int
	}{{http.MethodPut, 1}, {http.MethodGet, 1}, {http.MethodGet, 2}} {
		require.Equal(t, want.method, paced[i].Method)
		require.Equal(t, want.attempt, paced[i].Attempt, "EventPaced %d", i)
		require.Positive(t, paced[i].Wait)
		require.LessOrEqual(t, paced[i].Wait, 500*time.Millisecond, "one token of 2 a second")
	}
	reqs := rg.rec.of(retryhttp.EventRequest)
	require.Equal(t, "canceled", reqs[2].Outcome)
	require.Equal(t, 0, reqs[2].Attempt, "the canceled request sent nothing")
	require.Equal(t, 2, reqs[3].Attempt)
	var held time.Duration
	for _, a := range rg.obs.all() {
		if a.Request.URL.Path == "/y" {
			held += a.Held
		}
	}
	require.Equal(t, paced[1].Wait+paced[2].Wait, held, "observers see the waits in Held: %s", dumpAttempts(rg.obs.all()))
}
