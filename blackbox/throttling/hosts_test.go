package throttling_test

import (
	"context"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestManyHostsStayBounded: every host announces a long window with quota
// left; memory must not grow with the number of hosts.
func TestManyHostsStayBounded(t *testing.T) {
	base := newFakeBase(func(n int, r *http.Request) (int, http.Header) {
		return 200, hdr("X-RateLimit-Limit", "5000", "X-RateLimit-Remaining", "4999", "X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
	})
	tr := retryhttp.New(base)
	send := func(from, to int) time.Duration {
		start := time.Now()
		for i := from; i < to; i++ {
			resp, err := tr.RoundTrip(get(t, context.Background(), "http://h"+strconv.Itoa(i)+".test/"))
			require.NoError(t, err)
			drain(resp)
		}
		return time.Since(start)
	}
	send(0, 2000)
	h1 := heap()
	took := send(2000, 6000)
	h2 := heap()
	t.Logf("heap %d KiB after 2000 hosts, %d KiB after 6000; %v per new host beyond 1024", h1>>10, h2>>10, took/4000)
	assert.Less(t, float64(h2), float64(h1)*1.2+64<<10, "memory bounded")
}

// TestAHeldHostIsNotForgottenForHostsWithQuotaLeft: host A is held 30 s by
// a 429; then the client talks to 1100 other hosts whose responses merely
// say how much of a long window is left. A is still held: a request to it
// with retries off fails fast instead of being sent into a certain 429.
func TestAHeldHostIsNotForgottenForHostsWithQuotaLeft(t *testing.T) {
	reset := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	base := newFakeBase(func(n int, r *http.Request) (int, http.Header) {
		if r.URL.Host == "a.test" {
			return 429, hdr("Retry-After", "30")
		}
		return 200, hdr("X-RateLimit-Remaining", "4999", "X-RateLimit-Reset", reset)
	})
	tr := retryhttp.New(base)
	noRetries := retryhttp.ContextWithoutRetries(context.Background())
	resp, err := tr.RoundTrip(get(t, noRetries, "http://a.test/"))
	require.NoError(t, err)
	drain(resp)
	_, err = tr.RoundTrip(get(t, noRetries, "http://a.test/"))
	require.ErrorIs(t, err, retryhttp.ErrThrottled, "held")
	for i := range 1100 {
		resp, err := tr.RoundTrip(get(t, context.Background(), "http://h"+strconv.Itoa(i)+".test/"))
		require.NoError(t, err)
		drain(resp)
	}
	_, err = tr.RoundTrip(get(t, noRetries, "http://a.test/"))
	assert.ErrorIs(t, err, retryhttp.ErrThrottled, "still held")
	assert.Equal(t, 1, base.count("a.test"), "the held host got a request before its T")
}

// TestSharedTransportUnderRace: many goroutines, several hosts, every
// kind of signal, one Transport.
func TestSharedTransportUnderRace(t *testing.T) {
	up := []*upstream{}
	for i := range 4 {
		up = append(up, newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
			switch (n + i) % 7 {
			case 0:
				w.Header().Set("Retry-After-Ms", "50")
				w.WriteHeader(429)
			case 1:
				w.Header().Set("RateLimit", `"default";r=0;t=0`)
				w.WriteHeader(200)
			case 2:
				w.Header().Set("X-RateLimit-Remaining", "0")
				w.Header().Set("X-RateLimit-Reset", "0")
				w.WriteHeader(403)
			case 3:
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(503)
			case 4:
				w.Header().Set("RateLimit", `"default";r=3;t=1`)
				w.Header().Set("RateLimit-Policy", `"default";q=100;w=1`)
				w.WriteHeader(200)
			default:
				w.WriteHeader(200)
			}
		}))
	}
	tr := realTransport(t, retryhttp.WithBudget(nil), retryhttp.WithObserver(func(retryhttp.Attempt) {}))
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for g := range 40 {
		wg.Go(func() {
			for i := range 25 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if i%5 == 0 {
					ctx = retryhttp.ContextWithoutRetries(ctx)
				}
				resp, err := tr.RoundTrip(get(t, ctx, up[(g+i)%4].URL))
				if err == nil {
					drain(resp)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	tr.CloseIdleConnections()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	assert.LessOrEqual(t, runtime.NumGoroutine(), before, "no goroutine left")
}

// BenchmarkNewHost: the cost of a response from a host the Transport has
// not heard from, once 1024 hosts are known (each announcing a window), and
// of one from a known host.
func BenchmarkNewHost(b *testing.B) {
	reset := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	h := hdr("X-RateLimit-Remaining", "4999", "X-RateLimit-Reset", reset)
	base := rtFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: h, Body: http.NoBody}, nil
	})
	tr := retryhttp.New(base)
	next := 0
	req := func() *http.Request {
		next++
		r, _ := http.NewRequest(http.MethodGet, "http://h"+strconv.Itoa(next)+".test/", nil)
		return r
	}
	for range 2048 {
		_, _ = tr.RoundTrip(req())
	}
	b.Run("new", func(b *testing.B) {
		reqs := make([]*http.Request, b.N)
		for i := range reqs {
			reqs[i] = req()
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			_, _ = tr.RoundTrip(reqs[i])
		}
	})
	b.Run("known", func(b *testing.B) {
		r, _ := http.NewRequest(http.MethodGet, "http://h5.test/", nil)
		for i := 0; i < b.N; i++ {
			_, _ = tr.RoundTrip(r)
		}
	})
}
