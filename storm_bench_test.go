package retryhttp_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/retryhttp/retryhttp"
)

// Storm parameters: stormClients clients each start a request every
// stormPeriod, whether or not the earlier ones have ended (as user traffic
// arrives: 1000 requests/s in all); the upstream answers 503 for
// stormOutage, then 200.
const (
	stormClients = 20
	stormOutage  = 2 * time.Second
	stormPeriod  = 20 * time.Millisecond
)

// BenchmarkStorm sends the traffic of many clients to an upstream that is
// down for a while and then recovers, with and without the default retry
// budget, for each jitter mode, and reports the attempts the upstream got
// during the outage (in all, and per request started then), how long after
// the recovery it took every client to see a success (recovery-ms), and
// how long until the last request started during the outage had returned
// (drain-ms; a request that waits to retry keeps its caller waiting). It
// runs in real time (about 2.5 s a row):
//
//	go test -run '^$' -bench Storm -benchtime 1x .
func BenchmarkStorm(b *testing.B) {
	for _, budget := range []bool{true, false} {
		for _, j := range []retryhttp.Jitter{retryhttp.FullJitter, retryhttp.EqualJitter, retryhttp.DecorrelatedJitter, retryhttp.NoJitter} {
			name := "budget=on/jitter=" + j.String()
			if !budget {
				name = "budget=off/jitter=" + j.String()
			}
			b.Run(name, func(b *testing.B) {
				var r stormResult
				for b.Loop() {
					r = storm(b, budget, j)
				}
				b.ReportMetric(float64(r.outageAttempts), "outage-attempts")
				b.ReportMetric(float64(r.outageAttempts)/float64(r.outageRequests), "attempts/request")
				b.ReportMetric(float64(r.recovery.Milliseconds()), "recovery-ms")
				b.ReportMetric(float64(r.drain.Milliseconds()), "drain-ms")
			})
		}
	}
}

type stormResult struct {
	outageAttempts int64         // attempts the upstream got while down
	outageRequests int64         // requests the clients started while it was down
	recovery       time.Duration // from the recovery until every client saw a success
	drain          time.Duration // from the recovery until the requests of the outage returned
}

func storm(b *testing.B, budget bool, j retryhttp.Jitter) stormResult {
	var down atomic.Bool
	var attempts atomic.Int64
	down.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if down.Load() {
			attempts.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	base := cleanhttp.DefaultPooledTransport()
	base.MaxIdleConnsPerHost = stormClients
	defer base.CloseIdleConnections()
	opts := []retryhttp.Option{retryhttp.WithPolicy(retryhttp.Policy{Jitter: j})}
	if !budget {
		opts = append(opts, retryhttp.WithBudget(nil))
	}
	rt := retryhttp.New(base, opts...)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var requests atomic.Int64
	var recovered sync.WaitGroup // each client: Done at its first success
	recovered.Add(stormClients)
	var inOutage atomic.Int64 // requests started during the outage and not returned
	var wg sync.WaitGroup
	for range stormClients {
		var once sync.Once
		send := func() {
			if down.Load() {
				requests.Add(1)
				inOutage.Add(1)
				defer inOutage.Add(-1)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				once.Do(recovered.Done)
			}
		}
		wg.Go(func() {
			tick := time.NewTicker(stormPeriod)
			defer tick.Stop()
			for {
				wg.Go(send)
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		})
	}
	time.Sleep(stormOutage)
	down.Store(false)
	up := time.Now()
	outageAttempts, outageRequests := attempts.Load(), requests.Load()
	recovery := waitFor(b, recovered.Wait, up)
	drain := waitFor(b, func() { // a send may still count itself in, so poll
		for inOutage.Load() > 0 {
			time.Sleep(time.Millisecond)
		}
	}, up)
	cancel()
	wg.Wait()
	return stormResult{outageAttempts, outageRequests, recovery, drain}
}

// waitFor waits for wait to return, for a minute at most, and returns the
// time since t.
func waitFor(b *testing.B, wait func(), t time.Time) time.Duration {
	waited := make(chan struct{})
	go func() { wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(time.Minute):
		b.Fatal("the clients did not recover within a minute")
	}
	return time.Since(t)
}
