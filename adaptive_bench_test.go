package retryhttp

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// capacityServer is a capacityLimit on the wall clock, on loopback.
type capacityServer struct {
	*httptest.Server
	capacityLimit
}

func newCapacityServer(tb testing.TB, capacity int) *capacityServer {
	s := &capacityServer{capacityLimit: capacityLimit{now: time.Now, capacity: capacity}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(s.answer()) }))
	tb.Cleanup(s.Close)
	return s
}

// offerLoad has 32 goroutines send GETs through tr to url until ctx ends,
// each pausing so that together they offer about rate requests per second,
// and returns how many were refused with ErrThrottled (not sent).
func offerLoad(ctx context.Context, tr http.RoundTripper, url string, rate float64) int64 {
	const clients = 32
	pause := time.Duration(float64(clients) / rate * float64(time.Second))
	var refused atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := tr.RoundTrip(req)
				if err == nil {
					resp.Body.Close()
				} else if errors.Is(err, ErrThrottled) {
					refused.Add(1)
				}
				if d := pause - time.Since(start); d > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(d):
					}
				}
			}
		})
	}
	wg.Wait()
	return refused.Load()
}

// BenchmarkAdaptiveRate offers three times a loopback server's capacity
// (200 requests per second, a bare 429 beyond) from 32 goroutines for 10 s,
// with retries off so that every request is one attempt, with the adaptive
// rate and without, and reports the share of the attempts answered 429
// after the first 2 s, the goodput as a share of the capacity, and the
// requests refused with ErrThrottled; then, with the adaptive rate, doubles
// the capacity after 10 s and reports how many seconds it takes the
// goodput to reach 85% of the new capacity. It runs in real time (about
// 45 s):
//
//	go test -run '^$' -bench AdaptiveRate -benchtime 1x .
func BenchmarkAdaptiveRate(b *testing.B) {
	const capacity = 200
	for _, adaptive := range []bool{false, true} {
		name := map[bool]string{false: "adaptive=off", true: "adaptive=on"}[adaptive]
		b.Run(name, func(b *testing.B) {
			var throttled, goodput float64
			var refused int64
			for b.Loop() {
				s := newCapacityServer(b, capacity)
				tr := adaptiveBenchTransport(adaptive)
				ctx, cancel := context.WithTimeout(ContextWithoutRetries(context.Background()), 10*time.Second)
				start := time.Now()
				refused = offerLoad(ctx, tr, s.URL, 3*capacity)
				cancel()
				throttled, goodput = s.share(start.Add(2*time.Second), start.Add(10*time.Second))
				tr.CloseIdleConnections()
			}
			b.ReportMetric(100*throttled, "%429-after-2s")
			b.ReportMetric(100*goodput/capacity, "%capacity")
			b.ReportMetric(float64(refused), "refused")
		})
	}
	b.Run("adaptive=on/capacity-doubles", func(b *testing.B) {
		recovered := -1.0
		var throttled float64
		for b.Loop() {
			s := newCapacityServer(b, capacity)
			tr := adaptiveBenchTransport(true)
			ctx, cancel := context.WithTimeout(ContextWithoutRetries(context.Background()), 25*time.Second)
			start := time.Now()
			doubled := start.Add(10 * time.Second)
			time.AfterFunc(time.Until(doubled), func() { s.setCapacity(2 * capacity) })
			offerLoad(ctx, tr, s.URL, 3*capacity)
			cancel()
			for sec := 0; sec < 15; sec++ {
				from := doubled.Add(time.Duration(sec) * time.Second)
				if _, g := s.share(from, from.Add(time.Second)); g >= 0.85*2*capacity {
					recovered = float64(sec + 1)
					break
				}
			}
			throttled, _ = s.share(doubled.Add(2*time.Second), doubled.Add(15*time.Second))
			tr.CloseIdleConnections()
		}
		b.ReportMetric(recovered, "s-to-85%-of-doubled")
		b.ReportMetric(100*throttled, "%429-after-2s")
	})
}

func adaptiveBenchTransport(adaptive bool) *Transport {
	if adaptive {
		return New(nil, WithAdaptiveRate(AdaptiveRate{}))
	}
	return New(nil)
}
