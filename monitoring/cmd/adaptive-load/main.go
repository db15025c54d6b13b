// Command adaptive-load drives a retryhttp Transport with WithAdaptiveRate
// against a loopback upstream of fixed capacity, which answers a bare 429
// (no Retry-After, no quota: nothing the Transport can hold for) to every
// request beyond -capacity in each second, and serves the Transport's
// Prometheus metrics. It is e2e.sh's source of paced requests
// (retryhttp_paced_requests_total, retryhttp_pace_delay_seconds): the
// clients offer -offer requests a second, more than the capacity, and the
// adaptive rate slows them down to it.
//
//	adaptive-load -metrics-addr 127.0.0.1:0 -capacity 40 -offer 120 -duration 3m
//
// It prints "metrics: http://ADDR/metrics" once it serves them, and what
// the upstream answered when it ends (after -duration, or on SIGINT or
// SIGTERM).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/retryhttp/retryhttp"
)

func main() {
	metricsAddr := flag.String("metrics-addr", "127.0.0.1:0", "where to serve /metrics (port 0: any free port)")
	capacity := flag.Int("capacity", 40, "requests a second the upstream answers; a bare 429 to the rest")
	offer := flag.Float64("offer", 120, "requests a second the clients offer, all together")
	clients := flag.Int("clients", 8, "concurrent clients")
	timeout := flag.Duration("timeout", 2*time.Second, "each request's deadline, its waits for the rate included")
	duration := flag.Duration("duration", time.Minute, "how long to run")
	flag.Parse()
	if *capacity < 1 || *offer <= 0 || *clients < 1 || *timeout <= 0 || *duration <= 0 {
		fmt.Fprintln(os.Stderr, "adaptive-load: -capacity, -offer, -clients, -timeout and -duration must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The end of the run cancels the requests under way; a deadline would
	// have the rate fail the last second's requests at once, in a burst.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	time.AfterFunc(*duration, cancel)
	if err := run(ctx, *metricsAddr, *capacity, *offer, *clients, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "adaptive-load:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, metricsAddr string, capacity int, offer float64, clients int, timeout time.Duration) error {
	up := &upstream{capacity: capacity}
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	upSrv := &http.Server{Handler: up, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = upSrv.Serve(upLn) }()
	defer upSrv.Close()

	reg := prometheus.NewRegistry()
	m, err := retryhttp.NewMetrics(reg)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mLn, err := net.Listen("tcp", metricsAddr)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	mSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = mSrv.Serve(mLn) }()
	defer mSrv.Close()
	fmt.Printf("upstream: http://%s (capacity %d/s, offered %.0f/s by %d clients)\n", upLn.Addr(), capacity, offer, clients)
	fmt.Printf("metrics: http://%s/metrics\n", mLn.Addr())

	rt := retryhttp.New(nil, retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{}), retryhttp.WithMetrics(m))
	defer rt.CloseIdleConnections()
	url := "http://" + upLn.Addr().String() + "/"
	gap := time.Duration(float64(clients) / offer * float64(time.Second))
	var throttled atomic.Int64 // requests not sent: the rate would have them wait too long
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			next := time.Now()
			for {
				if d := time.Until(next); d > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(d):
					}
				}
				if ctx.Err() != nil {
					return
				}
				next = next.Add(gap)
				if errors.Is(send(ctx, rt, url, timeout), retryhttp.ErrThrottled) {
					throttled.Add(1)
				}
			}
		})
	}
	wg.Wait()
	ok, refused := up.counts()
	fmt.Printf("upstream answered %d requests 200 and %d a bare 429; %d requests were not sent (ErrThrottled)\n", ok, refused, throttled.Load())
	return nil
}

// send sends one GET with its own deadline and reads the answer.
func send(ctx context.Context, rt http.RoundTripper, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// upstream answers capacity requests in each second of the clock, and a
// bare 429 to the rest.
type upstream struct {
	capacity int

	mu          sync.Mutex
	window      time.Time
	served      int
	ok, refused int64
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	u.mu.Lock()
	if now := time.Now().Truncate(time.Second); !now.Equal(u.window) {
		u.window, u.served = now, 0
	}
	full := u.served >= u.capacity
	if full {
		u.refused++
	} else {
		u.served++
		u.ok++
	}
	u.mu.Unlock()
	if full {
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

func (u *upstream) counts() (ok, refused int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.ok, u.refused
}
