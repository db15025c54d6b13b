package attempt_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ContextWithPolicy nests: a zero field inherits the enclosing context's
// policy, then the Transport's, through ContextWithoutRetries too (whose
// one attempt an explicit MaxAttempts overrides); delays and jitter are
// inherited through two levels; an invalid field is an error only when it
// is inherited; and hedging stays off under a nested ContextWithoutRetries.
func TestContextWithPolicyNesting(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(503)
	}))
	defer srv.Close()
	var waits []time.Duration
	tr := retryhttp.New(nil, retryhttp.WithBudget(nil),
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 50 * time.Millisecond}),
		retryhttp.WithObserver(func(a retryhttp.Attempt) {
			if a.Retry {
				waits = append(waits, a.Wait)
			}
		}))
	bg := context.Background()
	cases := []struct {
		name string
		ctx  context.Context
		want int32
	}{
		{"policy over without-retries", retryhttp.ContextWithPolicy(retryhttp.ContextWithoutRetries(bg), retryhttp.Policy{AttemptTimeout: 5 * time.Second}), 1},
		{"policy over policy over without-retries", retryhttp.ContextWithPolicy(retryhttp.ContextWithPolicy(retryhttp.ContextWithoutRetries(bg), retryhttp.Policy{BaseDelay: 2 * time.Millisecond}), retryhttp.Policy{AttemptTimeout: time.Second}), 1},
		{"without-retries over policy", retryhttp.ContextWithoutRetries(retryhttp.ContextWithPolicy(bg, retryhttp.Policy{MaxAttempts: 6})), 1},
		{"explicit attempts over without-retries", retryhttp.ContextWithPolicy(retryhttp.ContextWithoutRetries(bg), retryhttp.Policy{MaxAttempts: 2}), 2},
		{"policy over policy", retryhttp.ContextWithPolicy(retryhttp.ContextWithPolicy(bg, retryhttp.Policy{MaxAttempts: 6}), retryhttp.Policy{BaseDelay: 2 * time.Millisecond}), 6},
		{"transport's", bg, 4},
	}
	for _, c := range cases {
		n.Store(0)
		req := mustReq(t, http.MethodPut, srv.URL, nil).WithContext(c.ctx)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err, c.name)
		resp.Body.Close()
		assert.Equal(t, c.want, n.Load(), c.name)
	}

	// Jitter and delays are inherited through two levels.
	waits = nil
	ctx := retryhttp.ContextWithPolicy(retryhttp.ContextWithPolicy(bg, retryhttp.Policy{Jitter: retryhttp.NoJitter, BaseDelay: 10 * time.Millisecond}), retryhttp.Policy{MaxAttempts: 3})
	resp, err := tr.RoundTrip(mustReq(t, http.MethodGet, srv.URL, nil).WithContext(ctx))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}, waits)

	// A bad enclosing field that the inner policy sets right is fine; one it
	// inherits fails the request.
	ok := retryhttp.ContextWithPolicy(retryhttp.ContextWithPolicy(bg, retryhttp.Policy{BaseDelay: -1}), retryhttp.Policy{BaseDelay: time.Millisecond})
	resp, err = tr.RoundTrip(mustReq(t, http.MethodGet, srv.URL, nil).WithContext(ok))
	require.NoError(t, err)
	resp.Body.Close()
	bad := retryhttp.ContextWithPolicy(retryhttp.ContextWithPolicy(bg, retryhttp.Policy{BaseDelay: -1}), retryhttp.Policy{MaxAttempts: 2})
	_, err = tr.RoundTrip(mustReq(t, http.MethodGet, srv.URL, nil).WithContext(bad))
	var pe *retryhttp.PolicyError
	assert.ErrorAs(t, err, &pe)

	// Hedging stays off under a nested without-retries.
	var hedges atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { time.Sleep(100 * time.Millisecond) }))
	defer slow.Close()
	htr := retryhttp.New(nil, retryhttp.WithBudget(nil), retryhttp.WithHedging(retryhttp.Hedging{Delay: 10 * time.Millisecond}),
		retryhttp.WithRecorder(func(e retryhttp.Event) {
			if e.Kind == retryhttp.EventHedge {
				hedges.Add(1)
			}
		}))
	ctx = retryhttp.ContextWithPolicy(retryhttp.ContextWithoutRetries(bg), retryhttp.Policy{AttemptTimeout: time.Second})
	resp, err = htr.RoundTrip(mustReq(t, http.MethodGet, slow.URL, nil).WithContext(ctx))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, int32(0), hedges.Load())
}
