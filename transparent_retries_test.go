package retryhttp

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// resettingServer answers the first request of each connection with 200
// and resets the connection (RST, no response) on any later one, after
// reading it: net/http's client resends an idempotent request that meets
// this on a reused connection, on a new one, by itself.
func resettingServer(t *testing.T) (url string, arrivals *atomic.Int32) {
	arrivals = new(atomic.Int32)
	type connCount struct{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrivals.Add(1)
		if r.Context().Value(connCount{}).(*atomic.Int32).Add(1) == 1 {
			w.WriteHeader(http.StatusOK)
			return
		}
		c, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}))
	srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, connCount{}, new(atomic.Int32))
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL, arrivals
}

func TestTransparentRetriesMakeTheCountsWhatTheServerReceived(t *testing.T) {
	// Sequential GETs over one pooled connection at a time: every request
	// after the first meets a reset on its reused connection, and net/http
	// sends it again on a new one. retryhttp sees one attempt, which
	// succeeded; the server saw two.
	url, arrivals := resettingServer(t)
	base := cleanhttp.DefaultPooledTransport()
	t.Cleanup(base.CloseIdleConnections)
	m, err := NewMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	var mu sync.Mutex
	events := map[EventKind]int{}
	var resendAttempts []int
	tr := New(base, WithMetrics(m), WithRecorder(func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		events[e.Kind]++
		if e.Kind == EventTransparentRetry {
			resendAttempts = append(resendAttempts, e.Attempt)
			assert.Equal(t, http.MethodGet, e.Method)
		}
	}))
	const n = 10
	for range n {
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, url, nil))
		require.NoError(t, err)
		readAll(t, resp)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	require.Equal(t, int32(2*n-1), arrivals.Load(), "the server saw every request but the first twice")

	attempts := testutil.ToFloat64(m.attempts)
	resends := testutil.ToFloat64(m.resends.WithLabelValues("GET"))
	assert.Equal(t, float64(n), attempts, "retryhttp's own attempts: one each")
	assert.Zero(t, testutil.CollectAndCount(m.retries), "no retry of retryhttp's")
	assert.Equal(t, float64(n-1), resends, "net/http's resends, counted apart")
	assert.Equal(t, float64(arrivals.Load()), attempts+resends, "attempts plus transparent retries is what the server received")

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, n-1, events[EventTransparentRetry], "one Event per resend")
	assert.Equal(t, n, events[EventAttempt])
	for _, a := range resendAttempts {
		assert.Equal(t, 1, a, "the resend was of attempt 1")
	}
}

func TestTransparentRetriesOfARefusedHTTP2Stream(t *testing.T) {
	// The server refuses the first stream; net/http's HTTP/2 client sends
	// the GET again by itself.
	srv := newH2Server(t, firstThen(1, h2Refuse))
	m, err := NewMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	tr := New(srv.Client, WithMetrics(m))
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, srv.URL, nil))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	requests, _, _ := h2Stats(srv)
	assert.Equal(t, 2, requests)
	assert.Equal(t, 1.0, testutil.ToFloat64(m.attempts))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.resends), "the refused stream, sent again by net/http")
}

func TestTransparentRetriesOfHedgedCopiesAreCounted(t *testing.T) {
	// A hedged request's copies go through the same watch: the first copy
	// meets the reset on its reused connection.
	url, arrivals := resettingServer(t)
	base := cleanhttp.DefaultPooledTransport()
	t.Cleanup(base.CloseIdleConnections)
	m, err := NewMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	tr := New(base, WithMetrics(m), WithBudget(nil), WithHedging(Hedging{Delay: 10 * 60e9}))
	for range 2 {
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, url, nil))
		require.NoError(t, err)
		readAll(t, resp)
	}
	require.Equal(t, int32(3), arrivals.Load())
	assert.Equal(t, 2.0, testutil.ToFloat64(m.attempts))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.resends))
}

func TestNoWatchWithoutCounts(t *testing.T) {
	// Without Metrics or recorders, a GET goes to the base as it came: no
	// trace, no copy of the request.
	var got *http.Request
	tr := New(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got = r
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	}))
	req := mustRequest(t, http.MethodGet, "http://example.test/", nil)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Same(t, req, got)
}
