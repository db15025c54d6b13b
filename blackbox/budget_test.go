package blackbox_test

// The retry budget is not charged for retries that are never sent, and a
// fractional MinPerSecond still allows retries at its rate.

import (
	"bytes"
	"context"
	"errors"
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

// budgetBase answers 503 to the first attempt of each request (marked by
// the X-Try header being absent... simply: odd attempts 503, even 200),
// and counts attempts.
type flipBase struct{ n atomic.Int32 }

func (f *flipBase) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	if f.n.Add(1)%2 == 1 {
		return testkit.Resp(503, ""), nil
	}
	return testkit.Resp(200, ""), nil
}

// tinyBudget has one floor token, refilled at rate per second, and no
// earnings to speak of.
func tinyBudget(t *testing.T, rate float64) *retryhttp.Budget {
	return mustBudget(t, retryhttp.BudgetConfig{Ratio: 1e-12, MinPerSecond: rate})
}

func TestFractionalFloorAllowsRetries(t *testing.T) {
	b := tinyBudget(t, 0.5)
	base := &flipBase{}
	rt := retryhttp.New(base, retryhttp.WithPolicy(testkit.Fast), retryhttp.WithBudget(b))
	get := func() int {
		res, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil))
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	assert.Equal(t, 200, get(), "the first retry is allowed at once")
	base.n.Store(0)
	assert.Equal(t, 503, get(), "the token is spent")
	base.n.Store(0)
	time.Sleep(2100 * time.Millisecond)
	before := time.Now()
	assert.Equal(t, 200, get(), "2 s later, MinPerSecond 0.5 allows one more")
	// The token was spent: what is there now is only what the floor
	// refilled since (0.5 a second), however long the machine took.
	left := b.Available()
	assert.GreaterOrEqual(t, left, 0.0)
	assert.LessOrEqual(t, left, 0.5*time.Since(before).Seconds(), "the token was not spent")
}

func TestBudgetNotChargedForRetriesNeverSent(t *testing.T) {
	payload := bytes.Repeat([]byte("b"), 100)
	cases := map[string]func(t *testing.T, rt http.RoundTripper){
		"canceled during the wait": func(t *testing.T, _ http.RoundTripper) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rt := retryhttp.New(&flipBase{}, retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Second, Jitter: retryhttp.NoJitter}),
				retryhttp.WithBudget(sharedBudget), cancelBeforeTheWait(cancel))
			_, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil).WithContext(ctx))
			require.ErrorIs(t, err, context.Canceled)
		},
		"GetBody fails": func(t *testing.T, rt http.RoundTripper) {
			req := testkit.NewReq(t, http.MethodPut, "http://x.invalid/", io.NopCloser(bytes.NewReader(payload)))
			req.GetBody = func() (io.ReadCloser, error) { return nil, errors.New("no") }
			res, err := rt.RoundTrip(req)
			require.NoError(t, err)
			assert.Equal(t, 503, res.StatusCode)
		},
		"GetBody returns nil": func(t *testing.T, rt http.RoundTripper) {
			req := testkit.NewReq(t, http.MethodPut, "http://x.invalid/", io.NopCloser(bytes.NewReader(payload)))
			req.GetBody = func() (io.ReadCloser, error) { return nil, nil }
			res, err := rt.RoundTrip(req)
			require.NoError(t, err)
			assert.Equal(t, 503, res.StatusCode)
		},
		"body past the replay buffer": func(t *testing.T, _ http.RoundTripper) {
			rt := retryhttp.New(&flipBase{}, retryhttp.WithPolicy(testkit.Fast), retryhttp.WithBudget(sharedBudget), retryhttp.WithReplayBuffer(10))
			res, err := rt.RoundTrip(testkit.NewReq(t, http.MethodPut, "http://x.invalid/", io.NopCloser(bytes.NewReader(payload))))
			require.NoError(t, err)
			assert.Equal(t, 503, res.StatusCode)
		},
		"replay buffer 0, body read": func(t *testing.T, _ http.RoundTripper) {
			rt := retryhttp.New(&flipBase{}, retryhttp.WithPolicy(testkit.Fast), retryhttp.WithBudget(sharedBudget), retryhttp.WithReplayBuffer(0))
			res, err := rt.RoundTrip(testkit.NewReq(t, http.MethodPut, "http://x.invalid/", io.NopCloser(bytes.NewReader(payload))))
			require.NoError(t, err)
			assert.Equal(t, 503, res.StatusCode)
		},
		"POST not retried": func(t *testing.T, rt http.RoundTripper) {
			res, err := rt.RoundTrip(testkit.NewReq(t, http.MethodPost, "http://x.invalid/", io.NopCloser(bytes.NewReader(payload))))
			require.NoError(t, err)
			assert.Equal(t, 503, res.StatusCode)
		},
		"deadline too close for the wait": func(t *testing.T, _ http.RoundTripper) {
			rt := retryhttp.New(&flipBase{}, retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Second, Jitter: retryhttp.NoJitter}),
				retryhttp.WithBudget(sharedBudget))
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond) // the wait is 1 s
			defer cancel()
			res, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil).WithContext(ctx))
			require.NoError(t, err, "the attempt is in memory: far within the deadline")
			assert.Equal(t, 503, res.StatusCode)
		},
	}
	for name, run := range cases {
		t.Run(name, func(t *testing.T) {
			sharedBudget = tinyBudget(t, 1e-6) // one token, never refilled within the test
			rt := retryhttp.New(&flipBase{}, retryhttp.WithPolicy(testkit.Fast), retryhttp.WithBudget(sharedBudget))
			run(t, rt)
			assert.InDelta(t, 1, sharedBudget.Available(), 0.01, "the token is still there")
			// And it can be spent on a real retry.
			res, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil))
			require.NoError(t, err)
			assert.Equal(t, 200, res.StatusCode, "the retry that was never sent was given back")
		})
	}
}

var sharedBudget *retryhttp.Budget

// cancelBeforeTheWait cancels the caller's context when the Transport has
// decided to retry (and paid for it), before it waits: the retry is never
// sent, whatever the machine's speed. (A cancel 50 ms after the start could
// come before the first answer on a busy machine, and test nothing.)
func cancelBeforeTheWait(cancel context.CancelFunc) retryhttp.Option {
	return retryhttp.WithObserver(func(a retryhttp.Attempt) {
		if a.Retry {
			cancel()
		}
	})
}

func TestNewBudgetRejectsBadValuesAndAcceptsTinyOnes(t *testing.T) {
	for _, c := range []retryhttp.BudgetConfig{{Ratio: -1}, {MinPerSecond: -0.1}, {Window: -1}} {
		_, err := retryhttp.NewBudget(c)
		assert.Error(t, err, "%+v", c)
	}
	for _, c := range []retryhttp.BudgetConfig{{MinPerSecond: 1e-300}, {Window: 1}, {Ratio: 1e300}, {Window: 1 << 62}} {
		b, err := retryhttp.NewBudget(c)
		require.NoError(t, err, "%+v", c)
		assert.GreaterOrEqual(t, b.Available(), 1.0, "%+v: a new budget allows a retry", c)
	}
}

func TestBudgetEarningsRefundedForARetryNeverSent(t *testing.T) {
	// Ratio 1: each request earns one retry; the retry that a cancel stops
	// is paid from earnings and must be given back to them.
	b := mustBudget(t, retryhttp.BudgetConfig{Ratio: 1, MinPerSecond: 1e-6})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rt := retryhttp.New(&flipBase{}, retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Second, Jitter: retryhttp.NoJitter}), retryhttp.WithBudget(b),
		cancelBeforeTheWait(cancel))
	_, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil).WithContext(ctx))
	require.ErrorIs(t, err, context.Canceled)
	assert.InDelta(t, 2, b.Available(), 0.01, "one earned retry and the floor token")
}
