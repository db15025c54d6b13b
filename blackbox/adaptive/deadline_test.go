package adaptive_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A request whose turn at its host's rate comes after its deadline fails at
// once with ErrThrottled (a *ThrottledError with Adaptive), is not sent,
// and its body is closed exactly once, with retries on (a replay buffer)
// and off, with GetBody and without.
func TestADeadlineBeforeTheTurnFailsFastAndClosesTheBody(t *testing.T) {
	t.Parallel()
	srv := newServer(t, bare429)
	rec := &recorder{}
	tr := retryhttp.New(newBase(t), retryhttp.WithBudget(nil), retryhttp.WithRecorder(rec.record),
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}),
		retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{}))
	require.True(t, wakeAndCut(t, tr, rec, srv.URL, 4*time.Second))
	// Take the bucket's token, if any.
	_, _ = get(tr, retryhttp.ContextWithoutRetries(context.Background()), srv.URL)
	for _, retries := range []bool{true, false} {
		for _, getBody := range []bool{true, false} {
			before := srv.hits.Load()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			if !retries {
				ctx = retryhttp.ContextWithoutRetries(ctx)
			}
			b := newCountingBody("payload")
			req, err := http.NewRequestWithContext(ctx, http.MethodPut, srv.URL, b)
			require.NoError(t, err)
			if getBody {
				req.GetBody = func() (io.ReadCloser, error) { return newCountingBody("payload"), nil }
			} else {
				req.GetBody = nil
			}
			start := time.Now()
			paced := rec.count(retryhttp.EventPaced)
			resp, err := tr.RoundTrip(req)
			cancel()
			require.Nil(t, resp)
			require.ErrorIs(t, err, retryhttp.ErrThrottled)
			var te *retryhttp.ThrottledError
			require.ErrorAs(t, err, &te)
			assert.True(t, te.Adaptive)
			assert.True(t, te.Until.After(start.Add(300*time.Millisecond)), "Until is past the deadline")
			assert.Equal(t, paced, rec.count(retryhttp.EventPaced), "fails without waiting")
			assert.Equal(t, before, srv.hits.Load(), "not sent")
			time.Sleep(20 * time.Millisecond)
			assert.Equal(t, int32(1), b.closes.Load(), "body closed exactly once (retries %v, GetBody %v)", retries, getBody)
			var re *retryhttp.Error
			if assert.True(t, errors.As(err, &re)) {
				assert.Equal(t, 0, re.Attempts)
			}
		}
	}
}
