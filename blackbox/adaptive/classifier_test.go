package adaptive_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A Classifier that says Throttled for every 200 (a body that says "slow
// down") cuts the rate as a 429 would, and retries the 200; the response
// returned is still the last 200, whole, and nothing panics.
func TestThrottledFor200sPacesAndReturnsTheResponse(t *testing.T) {
	t.Parallel()
	srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("slow down")) })
	rec := &recorder{}
	tr := retryhttp.New(newBase(t), retryhttp.WithBudget(nil), retryhttp.WithRecorder(rec.record),
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxRetryAfter: 500 * time.Millisecond}),
		retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{}),
		retryhttp.WithClassifier(func(*http.Request, *http.Response, error) retryhttp.Decision { return retryhttp.Throttled }))
	end := time.Now().Add(2 * time.Second)
	oks, refused := 0, 0
	for time.Now().Before(end) {
		code, err := get(tr, context.Background(), srv.URL)
		switch {
		case errors.Is(err, retryhttp.ErrThrottled):
			refused++
		case err != nil:
			t.Fatal(err)
		default:
			require.Equal(t, 200, code)
			oks++
		}
	}
	t.Logf("ok %d, refused %d, paced %d", oks, refused, rec.count(retryhttp.EventPaced))
	assert.NotZero(t, refused+rec.count(retryhttp.EventPaced))
}
