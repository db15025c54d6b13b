package hedging_test

// When a hedge may go: each copy has its own AttemptTimeout, no hedge
// follows once the first copy answered, and none goes into a held host.

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Policy.AttemptTimeout "bounds one attempt, from sending it until its
// response headers arrive", and every copy is an attempt: the first copy's
// timeout must not cut a hedge that is within its own bound.
func TestEachCopyHasItsOwnAttemptTimeout(t *testing.T) {
	// The first copy hangs until its attempt timeout (800 ms) ends it; the
	// hedge, sent at 400 ms, answers once that has happened: after the
	// first copy's bound, within its own (until 1.2 s).
	const timeout, delay = 800 * time.Millisecond, 400 * time.Millisecond
	b := &countingBase{}
	b.f = func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
		if k == 1 {
			return hangForever(ctx, k, r)
		}
		if err := await(ctx, b.returned(1)); err != nil {
			return nil, err
		}
		return testkit.Resp(200, "hedge"), nil
	}
	rec := &recorder{}
	rt := hedgeRT(t, b, retryhttp.Hedging{Delay: delay}, retryhttp.WithObserver(rec.observe),
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 2, AttemptTimeout: timeout, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	req, _ := get(t, guarded(t), "http://example.invalid/")
	res, err := rt.RoundTrip(req)
	require.NoError(t, err, "attempts %+v", rec.snapshot())
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	assert.Equal(t, "hedge", string(body))
	assert.Len(t, b.arrivals(), 2)
	for _, s := range rec.snapshot() {
		if s.Number == 1 {
			assert.ErrorIs(t, s.Err, retryhttp.ErrAttemptTimeout, "the first copy's own timeout ended it")
		}
	}
}

// "Once the first copy has answered, no further hedge is sent for that
// attempt."
func TestNoHedgeAfterTheFirstCopyAnswered(t *testing.T) {
	// The first copy fails as soon as the first hedge is in; a second
	// hedge (MaxHedges 3) is due a Delay after the first, far more than
	// the in-memory work of reading that failure. The first hedge answers
	// two Delays after it, room for a hedge too many to show.
	const delay = processed
	b := &countingBase{}
	b.f = func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
		switch k {
		case 1:
			if err := await(ctx, b.arrived(2)); err != nil {
				return nil, err
			}
			return testkit.Resp(503, "busy"), nil
		case 2:
			if err := await(ctx, b.returned(1)); err != nil {
				return nil, err
			}
			if err := after(ctx, 2*delay); err != nil {
				return nil, err
			}
			return testkit.Resp(200, "hedge"), nil
		}
		return testkit.Resp(200, "later"), nil
	}
	rec := &recorder{}
	rt := hedgeRT(t, b, retryhttp.Hedging{Delay: delay, MaxHedges: 3}, retryhttp.WithObserver(rec.observe),
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 6, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	req, _ := get(t, guarded(t), "http://example.invalid/")
	res, err := rt.RoundTrip(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	assert.Equal(t, "hedge", string(body), "attempts %+v", rec.snapshot())
	assert.Len(t, b.arrivals(), 2, "a hedge was sent after the first copy had answered; attempts %+v", rec.snapshot())
}

// A host held by a 429 (another request's): a hedge due while it is held
// must not be sent into it.
func TestNoHedgeIntoAHeldHost(t *testing.T) {
	// A's first copy is out when B's 429 holds the host, and stays out
	// until two Delays after B's answer was read: A's hedge comes due
	// meanwhile, a Delay after A was sent, far more than B's exchange on
	// loopback takes.
	const delay = 2 * processed
	var aCopies, total atomic.Int32
	bRead := make(chan struct{})
	u := newUpstream(t, false, func(id string, k int, w http.ResponseWriter, r *http.Request) {
		total.Add(1)
		switch id {
		case "A":
			aCopies.Add(1)
			if k == 1 && (!until(r, bRead) || hang(r, 2*delay)) {
				return
			}
			_, _ = io.WriteString(w, "A")
		case "B":
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: delay})
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := get(t, nil, u.url)
		req.Header.Set(idHeader, "A")
		res, err := rt.RoundTrip(req)
		if assert.NoError(t, err) {
			res.Body.Close()
		}
	}()
	require.True(t, waitFor(time.Second, func() bool { return aCopies.Load() == 1 }))
	reqB, _ := get(t, retryhttp.ContextWithoutRetries(context.Background()), u.url)
	reqB.Header.Set(idHeader, "B")
	res, err := rt.RoundTrip(reqB)
	close(bRead)
	require.NoError(t, err)
	require.Equal(t, 429, res.StatusCode)
	res.Body.Close()
	<-done
	// The host is held: a new request that cannot wait 30 s is not sent.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reqC, _ := get(t, ctx, u.url)
	reqC.Header.Set(idHeader, "C")
	before := total.Load()
	_, err = rt.RoundTrip(reqC)
	require.ErrorIs(t, err, retryhttp.ErrThrottled, "the host was not held")
	require.Equal(t, before, total.Load())
	assert.Equal(t, int32(1), aCopies.Load(), "a hedge was sent to a host held by a 429 with Retry-After: 30")
}
