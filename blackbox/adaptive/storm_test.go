package adaptive_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// 64 goroutines against a host that throttles (bare 429s and 503s) and is
// slow now and then, with the adaptive rate, hedging, the budget, a
// Classifier that says Throttled for a 418, canceled contexts and short
// deadlines, GETs and PUTs with bodies without GetBody: the RoundTripper
// contract holds for every request (a response xor an error; the request's
// body closed exactly once; every response body the base returned closed),
// no goroutine is left, and the Events agree with the Prometheus series.
func TestStormWithAdaptiveRateHedgingAndBudget(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch x := rand.IntN(100); {
		case x < 35:
			w.WriteHeader(http.StatusTooManyRequests)
		case x < 45:
			w.WriteHeader(http.StatusServiceUnavailable)
		case x < 50:
			w.WriteHeader(http.StatusTeapot)
		case x < 65:
			select {
			case <-time.After(time.Duration(rand.IntN(60)) * time.Millisecond):
			case <-r.Context().Done():
			}
		}
	})
	before := runtime.NumGoroutine()
	base := newBase(t)
	cc := &closeCounter{base: base}
	reg := prometheus.NewRegistry()
	m, err := retryhttp.NewMetrics(reg)
	require.NoError(t, err)
	budget, err := retryhttp.NewBudget(retryhttp.BudgetConfig{})
	require.NoError(t, err)
	rec := &recorder{}
	tr := retryhttp.New(cc, retryhttp.WithBudget(budget), retryhttp.WithMetrics(m), retryhttp.WithRecorder(rec.record),
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond, MaxRetryAfter: 300 * time.Millisecond}),
		retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{MinRate: 5}),
		retryhttp.WithHedging(retryhttp.Hedging{Delay: 15 * time.Millisecond, MaxHedges: 2}),
		retryhttp.WithClassifier(func(_ *http.Request, resp *http.Response, _ error) retryhttp.Decision {
			if resp != nil && resp.StatusCode == http.StatusTeapot {
				return retryhttp.Throttled
			}
			return retryhttp.UseDefault
		}))
	var bad atomic.Int32
	var total, throttled, canceled atomic.Int32
	end := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(end); i++ {
				var ctx context.Context
				var cancel context.CancelFunc
				switch i % 3 {
				case 0:
					ctx, cancel = context.WithTimeout(context.Background(), time.Duration(1+rand.IntN(200))*time.Millisecond)
				case 1:
					ctx, cancel = context.WithCancel(context.Background())
					time.AfterFunc(time.Duration(rand.IntN(100))*time.Millisecond, cancel)
				default:
					ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
				}
				var body *countingBody
				method := http.MethodGet
				if g%2 == 1 {
					method, body = http.MethodPut, newCountingBody(strings.Repeat("x", 100))
				}
				var req *http.Request
				if body != nil {
					req, _ = http.NewRequestWithContext(ctx, method, srv.URL, body)
					req.GetBody = nil
				} else {
					req, _ = http.NewRequestWithContext(ctx, method, srv.URL, nil)
				}
				resp, err := tr.RoundTrip(req)
				total.Add(1)
				switch {
				case (resp == nil) == (err == nil):
					bad.Add(1)
					t.Errorf("contract: resp %v err %v", resp != nil, err)
				case err != nil:
					if errors.Is(err, retryhttp.ErrThrottled) {
						throttled.Add(1)
					} else if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
						canceled.Add(1)
					}
				default:
					resp.Body.Close()
				}
				cancel()
				if body != nil {
					deadline := time.Now().Add(time.Second)
					for body.closes.Load() == 0 && time.Now().Before(deadline) {
						time.Sleep(time.Millisecond)
					}
					if c := body.closes.Load(); c != 1 {
						t.Errorf("request body closed %d times (err %v)", c, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("requests %d, throttled %d, canceled/deadline %d, paced %d, hedges %d", total.Load(), throttled.Load(), canceled.Load(),
		rec.count(retryhttp.EventPaced), rec.count(retryhttp.EventHedge))
	assert.Eventually(t, func() bool { return cc.opened.Load() == cc.closed.Load() }, 10*time.Second, 10*time.Millisecond, "every response body closed")
	base.CloseIdleConnections()
	deadline := time.Now().Add(3 * time.Second)
	n := runtime.NumGoroutine()
	for n > before+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	assert.LessOrEqual(t, n, before+2, "goroutines left")

	mfs, err := reg.Gather()
	require.NoError(t, err)
	var paced, paceCount, paceSum float64
	for _, mf := range mfs {
		for _, mm := range mf.GetMetric() {
			switch mf.GetName() {
			case "retryhttp_paced_requests_total":
				paced += mm.GetCounter().GetValue()
			case "retryhttp_pace_delay_seconds":
				paceCount += float64(mm.GetHistogram().GetSampleCount())
				paceSum += mm.GetHistogram().GetSampleSum()
			}
		}
	}
	waits := rec.waits(retryhttp.EventPaced)
	var sum float64
	for _, w := range waits {
		sum += w.Seconds()
		assert.Positive(t, w)
		assert.LessOrEqual(t, w, 300*time.Millisecond)
	}
	assert.Equal(t, float64(len(waits)), paced)
	assert.Equal(t, float64(len(waits)), paceCount)
	assert.InDelta(t, sum, paceSum, 1e-6)
}
