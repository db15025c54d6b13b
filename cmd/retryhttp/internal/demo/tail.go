package demo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/retryhttp/retryhttp"
)

// parseHedge reads -hedge: "" for none, a positive delay, or "adaptive".
func parseHedge(s string) (*retryhttp.Hedging, error) {
	switch s {
	case "":
		return nil, nil
	case "adaptive":
		return &retryhttp.Hedging{}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return nil, fmt.Errorf("-hedge: %q is neither a positive delay (20ms) nor adaptive", s)
	}
	return &retryhttp.Hedging{Delay: d}, nil
}

// tailDemo shows what hedging does to the tail of the latency, as in "The
// Tail at Scale" (Dean and Barroso, 2013): the same clients against an
// upstream where a few requests are very slow, first without hedging, then
// with it.
func tailDemo(ctx context.Context, c demoConfig, stdout io.Writer) error {
	f := faults{latency: 2 * time.Millisecond, slowRate: 0.02, slowLatency: 300 * time.Millisecond}
	if c.faults.slowRate > 0 {
		f.slowRate, f.slowLatency = c.faults.slowRate, c.faults.slowLatency
	}
	up, err := startUpstream(f)
	if err != nil {
		return err
	}
	defer up.Close()
	hedge := c.hedge
	if hedge == "" {
		hedge = "adaptive"
	}
	h, err := parseHedge(hedge)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "tail: upstream %s answers in %v, but %.1f%% of requests take %v; %d clients, %v without hedging, then %v with hedging (%s)\n",
		up.URL, f.latency, 100*f.slowRate, f.slowLatency, c.clients, c.duration/2, c.duration/2, hedge)
	fmt.Fprintf(stdout, "\n%-20s %9s %9s %9s %9s %7s\n", "", "requests", "p50", "p99", "p99.9", "extra")
	for _, row := range []struct {
		name string
		opts []retryhttp.Option
	}{
		{"without hedging", nil},
		{"hedging " + hedge, []retryhttp.Option{retryhttp.WithHedging(*h)}},
	} {
		var attempts atomic.Int64
		opts := append([]retryhttp.Option{retryhttp.WithPolicy(c.policy),
			retryhttp.WithObserver(func(retryhttp.Attempt) { attempts.Add(1) })}, row.opts...)
		tr := retryhttp.New(nil, opts...)
		took := runTimed(ctx, &http.Client{Transport: tr}, up.URL, c.clients, c.duration/2)
		tr.CloseIdleConnections()
		if len(took) == 0 {
			return ctx.Err()
		}
		slices.Sort(took)
		at := func(q float64) time.Duration {
			return took[min(len(took)-1, int(q*float64(len(took))))].Round(100 * time.Microsecond)
		}
		fmt.Fprintf(stdout, "%-20s %9d %9v %9v %9v %6.1f%%\n", row.name, len(took), at(0.5), at(0.99), at(0.999),
			100*float64(attempts.Load()-int64(len(took)))/float64(len(took)))
		if ctx.Err() != nil {
			return nil
		}
	}
	fmt.Fprintln(stdout, "\nextra: attempts beyond one per request, the load hedging adds; each hedge is paid for from the retry budget")
	return nil
}

// runTimed sends GETs from clients goroutines for d, and returns how long
// each took.
func runTimed(ctx context.Context, client *http.Client, url string, clients int, d time.Duration) []time.Duration {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var took []time.Duration
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, url, nil)
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				took = append(took, time.Since(start))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return took
}
