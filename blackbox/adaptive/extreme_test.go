package adaptive_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Extreme but valid AdaptiveRate fields, under a host throttling beyond its
// capacity with 16 goroutines: no panic, every EventPaced's wait positive
// and within MaxRetryAfter, and requests still go through.
func TestExtremeAdaptiveRatesStayWithinBounds(t *testing.T) {
	cases := map[string]retryhttp.AdaptiveRate{
		"Interval 1ns":     {Interval: time.Nanosecond},
		"Smoothing 1":      {Smoothing: 1},
		"Smoothing 1e-300": {Smoothing: 1e-300},
		"Beta 0.999999":    {Beta: 0.999999},
		"Beta 1e-300":      {Beta: 1e-300},
		"Scale 1e308":      {Scale: 1e308},
		"Scale 5e-324":     {Scale: 5e-324},
		"MinRate 1e308":    {MinRate: 1e308},
		"all at once":      {Interval: time.Nanosecond, Smoothing: 1, Beta: 0.999999, Scale: 1e308, MinRate: 1e-6},
	}
	for name, r := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cs := newCapacityServer(t, 50, func(http.Header) {})
			rec := &recorder{}
			maxRA := 500 * time.Millisecond
			tr := retryhttp.New(newBase(t), retryhttp.WithBudget(nil), retryhttp.WithRecorder(rec.record),
				retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxRetryAfter: maxRA}),
				retryhttp.WithAdaptiveRate(r))
			var ok, refused atomic.Int64
			end := time.Now().Add(2500 * time.Millisecond)
			var wg sync.WaitGroup
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(end) {
						ctx, cancel := context.WithTimeout(context.Background(), time.Second)
						code, err := get(tr, ctx, cs.URL)
						cancel()
						switch {
						case errors.Is(err, retryhttp.ErrThrottled):
							refused.Add(1)
						case err != nil:
							t.Error(err)
							return
						case code == 200:
							ok.Add(1)
						}
						time.Sleep(5 * time.Millisecond)
					}
				}()
			}
			wg.Wait()
			for _, w := range rec.waits(retryhttp.EventPaced) {
				require.Positive(t, w)
				require.LessOrEqual(t, w, maxRA)
			}
			t.Logf("%s: ok %d, refused %d, paced %d", name, ok.Load(), refused.Load(), rec.count(retryhttp.EventPaced))
			assert.NotZero(t, ok.Load())
		})
	}
}
