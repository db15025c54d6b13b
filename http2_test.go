package retryhttp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp/internal/rawhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The raw HTTP/2 server of internal/rawhttp does what net/http's server
// never does on demand: refuse a stream (RST_STREAM REFUSED_STREAM) or send
// GOAWAY with a last stream ID below a request's, the two signals of RFC
// 9113 §8.7 that a request was not processed. These are the answers the
// tests below give, in its terms.
type h2Action = rawhttp.H2Action

var (
	h2Status200     = h2Action{Kind: rawhttp.H2Respond, Status: 200}
	h2Status503     = h2Action{Kind: rawhttp.H2Respond, Status: 503}
	h2Refuse        = h2Action{Kind: rawhttp.H2Reset, Code: rawhttp.CodeRefusedStream}
	h2GoAway        = h2Action{Kind: rawhttp.H2GoAway, LastStream: below}                                    // then close
	h2ResetProtocol = h2Action{Kind: rawhttp.H2Reset, Code: rawhttp.CodeProtocol}                            // after the whole request
	h2ResetInternal = h2Action{Kind: rawhttp.H2Reset, Code: rawhttp.CodeInternal}                            // as a handler that aborted sends
	h2ResetCancel   = h2Action{Kind: rawhttp.H2Reset, Code: rawhttp.CodeCancel}                              // CANCEL from the server
	h2GoAwayError   = h2Action{Kind: rawhttp.H2GoAway, Code: rawhttp.CodeEnhanceYourCalm, LastStream: below} // then close
)

// below is the last stream ID of a GOAWAY that says the request's own
// stream was not processed.
func below(stream uint32) uint32 {
	if stream > 2 {
		return stream - 2
	}
	return 0
}

// newH2Server starts a raw HTTP/2 server whose request number n (1-based,
// in order) gets decide(n).
func newH2Server(t *testing.T, decide func(n int) h2Action) *rawhttp.H2Server {
	t.Helper()
	return rawhttp.NewH2Server(t, decide)
}

// h2Stats returns the requests the server received whole, its
// connections, and the hash of each request's body.
func h2Stats(s *rawhttp.H2Server) (requests, conns int, bodies [][32]byte) {
	_, requests, conns = s.Stats()
	return requests, conns, s.Bodies()
}

// firstThen answers the first n requests with a and the rest with 200.
func firstThen(n int, a h2Action) func(int) h2Action { return rawhttp.FirstThen(n, a) }

func TestHTTP2RefusedStreamsAndGoAwayAreRecovered(t *testing.T) {
	payload := bytes.Repeat([]byte("h2-body "), 2000)
	tests := []struct {
		name   string
		method string
		header string
		decide func(n int) h2Action
	}{
		{"GET refused twice", http.MethodGet, "", firstThen(2, h2Refuse)},
		{"PUT refused twice", http.MethodPut, "", firstThen(2, h2Refuse)},
		{"PUT after GOAWAY", http.MethodPut, "", firstThen(1, h2GoAway)},
		{"POST with an idempotency key refused", http.MethodPost, "Idempotency-Key", firstThen(2, h2Refuse)},
		{"POST with an idempotency key after GOAWAY", http.MethodPost, "Idempotency-Key", firstThen(1, h2GoAway)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newH2Server(t, tt.decide)
			tr, clock := newTestTransport(t)
			tr.base = srv.Client
			body := &closeTracker{Reader: bytes.NewReader(payload)}
			req := mustRequest(t, tt.method, srv.URL, body) // no GetBody
			if tt.header != "" {
				req.Header.Set(tt.header, "k-1")
			}
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			readAll(t, resp)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "HTTP/2.0", resp.Proto)
			requests, _, bodies := h2Stats(srv)
			for i, h := range bodies {
				assert.Equal(t, sha256.Sum256(payload), h, "request %d carried the whole body", i+1)
			}
			// net/http may close a request body after RoundTrip returned.
			assert.Eventually(t, func() bool { return body.closes.Load() == 1 }, 5*time.Second, time.Millisecond,
				"the caller's body is closed")
			time.Sleep(10 * time.Millisecond)
			assert.Equal(t, int32(1), body.closes.Load(), "the caller's body is closed once")
			t.Logf("%d requests reached the server; retryhttp waited %d times", requests, len(clock.recorded()))
		})
	}
}

func TestHTTP2NeverResendsAPOSTTheServerMayHaveProcessed(t *testing.T) {
	// net/http's HTTP/2 client resends a request through GetBody after a
	// PROTOCOL_ERROR reset, where the server may have processed it. A POST
	// without an idempotency key must reach the server once, as it does
	// through bare net/http: retryhttp gives it no GetBody, and does not
	// send it again itself after any reset but a refused stream.
	payload := bytes.Repeat([]byte("order "), 3000)
	for _, reset := range []struct {
		name   string
		action h2Action
	}{{"PROTOCOL_ERROR", h2ResetProtocol}, {"INTERNAL_ERROR", h2ResetInternal}, {"CANCEL", h2ResetCancel}} {
		action := reset.action
		for _, bare := range []bool{true, false} {
			name := reset.name
			if bare {
				name += " bare net/http"
			}
			t.Run(name, func(t *testing.T) {
				srv := newH2Server(t, firstThen(1, action))
				var rt http.RoundTripper = srv.Client
				if !bare {
					tr, _ := newTestTransport(t)
					tr.base = srv.Client
					rt = tr
				}
				body := &closeTracker{Reader: bytes.NewReader(payload)}
				req := mustRequest(t, http.MethodPost, srv.URL, onlyReader{body})
				req.Body = body
				resp, err := rt.RoundTrip(req)
				if err == nil {
					readAll(t, resp)
				}
				requests, _, _ := h2Stats(srv)
				assert.Equal(t, 1, requests, "the POST reached the server once")
				assert.Error(t, err)
				assert.Nil(t, resp)
				assert.Equal(t, int32(1), body.closes.Load(), "the body is closed once")
			})
		}
	}
}

func TestHTTP2RefusedPOSTIsSentAgainByteForByte(t *testing.T) {
	// RFC 9113 §8.7: a stream refused with REFUSED_STREAM, or above the
	// last stream ID of a GOAWAY, was not processed, so any request may be
	// sent again. net/http cannot resend a POST that has no GetBody once
	// its body was written; retryhttp does, from its replay buffer.
	payload := bytes.Repeat([]byte("order "), 3000)
	tests := []struct {
		name     string
		decide   func(int) h2Action
		requests int
	}{
		{"refused twice", firstThen(2, h2Refuse), 3},
		{"GOAWAY", firstThen(1, h2GoAway), 2},
		{"GOAWAY with an error code on the first stream", firstThen(1, h2GoAwayError), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newH2Server(t, tt.decide)
			tr, clock := newTestTransport(t)
			tr.base = srv.Client
			body := &closeTracker{Reader: bytes.NewReader(payload)}
			req := mustRequest(t, http.MethodPost, srv.URL, onlyReader{body})
			req.Body = body // no GetBody
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			readAll(t, resp)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			requests, _, bodies := h2Stats(srv)
			assert.Equal(t, tt.requests, requests)
			for i, h := range bodies {
				assert.Equal(t, sha256.Sum256(payload), h, "request %d carried the whole body", i+1)
			}
			assert.Len(t, clock.recorded(), tt.requests-1, "each resend after a backoff")
			assert.Eventually(t, func() bool { return body.closes.Load() == 1 }, 5*time.Second, time.Millisecond,
				"the caller's body is closed")
			assert.Equal(t, int32(1), body.closes.Load(), "the caller's body is closed once")
		})
	}

	t.Run("past the replay buffer", func(t *testing.T) {
		// Byte for byte or not at all: a body longer than the buffer is
		// not sent again, and the error says why.
		srv := newH2Server(t, firstThen(1, h2Refuse))
		tr, _ := newTestTransport(t, WithReplayBuffer(1024))
		tr.base = srv.Client
		body := &closeTracker{Reader: bytes.NewReader(payload)}
		req := mustRequest(t, http.MethodPost, srv.URL, onlyReader{body})
		req.Body = body
		_, err := tr.RoundTrip(req)
		var rerr *Error
		require.ErrorAs(t, err, &rerr)
		assert.Equal(t, ReasonBody, rerr.Reason)
		requests, _, _ := h2Stats(srv)
		assert.Equal(t, 1, requests)
		assert.Eventually(t, func() bool { return body.closes.Load() == 1 }, 5*time.Second, time.Millisecond)
	})
}

func TestUnprocessedHTTP2ReadsOnlyNetHTTPsOwnWords(t *testing.T) {
	wrap := func(cause string) string { return h2CannotRetry + cause + h2CannotRetryEnd }
	tests := []struct {
		text string
		want bool
	}{
		{wrap("stream error: stream ID 1; REFUSED_STREAM; received from peer"), true},
		{wrap("stream error: stream ID 12345; REFUSED_STREAM"), true},
		{wrap(h2GracefulGoAway), true},
		{"http2: Transport received GOAWAY from server ErrCode:ENHANCE_YOUR_CALM", true},
		{"http2: Transport received GOAWAY from server ErrCode:unknown error code 0x1f", true},
		{wrap("stream error: stream ID 1; PROTOCOL_ERROR; received from peer"), false},
		{wrap("stream error: stream ID 1; REFUSED_STREAM; received from peer; PROTOCOL_ERROR"), false},
		{wrap("stream error: stream ID ; REFUSED_STREAM"), false},
		{wrap("stream error: stream ID 1x; REFUSED_STREAM"), false},
		{"proxy said: " + wrap("stream error: stream ID 1; REFUSED_STREAM"), false},
		{wrap("stream error: stream ID 1; REFUSED_STREAM") + " (and more)", false},
		{"http2: Transport received GOAWAY from server ErrCode:", false},
		{"http2: Transport received GOAWAY from server ErrCode:NO ERROR from the server: please retry", false},
		{h2GracefulGoAway, false}, // net/http retried it itself, up to 7 times
		{"REFUSED_STREAM", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, unprocessedHTTP2(errors.New(tt.text)), tt.text)
	}
	wrapped := fmt.Errorf("signing base: %w", errors.New(wrap(h2GracefulGoAway)))
	assert.True(t, unprocessedHTTP2(wrapped), "found in the tree of a wrapping base's error")
}

func TestHTTP2StreamResetIsRetriedLikeAConnectionReset(t *testing.T) {
	// A handler that aborts (http.ErrAbortHandler) resets its stream with
	// INTERNAL_ERROR over HTTP/2 where HTTP/1 closes the connection: an
	// idempotent request is retried either way.
	for _, action := range []h2Action{h2ResetInternal, h2ResetCancel} {
		srv := newH2Server(t, firstThen(1, action))
		tr, clock := newTestTransport(t)
		tr.base = srv.Client
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, srv.URL, nil))
		require.NoError(t, err)
		readAll(t, resp)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		requests, _, _ := h2Stats(srv)
		assert.Equal(t, 2, requests)
		assert.Len(t, clock.recorded(), 1, "one retry, after a backoff")
	}
}

func TestHTTP2AbortedHandlerOverARealServer(t *testing.T) {
	// The same through net/http's own HTTP/2 server: the handler panics
	// with http.ErrAbortHandler on the first attempt.
	var n atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			panic(http.ErrAbortHandler)
		}
		_, _ = io.WriteString(w, "ok")
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tr, _ := newTestTransport(t)
	tr.base = srv.Client().Transport
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, srv.URL, nil))
	require.NoError(t, err)
	assert.Equal(t, "ok", readAll(t, resp))
	assert.Equal(t, "HTTP/2.0", resp.Proto)
	assert.Equal(t, int32(2), n.Load())

	// A POST the handler may have acted on is not sent again.
	n.Store(0)
	resp, err = tr.RoundTrip(mustRequest(t, http.MethodPost, srv.URL, strings.NewReader("x")))
	require.Error(t, err)
	assert.Nil(t, resp)
	assert.Equal(t, int32(1), n.Load())
}

func TestHTTP2DroppedGetBodyCopyStillClosesTheBody(t *testing.T) {
	// Every stream is refused: net/http resends through the GetBody that
	// retryhttp gives it, then, while it backs off, the caller's deadline
	// ends and net/http drops the copy it made. The caller's body is still
	// closed, once. net/http resends at once, then backs off for a second:
	// a deadline of 900 ms falls in that backoff, and leaves the two first
	// sends most of a second, however busy the machine.
	srv := newH2Server(t, func(int) h2Action { return h2Refuse })
	tr, _ := newTestTransport(t)
	tr.base = srv.Client
	ctx, cancel := context.WithTimeout(context.Background(), 900*time.Millisecond)
	defer cancel()
	body := &closeTracker{Reader: strings.NewReader("payload")}
	req := mustRequest(t, http.MethodPut, srv.URL, onlyReader{body}).WithContext(ctx)
	req.Body = body
	_, err := tr.RoundTrip(req)
	require.Error(t, err)
	requests, _, _ := h2Stats(srv)
	require.GreaterOrEqual(t, requests, 2, "net/http resent it through GetBody")
	assert.Equal(t, int32(1), body.closes.Load())
}

func TestHTTP2RetriesDoNotMultiplyWithoutBound(t *testing.T) {
	// A server that refuses every stream: net/http retries a refused stream
	// itself, a few times; retryhttp must not multiply that by its own
	// attempts without bound.
	// net/http waits longer and longer between its own retries (1 s, 2 s,
	// 4 s...), so the caller's deadline ends this one.
	srv := newH2Server(t, func(int) h2Action { return h2Refuse })
	tr, _ := newTestTransport(t, WithPolicy(Policy{MaxAttempts: 5}))
	tr.base = srv.Client
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	_, err := tr.RoundTrip(mustRequest(t, http.MethodGet, srv.URL, nil).WithContext(ctx))
	require.Error(t, err)
	requests, _, _ := h2Stats(srv)
	t.Logf("a request refused every time reached the server %d times: %v", requests, err)
	assert.LessOrEqual(t, requests, 5, "net/http's own retries, not multiplied by ours")
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, 1, rerr.Attempts, "a refused stream that net/http gave up on is not retried again")

	// And 503 over HTTP/2 is retried by retryhttp exactly as over HTTP/1.
	busy := newH2Server(t, firstThen(2, h2Status503))
	tr2, _ := newTestTransport(t)
	tr2.base = busy.Client
	resp, err := tr2.RoundTrip(mustRequest(t, http.MethodGet, busy.URL, nil))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	requests, conns, _ := h2Stats(busy)
	assert.Equal(t, 3, requests)
	assert.Equal(t, 1, conns, "all three attempts on one HTTP/2 connection")
}
