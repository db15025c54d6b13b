package retryhttp

import (
	"testing"
	"time"
)

// BenchmarkQuota sends 400 GETs from 20 goroutines to a server that allows
// 50 requests per 2 s window and announces it (RateLimit, or GitHub's
// X-RateLimit-* with the reset in epoch seconds), with the host hold on, as
// every Transport has it, and off, and reports the share of what reached
// the server that was answered 429, the most arrivals over the quota in one
// window, the requests that succeeded, and the time it all took. It runs
// in real time (about 13 s a row):
//
//	go test -run '^$' -bench Quota -benchtime 1x .
func BenchmarkQuota(b *testing.B) {
	for _, github := range []bool{false, true} {
		for _, hold := range []bool{true, false} {
			name := map[bool]string{false: "fields=RateLimit", true: "fields=X-RateLimit"}[github] +
				map[bool]string{true: "/hold=on", false: "/hold=off"}[hold]
			b.Run(name, func(b *testing.B) {
				var arrived, throttled, ok int64
				var worst int
				var took time.Duration
				for b.Loop() {
					q := newQuotaServer(b, 50, 2*time.Second, github)
					tr := New(nil, WithPolicy(Policy{MaxAttempts: 6}))
					tr.noHold = !hold
					start := time.Now()
					ok = sendConcurrently(tr, q.URL, 20, 400)
					took = time.Since(start)
					arrived, throttled = q.arrived.Load(), q.throttled.Load()
					q.mu.Lock()
					worst = q.worst
					q.mu.Unlock()
					tr.CloseIdleConnections()
				}
				b.ReportMetric(100*float64(throttled)/float64(arrived), "%429")
				b.ReportMetric(float64(worst), "worst-window-over")
				b.ReportMetric(float64(arrived), "arrived")
				b.ReportMetric(float64(ok), "succeeded")
				b.ReportMetric(took.Seconds(), "seconds")
			})
		}
	}
}
