package adaptive_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// 64 goroutines wait for their turn at a host whose rate is at its floor
// (0.5/s by default: 64 turns take 128 s), then are canceled. RoundTrip
// returns at once for each, nothing is sent, every body is closed exactly
// once, no goroutine is left, and the 64 tokens are given back: the next
// request's turn comes within 1/MinRate s.
func TestCanceledWaitersGiveTheirTokensBack(t *testing.T) {
	t.Parallel()
	srv := newServer(t, bare429)
	rec := &recorder{}
	tr := retryhttp.New(newBase(t), retryhttp.WithBudget(nil), retryhttp.WithRecorder(rec.record),
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond, MaxRetryAfter: 10 * time.Minute}),
		retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{}))
	require.True(t, wakeAndCut(t, tr, rec, srv.URL, 4*time.Second))
	time.Sleep(2100 * time.Millisecond) // one token back in the bucket
	before := srv.hits.Load()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	bodies := make([]*countingBody, 64)
	errs := make([]error, 64)
	took := make([]time.Duration, 64)
	var canceledAt time.Time
	var mu sync.Mutex
	for i := range 64 {
		bodies[i] = newCountingBody("payload")
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, http.MethodPut, srv.URL, bodies[i])
			if err != nil {
				errs[i] = err
				return
			}
			req.GetBody = nil
			resp, err := tr.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			mu.Lock()
			errs[i], took[i] = err, time.Since(canceledAt)
			mu.Unlock()
		}()
	}
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	canceledAt = time.Now()
	mu.Unlock()
	cancel()
	wg.Wait()
	sent := srv.hits.Load() - before
	assert.LessOrEqual(t, sent, int64(2), "the waiters were not sent (the bucket held one token)")
	for i := range 64 {
		if errs[i] != nil {
			assert.ErrorIs(t, errs[i], context.Canceled)
			assert.Less(t, took[i], 2*time.Second, "canceled promptly, not at its turn")
		}
		assert.Equal(t, int32(1), bodies[i].closes.Load(), "body %d closed once", i)
	}
	// The next request's turn: within 2 s (1/MinRate), when the 64 tokens
	// were given back.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	_, err := get(tr, retryhttp.ContextWithoutRetries(ctx2), srv.URL)
	require.NoError(t, err, "the next request is refused: its turn is past its 5 s deadline")
}
