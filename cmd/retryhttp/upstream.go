package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"
)

// faults says how the embedded upstream misbehaves.
type faults struct {
	errorRate    float64       // answered 503
	throttleRate float64       // answered 429 with Retry-After
	retryAfter   time.Duration // the Retry-After of the 429s
	resetRate    float64       // connection reset before any response
	latency      time.Duration // time to answer
}

func (f faults) validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"-error-rate", f.errorRate}, {"-throttle-rate", f.throttleRate}, {"-reset-rate", f.resetRate}} {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("%s: %v is not between 0 and 1", r.name, r.v)
		}
	}
	if sum := f.errorRate + f.throttleRate + f.resetRate; sum > 1 {
		return fmt.Errorf("-error-rate, -throttle-rate and -reset-rate add up to %v, more than 1", sum)
	}
	if f.retryAfter < 0 || f.latency < 0 {
		return fmt.Errorf("-retry-after and -latency must not be negative")
	}
	return nil
}

// startUpstream starts the embedded flaky upstream on 127.0.0.1.
func startUpstream(f faults) (*httptest.Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	srv := httptest.NewUnstartedServer(f.handler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	return srv, nil
}

func (f faults) handler() http.HandlerFunc {
	retryAfter := strconv.Itoa(int(f.retryAfter / time.Second))
	return func(w http.ResponseWriter, r *http.Request) {
		if f.latency > 0 {
			t := time.NewTimer(f.latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		p := rand.Float64()
		switch {
		case p < f.resetRate:
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				if tcp, ok := conn.(*net.TCPConn); ok {
					_ = tcp.SetLinger(0) // close with a reset
				}
				_ = conn.Close()
			}
		case p < f.resetRate+f.errorRate:
			http.Error(w, "upstream unavailable", http.StatusServiceUnavailable)
		case p < f.resetRate+f.errorRate+f.throttleRate:
			w.Header().Set("Retry-After", retryAfter)
			http.Error(w, "slow down", http.StatusTooManyRequests)
		default:
			_, _ = io.WriteString(w, "ok\n")
		}
	}
}
