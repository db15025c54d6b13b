package attempt_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// resetServer is a raw HTTP/1 server that answers 200 keep-alive, and
// resets (RST) the connection instead, before answering, on every fourth
// request that arrives on a reused connection.
func resetServer(t *testing.T) *testkit.H1Server {
	var mu sync.Mutex
	seen := map[*net.TCPConn]bool{}
	var reused atomic.Int32
	return testkit.NewH1Server(t, func(_ int, c *net.TCPConn, _ *bufio.Reader, r *http.Request) bool {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		again := seen[c]
		seen[c] = true
		mu.Unlock()
		if again && reused.Add(1)%4 == 0 {
			testkit.Reset(c)
			return false
		}
		testkit.WriteResponse(c, http.StatusOK, "", "ok")
		return true
	})
}

// Over HTTP/1, with a server that resets reused keep-alive connections,
// net/http resends on its own, and the Transport counts those resends:
// attempts plus transparent retries are the requests the server received.
func TestTransparentRetriesMatchTheServerHTTP1(t *testing.T) {
	srv := resetServer(t)
	var ev eventCounts
	base := &http.Transport{MaxIdleConnsPerHost: 4}
	defer base.CloseIdleConnections()
	tr := retryhttp.New(base, retryhttp.WithRecorder(ev.rec), retryhttp.WithPolicy(fast))
	for range 100 {
		resp, err := tr.RoundTrip(mustReq(t, http.MethodGet, srv.URL, nil))
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	assert.Positive(t, ev.get(retryhttp.EventTransparentRetry))
	assert.Equal(t, int(srv.Requests.Load()), ev.get(retryhttp.EventAttempt)+ev.get(retryhttp.EventTransparentRetry))
}

// A hedge refused with REFUSED_STREAM and resent by net/http is counted
// as one transparent retry; attempts plus transparent retries are the
// requests the server received.
func TestTransparentRetriesOfAHedgeHTTP2(t *testing.T) {
	srv := newH2Srv(t, func(n int, ph h2Phase) h2Act {
		switch {
		case n == 1 && ph == phaseEnd:
			return actHang // the first copy never answers
		case n == 2 && ph == phaseEnd:
			return actRefuse // the hedge is refused once
		}
		return actNone
	})
	var ev eventCounts
	tr := retryhttp.New(srv.Client, retryhttp.WithRecorder(ev.rec), retryhttp.WithBudget(nil),
		retryhttp.WithHedging(retryhttp.Hedging{Delay: 30 * time.Millisecond}))
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	resp, err := tr.RoundTrip(mustReq(t, http.MethodGet, srv.url, nil).WithContext(ctx))
	require.NoError(t, err)
	resp.Body.Close()
	heads, _, _ := srv.stats()
	assert.Equal(t, 1, ev.get(retryhttp.EventTransparentRetry))
	assert.Equal(t, heads, ev.get(retryhttp.EventAttempt)+ev.get(retryhttp.EventTransparentRetry))
}

// A caller's own httptrace.ClientTrace still receives its callbacks, on
// every attempt, when the Transport counts (metrics on).
func TestCallersClientTraceStillCalled(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(503)
		}
	}))
	defer srv.Close()
	m, err := retryhttp.NewMetrics(nil)
	require.NoError(t, err)
	tr := retryhttp.New(nil, retryhttp.WithMetrics(m), retryhttp.WithPolicy(fast))
	var getConn, gotConn, wrote, firstByte atomic.Int32
	trace := &httptrace.ClientTrace{
		GetConn:              func(string) { getConn.Add(1) },
		GotConn:              func(httptrace.GotConnInfo) { gotConn.Add(1) },
		WroteRequest:         func(httptrace.WroteRequestInfo) { wrote.Add(1) },
		GotFirstResponseByte: func() { firstByte.Add(1) },
	}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	resp, err := tr.RoundTrip(mustReq(t, http.MethodGet, srv.URL, nil).WithContext(ctx))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, int32(2), getConn.Load())
	assert.Equal(t, int32(2), gotConn.Load())
	assert.Equal(t, int32(2), wrote.Load())
	assert.Equal(t, int32(2), firstByte.Load())
}

// A base that makes an auxiliary request to another host with the
// request's context (an OAuth2 token fetch, a discovery call: anything
// built with req.Context(), as is idiomatic) makes net/http report a
// second connection for the attempt; only connections to the attempt's
// own host count as resends, so no transparent retry is counted, and the
// attempts are the requests the API server received.
func TestAnAuxiliaryRequestIsNoTransparentRetry(t *testing.T) {
	var apiRecv atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { apiRecv.Add(1) }))
	defer api.Close()
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tok") }))
	defer tokens.Close()
	inner := &http.Transport{}
	defer inner.CloseIdleConnections()
	base := rtFunc(func(r *http.Request) (*http.Response, error) {
		treq, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, tokens.URL, nil)
		tresp, err := inner.RoundTrip(treq)
		if err != nil {
			return nil, err
		}
		tok, _ := io.ReadAll(tresp.Body)
		tresp.Body.Close()
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+string(tok))
		return inner.RoundTrip(r)
	})
	var ev eventCounts
	tr := retryhttp.New(base, retryhttp.WithRecorder(ev.rec))
	for range 5 {
		resp, err := tr.RoundTrip(mustReq(t, http.MethodGet, api.URL, nil))
		require.NoError(t, err)
		resp.Body.Close()
	}
	assert.Equal(t, 0, ev.get(retryhttp.EventTransparentRetry), "nothing was sent again")
	assert.Equal(t, int(apiRecv.Load()), ev.get(retryhttp.EventAttempt))
}
