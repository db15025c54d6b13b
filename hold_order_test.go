package retryhttp

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// holdDuringBackoff returns a Transport with a fake clock whose first wait
// (request A's backoff after a 503) is when another request, B, gets a 429
// that asks the host for retryAfter: so A's retry finds its host held. The
// server answers A's first attempt with a bare 503, B with the 429, and
// everything after with 200.
func holdDuringBackoff(t *testing.T, retryAfter string, opts ...Option) (*Transport, *fakeClock, string) {
	t.Helper()
	up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch {
		case n == 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		case r.Header.Get("X-Request") == "B":
			w.Header().Set("Retry-After", retryAfter)
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
	tr, clock := newTestTransport(t, opts...)
	first := true
	tr.sleep = func(ctx context.Context, d time.Duration) error {
		if first { // A's backoff: meanwhile B is throttled
			first = false
			b := mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ContextWithoutRetries(context.Background()))
			b.Header.Set("X-Request", "B")
			resp, err := tr.RoundTrip(b)
			require.NoError(t, err)
			require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
			readAll(t, resp)
		}
		return clock.sleep(ctx, d)
	}
	return tr, clock, up.URL
}

func TestBeforeRetryRunsAfterTheHostsHold(t *testing.T) {
	// A retry's credentials are made fresh once it may go: after its
	// backoff and after the hold of its host, immediately before it is sent.
	holdEnds := time.Time{}
	var hookAt []time.Time
	var seen []Attempt
	tr, clock, url := holdDuringBackoff(t, "10",
		WithObserver(func(a Attempt) {
			if a.Request.Header.Get("X-Request") != "B" {
				seen = append(seen, a)
			}
		}),
		WithBeforeRetry(func(next *http.Request, prev Attempt) error {
			next.Header.Set("Authorization", "fresh")
			return nil
		}))
	tr.beforeRetry = append(tr.beforeRetry, func(*http.Request, Attempt) error {
		hookAt = append(hookAt, clock.now())
		return nil
	})
	start := clock.now()
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, url, nil))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	waits := clock.recorded()
	require.Len(t, waits, 2, "the backoff, then the hold")
	// B's 429 came during A's backoff, before the clock moved by it: the
	// hold runs 10 s from start. (Counting it from the end of the backoff
	// made this test fail whenever the hold's jitter drew less than the
	// backoff, about one run in thirty.)
	holdEnds = start.Add(10 * time.Second)
	require.Len(t, hookAt, 1)
	assert.False(t, hookAt[0].Before(holdEnds), "the hook ran at %v, before the hold ended at %v", hookAt[0], holdEnds)
	require.Len(t, seen, 2)
	assert.Positive(t, seen[1].Held, "the retry waited for its host")
	assert.Equal(t, "fresh", seen[1].Request.Header.Get("Authorization"))
}

func TestBeforeRetryDoesNotRunForARetryItsHostRefuses(t *testing.T) {
	// The host is held past MaxRetryAfter: the retry is not sent, so the
	// hook (which may spend a one-time token) never runs.
	hooks := 0
	tr, _, url := holdDuringBackoff(t, "120", WithBeforeRetry(func(*http.Request, Attempt) error {
		hooks++
		return nil
	}))
	_, err := tr.RoundTrip(mustRequest(t, http.MethodGet, url, nil))
	require.ErrorIs(t, err, ErrThrottled)
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, 1, rerr.Attempts)
	assert.Zero(t, hooks)
}

func TestAWaitForAHeldHostCanceledSaysWaiting(t *testing.T) {
	// Attempt 1 waits for a host another request's 429 holds; the caller
	// cancels meanwhile. Error.Waiting is true: the request ended while it
	// waited, not while an attempt was in flight.
	up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	tr, _ := newTestTransport(t)
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ContextWithoutRetries(context.Background())))
	require.NoError(t, err)
	readAll(t, resp)

	ctx, cancel := context.WithCancel(context.Background())
	tr.sleep = func(ctx context.Context, d time.Duration) error {
		cancel() // the caller gives up during the wait for the host
		return sleep(ctx, d)
	}
	_, err = tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx))
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.True(t, rerr.Waiting)
	assert.Zero(t, rerr.Attempts)
	assert.Equal(t, ReasonCanceled, rerr.Reason)
	assert.True(t, errors.Is(err, context.Canceled))
	assert.Equal(t, "retryhttp: canceled while waiting for its host, not sent: context canceled", err.Error())
	assert.Equal(t, int32(1), up.attempts.Load(), "the held request was never sent")
}

func TestWithHoldKeyHoldsEachKeyApart(t *testing.T) {
	// One host, two API keys with a quota each: key A's 429 holds key A's
	// requests, not key B's. Without WithHoldKey, the host is held for both.
	up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "A" {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	send := func(tr *Transport, key string) (*http.Response, error) {
		req := mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ContextWithoutRetries(context.Background()))
		req.Header.Set("Authorization", key)
		return tr.RoundTrip(req)
	}
	for _, scoped := range []bool{true, false} {
		var opts []Option
		if scoped {
			opts = append(opts, WithHoldKey(func(r *http.Request) string { return r.Header.Get("Authorization") }))
		}
		tr, _ := newTestTransport(t, opts...)
		resp, err := send(tr, "A")
		require.NoError(t, err)
		readAll(t, resp)

		_, err = send(tr, "A")
		assert.ErrorIs(t, err, ErrThrottled, "key A is held (scoped %v)", scoped)
		resp, err = send(tr, "B")
		if scoped {
			require.NoError(t, err, "key B has its own hold")
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			readAll(t, resp)
		} else {
			assert.ErrorIs(t, err, ErrThrottled, "one hold per host")
		}
	}
}
