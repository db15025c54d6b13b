// Command driver sends requests through a retryhttp Transport to a flaky
// loopback upstream and serves the Transport's metrics, for the end-to-end
// test of the dashboard and alert rules (e2e.sh). It stops after -duration.
//
// The upstream fails often enough that every dashboard panel has data and
// every alert's condition holds: it answers 503 or 429, resets connections,
// asks for waits longer than MaxRetryAfter, and sees POSTs that are not
// retried.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/retryhttp/retryhttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9464", "address to serve /metrics on")
	duration := flag.Duration("duration", 2*time.Minute, "how long to send requests")
	clients := flag.Int("clients", 4, "concurrent clients")
	flag.Parse()
	if err := run(*listen, *duration, *clients); err != nil {
		fmt.Fprintln(os.Stderr, "driver:", err)
		os.Exit(1)
	}
}

func run(listen string, duration time.Duration, clients int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()

	upstream := &http.Server{Handler: http.HandlerFunc(flaky)}
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = upstream.Serve(upLn) }()
	defer upstream.Close()

	reg := prometheus.NewRegistry()
	metrics, err := retryhttp.NewMetrics(reg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	metricsSrv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}
	go func() { _ = metricsSrv.Serve(ln) }()
	defer metricsSrv.Close()
	fmt.Printf("driver: upstream http://%s, metrics http://%s/metrics\n", upLn.Addr(), ln.Addr())

	tr := retryhttp.New(nil,
		retryhttp.WithMetrics(metrics),
		retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond, MaxRetryAfter: time.Second}))
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	url := "http://" + upLn.Addr().String()

	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				send(ctx, client, url)
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	return nil
}

// send makes one request: mostly GETs, some POSTs (not retried on 503).
func send(ctx context.Context, client *http.Client, url string) {
	method, body := http.MethodGet, io.Reader(nil)
	if rand.IntN(10) == 0 {
		method, body = http.MethodPost, strings.NewReader(`{"n":1}`)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return
	}
	resp, err := client.Do(req)
	if err != nil {
		return // failures are the point; the metrics count them
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// flaky fails 65% of attempts in various ways.
func flaky(w http.ResponseWriter, r *http.Request) {
	switch p := rand.Float64(); {
	case p < 0.45:
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	case p < 0.55:
		w.Header().Set("Retry-After", "0")
		http.Error(w, "slow down", http.StatusTooManyRequests)
	case p < 0.57:
		w.Header().Set("Retry-After", "120") // more than MaxRetryAfter: too_late
		http.Error(w, "come back later", http.StatusServiceUnavailable)
	case p < 0.60:
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.(*net.TCPConn).SetLinger(0)
			_ = conn.Close() // reset
		}
	case p < 0.65:
		http.NotFound(w, r)
	default:
		_, _ = io.WriteString(w, "ok")
	}
}
