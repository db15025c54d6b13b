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

// quotaBase answers 200 announcing a quota of 1 request per 1 s window
// (as GitHub-style APIs announce on every response), and panics for a
// request with X-Panic, as a buggy signing or tracing base might. sent
// counts the requests it answered.
func quotaBase(sent *atomic.Int32) http.RoundTripper {
	return rtFunc(func(r *http.Request) (*http.Response, error) {
		if r.Header.Get("X-Panic") != "" {
			panic("base bug")
		}
		sent.Add(1)
		return quotaResp(r, 200, "1", "1", "1"), nil
	})
}

// A panic of the base reaches the caller of RoundTrip, and the request
// that panicked gives back its place among its host's requests in flight:
// with a quota of 1, the next request in a fresh window is sent, and so is
// a request without a deadline (it does not wait for ever for a place the
// panicked request kept).
func TestAPanicGivesBackTheHostsPlace(t *testing.T) {
	var sent atomic.Int32
	tr := retryhttp.New(quotaBase(&sent))
	send := func(ctx context.Context, panics bool) error {
		req := mustReq(t, http.MethodGet, "http://api.example/x", nil).WithContext(ctx)
		if panics {
			req.Header.Set("X-Panic", "1")
		}
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	withDeadline := func(panics bool) error {
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		defer cancel()
		return send(ctx, panics)
	}
	require.NoError(t, withDeadline(false)) // the host announces its quota
	assert.Equal(t, "base bug", recovered(func() { _ = withDeadline(true) }), "the base's panic reaches the caller")
	time.Sleep(1100 * time.Millisecond) // the announced window is over
	require.NoError(t, withDeadline(false), "a fresh window's quota is free: the panicked request is not in flight")
	assert.Equal(t, int32(2), sent.Load())

	// Without a deadline: sent, once the quota allows (at the next window
	// at the latest), rather than held for ever.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- send(ctx, false) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(guard):
		cancel()
		t.Fatalf("a request without a deadline still waits %v later: the host's place was never given back (%v)", guard, <-done)
	}
	assert.Equal(t, int32(3), sent.Load())
}

// A panic of a WithBeforeRetry function reaches the caller of RoundTrip,
// and the retry it was preparing gives back its place among its host's
// requests in flight: the next request in a fresh window is sent.
func TestAPanicInAHookGivesBackTheHostsPlace(t *testing.T) {
	var sent atomic.Int32
	base := rtFunc(func(r *http.Request) (*http.Response, error) {
		sent.Add(1)
		code := 200
		if r.Header.Get("X-Fail") != "" {
			code = 503
		}
		return quotaResp(r, code, "1", "1", "1"), nil
	})
	tr := retryhttp.New(base, retryhttp.WithPolicy(fast), retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
		if next.Header.Get("X-Hook-Panic") != "" {
			panic("hook bug")
		}
		return nil
	}))
	get := func(hdr ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		defer cancel()
		req := mustReq(t, http.MethodGet, "http://api.example/x", nil).WithContext(ctx)
		for _, h := range hdr {
			req.Header.Set(h, "1")
		}
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	require.NoError(t, get()) // the host announces its quota
	var gerr error
	p := recovered(func() { gerr = get("X-Fail", "X-Hook-Panic") })
	require.Equal(t, "hook bug", p, "the hook's panic reaches the caller (%v)", gerr)
	time.Sleep(1100 * time.Millisecond) // the announced window is over
	require.NoError(t, get(), "a fresh window's quota is free: the panicked retry is not in flight")
	assert.Equal(t, int32(3), sent.Load(), "the first request, the attempt that failed, the last request")
}

// A panic of the base in a hedge's goroutine comes out of RoundTrip in the
// caller's goroutine, where it can be recovered (as without hedging), and
// the first copy is canceled: the process goes on.
func TestAPanicOfTheBaseInAHedgeReachesTheCaller(t *testing.T) {
	release := make(chan struct{})
	firstGone := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // the first copy answers only once the hedge is sent
		case <-r.Context().Done():
			close(firstGone)
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	inner := &http.Transport{}
	defer inner.CloseIdleConnections()
	base := rtFunc(func(r *http.Request) (*http.Response, error) {
		if retryhttp.AttemptFromContext(r.Context()) == 2 {
			panic("base bug in a hedge")
		}
		return inner.RoundTrip(r)
	})
	tr := retryhttp.New(base, retryhttp.WithHedging(retryhttp.Hedging{Delay: 20 * time.Millisecond}),
		retryhttp.WithBudget(nil))
	p := recovered(func() {
		resp, err := tr.RoundTrip(mustReq(t, http.MethodGet, srv.URL, nil))
		if err == nil {
			resp.Body.Close()
		}
	})
	assert.Equal(t, "base bug in a hedge", p, "the hedge's panic reaches the caller of RoundTrip")
	select {
	case <-firstGone:
	case <-time.After(guard):
		t.Fatal("the first copy was not canceled")
	}
}

// A WithHoldKey function that panics in the hedge timer's goroutine (the
// one that admits the hedge to its host) makes RoundTrip panic in the
// caller's goroutine, as it does without hedging: no hedge is sent, and
// the panic comes out once the first copy has answered.
func TestAPanicOfTheHoldKeyInAHedgeReachesTheCaller(t *testing.T) {
	keyPanics := make(chan struct{})
	var slow atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-RateLimit-Limit", "1000")
		w.Header().Set("X-RateLimit-Remaining", "999")
		w.Header().Set("X-RateLimit-Reset", "60")
		if r.Header.Get("X-Slow") != "" {
			slow.Add(1)
			select { // answers once the hedge was due
			case <-keyPanics:
			case <-time.After(guard):
			}
		}
	}))
	defer srv.Close()
	var calls atomic.Int32
	tr := retryhttp.New(nil, retryhttp.WithHedging(retryhttp.Hedging{Delay: 20 * time.Millisecond}), retryhttp.WithBudget(nil),
		retryhttp.WithHoldKey(func(r *http.Request) string {
			if r.Header.Get("X-Slow") != "" && calls.Add(1) > 1 {
				close(keyPanics)
				panic("key bug")
			}
			return "k"
		}))
	resp, err := tr.RoundTrip(mustReq(t, http.MethodGet, srv.URL, nil)) // the host announces a quota
	require.NoError(t, err)
	resp.Body.Close()
	p := recovered(func() {
		req := mustReq(t, http.MethodGet, srv.URL, nil)
		req.Header.Set("X-Slow", "1")
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
	})
	assert.Equal(t, "key bug", p, "the key function's panic reaches the caller of RoundTrip")
	assert.Equal(t, int32(2), calls.Load(), "called for the first copy, then for the hedge")
	assert.Equal(t, int32(1), slow.Load(), "no hedge was sent")
}
