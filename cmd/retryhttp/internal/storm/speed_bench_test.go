package storm

import (
	"testing"
	"time"

	"github.com/retryhttp/retryhttp/internal/fleet"
)

// BenchmarkStormTenThousandClients runs retryhttp storm's defaults with
// 10,000 clients (each with its own Transport) for 120 simulated seconds,
// every policy of the table, and reports the attempts simulated per
// second of real time and the most requests in flight at once (each a
// goroutine while it lasts):
//
//	go test -run '^$' -bench TenThousand -benchtime 1x ./cmd/retryhttp/internal/storm
func BenchmarkStormTenThousandClients(b *testing.B) {
	c := defaults()
	c.Clients = 10_000
	var runs []*fleet.Run
	start := time.Now()
	for b.Loop() {
		runs = fleet.NewRuns(&c, policies)
		fleet.Simulate(&c, runs)
	}
	took := time.Since(start) / time.Duration(b.N)
	attempts, procs := 0, 0
	for _, r := range runs {
		attempts += r.Result.Attempts
		procs = max(procs, r.Procs)
	}
	b.ReportMetric(float64(attempts)/took.Seconds(), "attempts/s")
	b.ReportMetric(float64(procs), "max-in-flight")
	b.ReportMetric(took.Seconds(), "s/run")
}
