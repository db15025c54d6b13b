package retryhttp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRetriesStatusUntilSuccess(t *testing.T) {
	tests := []struct {
		name       string
		codes      []int
		policy     Policy
		wantStatus int
		wantTries  int
	}{
		{"success needs one attempt", []int{200}, Policy{}, 200, 1},
		{"503 then 200", []int{503, 200}, Policy{}, 200, 2},
		{"408 429 then 200", []int{408, 429, 200}, Policy{}, 200, 3},
		{"500 502 504 exhaust three attempts", []int{500, 502, 504, 200}, Policy{}, 504, 3},
		{"five attempts reach the 200", []int{500, 502, 503, 504, 200}, Policy{MaxAttempts: 5}, 200, 5},
		{"MaxAttempts 1 disables retries", []int{503, 200}, Policy{MaxAttempts: 1}, 503, 1},
		{"404 is final", []int{404, 200}, Policy{}, 404, 1},
		{"501 is final", []int{501, 200}, Policy{}, 501, 1},
		{"505 is final", []int{505, 200}, Policy{}, 505, 1},
		{"400 is final", []int{400, 200}, Policy{}, 400, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, statuses(tt.codes...))
			tr, clock := newTestTransport(t, WithPolicy(tt.policy), WithBudget(nil)) // a quiet client's budget holds two retries
			req, _ := http.NewRequest(http.MethodGet, up.URL, nil)

			resp, err := do(t, tr, req)
			require.NoError(t, err)
			assert.Equal(t, tt.wantStatus, resp.StatusCode)
			assert.Equal(t, http.StatusText(tt.wantStatus), readAll(t, resp), "the final body arrives unread")
			assert.Equal(t, tt.wantTries, int(up.attempts.Load()))
			assert.Len(t, clock.recorded(), tt.wantTries-1, "one wait per retry")
			assert.Equal(t, int32(1), up.conns.Load(), "drained responses keep the connection")
			assert.Same(t, req, resp.Request)
		})
	}
}

func TestFinalResponseIsReturnedUnchanged(t *testing.T) {
	up := newUpstream(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Attempt", string(rune('0'+n)))
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "down for maintenance")
	})
	tr, _ := newTestTransport(t)
	resp, err := do(t, tr, mustRequest(t, http.MethodGet, up.URL, nil))
	require.NoError(t, err, "a response means a nil error")
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "3", resp.Header.Get("X-Attempt"), "the last attempt's response")
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.Equal(t, "down for maintenance", readAll(t, resp))
}

func TestIdempotency(t *testing.T) {
	tests := []struct {
		method    string
		header    string
		wantTries int
	}{
		{http.MethodGet, "", 3},
		{http.MethodHead, "", 3},
		{http.MethodOptions, "", 3},
		{http.MethodTrace, "", 3},
		{http.MethodPut, "", 3},
		{http.MethodDelete, "", 3},
		{http.MethodPost, "", 1},
		{http.MethodPatch, "", 1},
		{"PURGE", "", 1},
		{http.MethodPost, "Idempotency-Key", 3},
		{http.MethodPost, "X-Idempotency-Key", 3},
		{http.MethodPatch, "Idempotency-Key", 3},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.header, func(t *testing.T) {
			up := newUpstream(t, statuses(503))
			tr, _ := newTestTransport(t)
			req := mustRequest(t, tt.method, up.URL, strings.NewReader("payload"))
			if tt.header != "" {
				req.Header.Set(tt.header, "key-123")
			}
			resp, err := do(t, tr, req)
			require.NoError(t, err)
			readAll(t, resp)
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			assert.Equal(t, tt.wantTries, int(up.attempts.Load()))
		})
	}
}

func TestDialFailureRetriesEvenPOST(t *testing.T) {
	// A port with nothing listening: every dial is refused, so the server
	// never saw the POST and sending it again is safe.
	addr := closedAddr(t)
	tr, clock := newTestTransport(t)
	body := &closeTracker{Reader: strings.NewReader("order=1")}
	req := mustRequest(t, http.MethodPost, "http://"+addr+"/orders", body)

	resp, err := tr.RoundTrip(req)
	require.Error(t, err)
	assert.Nil(t, resp)
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, 3, rerr.Attempts)
	assert.Contains(t, err.Error(), "after 3 attempts")
	var opErr *net.OpError
	assert.ErrorAs(t, err, &opErr)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	assert.Len(t, clock.recorded(), 2)
	assert.Equal(t, int32(1), body.closes.Load(), "the body is closed exactly once")
}

func TestDialFailureThenServerComesUp(t *testing.T) {
	// The first dial is refused; during the wait the server starts on that
	// port, and the POST's body arrives whole on the second attempt.
	addr := closedAddr(t)
	var up *upstream
	tr, _ := newTestTransport(t)
	tr.sleep = func(ctx context.Context, d time.Duration) error {
		if up == nil {
			up = startUpstreamOn(t, addr, statuses(201))
		}
		return nil
	}
	payload := bytes.Repeat([]byte("x"), 10_000)
	req := mustRequest(t, http.MethodPost, "http://"+addr+"/", io.NopCloser(bytes.NewReader(payload)))
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	require.NotNil(t, up)
	assert.Equal(t, int32(1), up.attempts.Load())
	assert.Equal(t, [][32]byte{sha(payload)}, up.bodyHashes())
}

func TestBrokenConnections(t *testing.T) {
	tests := []struct {
		name   string
		method string
		fault  func(c *net.TCPConn)
		want   int // attempts the server saw
	}{
		{"GET after reset is retried", http.MethodGet, reset, 2},
		{"GET after EOF is retried", http.MethodGet, hangUp, 2},
		{"POST after reset is never sent again", http.MethodPost, reset, 1},
		{"POST after EOF is never sent again", http.MethodPost, hangUp, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					conn, _, err := http.NewResponseController(w).Hijack()
					require.NoError(t, err)
					tt.fault(conn.(*net.TCPConn))
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			tr, _ := newTestTransport(t)
			req := mustRequest(t, tt.method, up.URL, strings.NewReader("data"))
			resp, err := tr.RoundTrip(req)
			assert.Equal(t, tt.want, int(up.attempts.Load()))
			if tt.want == 2 {
				require.NoError(t, err)
				readAll(t, resp)
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				return
			}
			require.Error(t, err)
			var rerr *Error
			require.ErrorAs(t, err, &rerr)
			assert.Equal(t, 1, rerr.Attempts)
		})
	}
}

func TestAttemptTimeoutIsRetried(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			select { // hang past the attempt's header timeout
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	tr, _ := newTestTransport(t)
	// The second attempt must get its headers within the timeout: 500 ms is
	// far more than loopback takes on a busy machine.
	tr.base.(*http.Transport).ResponseHeaderTimeout = 500 * time.Millisecond
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, int32(2), up.attempts.Load())
}

func TestPermanentErrorsAreNotRetried(t *testing.T) {
	tlsUp := newTLSUpstream(t)
	tests := []struct {
		name string
		url  string
	}{
		{"unknown certificate authority", tlsUp.URL},
		{"unsupported scheme", "ftp://127.0.0.1/file"},
		{"no host", "http:///path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, clock := newTestTransport(t)
			resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, tt.url, nil))
			require.Error(t, err)
			assert.Nil(t, resp)
			var rerr *Error
			require.ErrorAs(t, err, &rerr)
			assert.Equal(t, 1, rerr.Attempts)
			assert.Empty(t, clock.recorded(), "no wait, no retry")
		})
	}
	assert.Equal(t, int32(1), tlsUp.conns.Load(), "one TLS handshake, not three")
}

func TestTransportNeverModifiesTheRequest(t *testing.T) {
	up := newUpstream(t, statuses(503, 503, 200))
	tr, _ := newTestTransport(t)
	body := io.NopCloser(strings.NewReader("abc"))
	req := mustRequest(t, http.MethodPut, up.URL+"/p?q=1", body)
	req.Header.Set("X-Custom", "v")
	before := *req
	headerBefore := req.Header.Clone()

	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, 3, int(up.attempts.Load()))
	assert.Equal(t, headerBefore, req.Header)
	assert.Equal(t, before.URL.String(), req.URL.String())
	assert.True(t, before.Body == req.Body, "Body field untouched")
	assert.Nil(t, req.GetBody, "GetBody untouched")
	assert.Same(t, req, resp.Request, "the response names the caller's request")
}

func TestInvalidPolicyFailsEveryRoundTrip(t *testing.T) {
	tr := New(nil, WithPolicy(Policy{BaseDelay: -time.Second}))
	for range 2 {
		body := &closeTracker{Reader: strings.NewReader("x")}
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodPut, "http://127.0.0.1:1/", body))
		assert.Nil(t, resp)
		var perr *PolicyError
		require.ErrorAs(t, err, &perr)
		assert.Equal(t, "BaseDelay", perr.Field)
		assert.Contains(t, err.Error(), "Policy.BaseDelay")
		assert.Equal(t, int32(1), body.closes.Load(), "the body is closed on errors too")
	}

	tr = New(nil, WithReplayBuffer(-1))
	_, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://127.0.0.1:1/", nil))
	assert.ErrorContains(t, err, "ReplayBuffer")
}

func TestBadRequests(t *testing.T) {
	tr, _ := newTestTransport(t)
	resp, err := tr.RoundTrip(nil)
	assert.Nil(t, resp)
	assert.ErrorContains(t, err, "nil *http.Request")

	body := &closeTracker{Reader: strings.NewReader("x")}
	req := &http.Request{Method: http.MethodPost, Header: http.Header{}, Body: body}
	resp, err = tr.RoundTrip(req)
	assert.Nil(t, resp)
	assert.ErrorContains(t, err, "nil Request.URL")
	assert.Equal(t, int32(1), body.closes.Load())
}

func TestNilBaseUsesPooledTransport(t *testing.T) {
	up := newUpstream(t, statuses(200))
	tr := New(nil)
	_, ok := tr.base.(*http.Transport)
	require.True(t, ok)
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
	require.NoError(t, err)
	readAll(t, resp)
	tr.CloseIdleConnections()
}

func TestCloseIdleConnectionsIsForwarded(t *testing.T) {
	up := newUpstream(t, statuses(200))
	tr, _ := newTestTransport(t)
	client := &http.Client{Transport: tr}
	for range 2 {
		resp, err := client.Get(up.URL)
		require.NoError(t, err)
		readAll(t, resp)
	}
	assert.Equal(t, int32(1), up.conns.Load(), "keep-alive")
	client.CloseIdleConnections()
	resp, err := client.Get(up.URL)
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, int32(2), up.conns.Load(), "the idle connection was closed")
}

func mustRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	return req
}

func reset(c *net.TCPConn) {
	_ = c.SetLinger(0) // close with RST
	_ = c.Close()
}

func hangUp(c *net.TCPConn) { _ = c.Close() }

var errTestBody = errors.New("test body failure")

func TestNoGoroutineOutlivesTheRequests(t *testing.T) {
	before := runtime.NumGoroutine()
	up := newUpstream(t, statuses(503, 200))
	tr, _ := newTestTransport(t)
	for range 20 {
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodPut, up.URL, onlyReader{strings.NewReader("abc")}))
		require.NoError(t, err)
		readAll(t, resp)
	}
	_, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://"+closedAddr(t), nil))
	require.Error(t, err)
	tr.CloseIdleConnections()
	up.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	assert.LessOrEqual(t, runtime.NumGoroutine(), before, "goroutines left behind")
}

// brokenRT breaks the RoundTripper contract in the ways a Transport must
// survive.
type brokenRT struct {
	resp *http.Response
	err  error
}

func (b brokenRT) RoundTrip(*http.Request) (*http.Response, error) { return b.resp, b.err }

func TestBrokenBaseNeverYieldsResponseAndError(t *testing.T) {
	body := &closeTracker{Reader: strings.NewReader("")}
	tests := []brokenRT{
		{nil, nil},
		{&http.Response{StatusCode: 200, Body: body}, errTestBody},
	}
	for _, base := range tests {
		tr := New(base, WithPolicy(Policy{MaxAttempts: 2, BaseDelay: time.Nanosecond}))
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://127.0.0.1/", nil))
		assert.Nil(t, resp)
		assert.Error(t, err)
	}
	assert.Equal(t, int32(1), body.closes.Load(), "the response that came with an error was closed")
}
