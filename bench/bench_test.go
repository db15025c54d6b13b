package bench

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-cleanhttp"
)

// The rows of each benchmark run in a rotated order, shifted by one each
// time the benchmark runs (once per -count), so that no library always runs
// first or last on a noisy machine.
var rotation atomic.Int64

func rotated() []Lib {
	k := int(rotation.Add(1)) % len(Libs)
	return append(append([]Lib(nil), Libs[k:]...), Libs[:k]...)
}

// handlerRT is an in-memory RoundTripper: it serves each request with an
// http.Handler and no network, as a minimal transport would, so that a
// benchmark over it measures the wrappers' own CPU cost.
type handlerRT struct{ h http.Handler }

func (t handlerRT) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

var hello = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello, world") })

func consume(b *testing.B, resp *http.Response, err error) {
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// loopback starts a server and returns it with a fresh pooled transport.
func loopback(b *testing.B, h http.Handler) (*httptest.Server, *http.Transport) {
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	base := cleanhttp.DefaultPooledTransport()
	b.Cleanup(base.CloseIdleConnections)
	return srv, base
}

func BenchmarkInMemoryGET(b *testing.B) {
	for _, lib := range rotated() {
		b.Run("lib="+lib.Name, func(b *testing.B) {
			rt := lib.Wrap(handlerRT{hello}, Happy)
			req, _ := http.NewRequest(http.MethodGet, "http://bench.invalid/", nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := rt.RoundTrip(req)
				consume(b, resp, err)
			}
		})
	}
}

func BenchmarkLoopbackGET(b *testing.B) {
	for _, lib := range rotated() {
		b.Run("lib="+lib.Name, func(b *testing.B) {
			srv, base := loopback(b, hello)
			rt := lib.Wrap(base, Happy)
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := rt.RoundTrip(req)
				consume(b, resp, err)
			}
		})
	}
}

func BenchmarkLoopbackGETParallel(b *testing.B) {
	for _, lib := range rotated() {
		b.Run("lib="+lib.Name, func(b *testing.B) {
			srv, base := loopback(b, hello)
			rt := lib.Wrap(base, Happy)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
				for pb.Next() {
					resp, err := rt.RoundTrip(req)
					consume(b, resp, err)
				}
			})
		})
	}
}

func BenchmarkLoopbackPUT1MiB(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 1<<20)
	discard := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) })
	for _, lib := range rotated() {
		b.Run("lib="+lib.Name, func(b *testing.B) {
			srv, base := loopback(b, discard)
			rt := lib.Wrap(base, Happy)
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPut, srv.URL, bytes.NewReader(payload))
				resp, err := rt.RoundTrip(req)
				consume(b, resp, err)
			}
		})
	}
}

// BenchmarkLoopbackRetry sends requests that get 503, 503 and then 200,
// with near-zero backoff, and reports new TCP connections per request: a
// library that neither drains nor closes discarded responses opens one per
// retry.
func BenchmarkLoopbackRetry(b *testing.B) {
	for _, lib := range rotated() {
		if lib.Name == "bare" || lib.Name == "promhttp-counter" {
			continue // they do not retry
		}
		b.Run("lib="+lib.Name, func(b *testing.B) {
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
			rt := lib.Wrap(base, Retrying)
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := rt.RoundTrip(req)
				consume(b, resp, err)
			}
			b.ReportMetric(float64(conns.Load())/float64(b.N), "conns/op")
		})
	}
}

// uploadBinary builds cmd/upload once.
var uploadBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "retryhttp-bench")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "upload")
	out, err := exec.Command("go", "build", "-o", bin, "./cmd/upload").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// BenchmarkStreamUpload streams 256 MiB from a reader without GetBody
// through each library, each in a process of its own (cmd/upload), and
// reports the process's peak RSS: bare is the baseline; a library that
// buffers the body to retry it needs hundreds of MiB more.
func BenchmarkStreamUpload(b *testing.B) {
	bin, err := uploadBinary()
	if err != nil {
		b.Fatal(err)
	}
	size := int64(256 << 20)
	if testing.Short() {
		size = 16 << 20
	}
	for _, lib := range rotated() {
		b.Run("lib="+lib.Name, func(b *testing.B) {
			var peak float64
			for b.Loop() {
				out, err := exec.Command(bin, "-lib", lib.Name, "-size", strconv.FormatInt(size, 10)).CombinedOutput()
				if err != nil {
					b.Fatalf("%v: %s", err, out)
				}
				var kib float64
				if _, err := fmt.Sscanf(string(out), "peak-rss-kib %g", &kib); err != nil {
					b.Fatalf("%v: %s", err, out)
				}
				peak = max(peak, kib/1024)
			}
			b.SetBytes(size)
			b.ReportMetric(peak, "peak-RSS-MiB")
		})
	}
}
