package retryhttp_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/retryhttp/retryhttp"
)

// The happy path: every request succeeds at once. Each benchmark has a bare
// row (the base transport alone), a retryhttp row (the same base wrapped) and
// a retryhttp+metrics row, so benchstat compares them from one run:
//
//	go test -run '^$' -bench . -count 10 | tee new.txt && benchstat -col /rt new.txt

// staticRT answers every request with the same response at no cost, so the
// in-memory benchmark measures only what a wrapper adds.
type staticRT struct{ resp *http.Response }

func (s staticRT) RoundTrip(*http.Request) (*http.Response, error) { return s.resp, nil }

func newMetrics() *retryhttp.Metrics {
	m, err := retryhttp.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		panic(err)
	}
	return m
}

func rows(base http.RoundTripper) []struct {
	name string
	rt   http.RoundTripper
} {
	return []struct {
		name string
		rt   http.RoundTripper
	}{
		{"rt=bare", base},
		{"rt=retryhttp", retryhttp.New(base)},
		{"rt=retryhttp+metrics", retryhttp.New(base, retryhttp.WithMetrics(newMetrics()))},
		{"rt=retryhttp+adaptive", retryhttp.New(base, retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{}))},
		{"rt=retryhttp+hedging", retryhttp.New(base, retryhttp.WithHedging(retryhttp.Hedging{Delay: time.Minute}))},
		{"rt=retryhttp+seam", retryhttp.New(base,
			retryhttp.WithObserver(func(retryhttp.Attempt) {}),
			retryhttp.WithClassifier(func(*http.Request, *http.Response, error) retryhttp.Decision { return retryhttp.UseDefault }))},
	}
}

func BenchmarkInMemoryGET(b *testing.B) {
	base := staticRT{&http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}}
	req, _ := http.NewRequest(http.MethodGet, "http://example.invalid/", nil)
	for _, row := range rows(base) {
		b.Run(row.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := row.rt.RoundTrip(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func loopback(b *testing.B, h http.HandlerFunc) (*httptest.Server, *http.Transport) {
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	base := cleanhttp.DefaultPooledTransport()
	b.Cleanup(base.CloseIdleConnections)
	return srv, base
}

func BenchmarkLoopbackGET(b *testing.B) {
	srv, base := loopback(b, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello, world") })
	for _, row := range rows(base) {
		b.Run(row.name, func(b *testing.B) {
			b.ReportAllocs()
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			for b.Loop() {
				resp, err := row.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

func BenchmarkLoopbackGETParallel(b *testing.B) {
	srv, base := loopback(b, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello, world") })
	for _, row := range rows(base) {
		b.Run(row.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
				for pb.Next() {
					resp, err := row.rt.RoundTrip(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}

func BenchmarkLoopbackPUT1MiB(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 1<<20)
	srv, base := loopback(b, func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) })
	for _, row := range rows(base) {
		b.Run(row.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPut, srv.URL, bytes.NewReader(payload))
				resp, err := row.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

// BenchmarkLoopbackRetry measures a request that gets 503, 503 and then 200,
// with near-zero backoff, and reports the new TCP connections per request:
// discarded responses are drained, so all three attempts share one.
func BenchmarkLoopbackRetry(b *testing.B) {
	var n, conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1)%3 != 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "hello, world")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	b.Cleanup(srv.Close)
	base := cleanhttp.DefaultPooledTransport()
	b.Cleanup(base.CloseIdleConnections)
	rt := retryhttp.New(base, retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Nanosecond, MaxDelay: time.Nanosecond}))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := rt.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatal(resp, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	b.ReportMetric(float64(conns.Load())/float64(b.N), "conns/op")
}
