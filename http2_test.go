package retryhttp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// h2Server is a minimal HTTP/2 server over TLS, written with raw frames so
// that it can do what net/http's server never does on demand: refuse a
// stream (RST_STREAM REFUSED_STREAM) or send GOAWAY with a last stream ID
// below a request's, the two signals of RFC 9113 §8.7 that a request was
// not processed. decide is called for each complete request, in order, with
// its 1-based number, and says what to do.
type h2Server struct {
	ln     net.Listener
	url    string
	client *http.Transport // trusts the server's certificate, speaks HTTP/2
	decide func(n int) h2Action

	mu       sync.Mutex
	requests int        // complete requests received
	bodies   [][32]byte // hash of each request's body
	conns    int        // connections accepted
}

type h2Action int

const (
	h2Status200 h2Action = iota
	h2Status503
	h2Refuse        // RST_STREAM REFUSED_STREAM
	h2GoAway        // GOAWAY with last stream ID below this request's, then close
	h2ResetProtocol // RST_STREAM PROTOCOL_ERROR, after reading the whole request
	h2ResetInternal // RST_STREAM INTERNAL_ERROR, as a handler that aborted sends
	h2ResetCancel   // RST_STREAM CANCEL from the server
	h2GoAwayError   // GOAWAY ENHANCE_YOUR_CALM with last stream ID below this request's, then close
)

func newH2Server(t *testing.T, decide func(n int) h2Action) *h2Server {
	t.Helper()
	cert := httptest.NewUnstartedServer(nil)
	cert.EnableHTTP2 = true
	cert.StartTLS() // only for its certificate and a client that trusts it
	client := cert.Client().Transport.(*http.Transport).Clone()
	cert.Close()
	cfg := &tls.Config{Certificates: cert.TLS.Certificates, NextProtos: []string{"h2"}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	s := &h2Server{ln: ln, url: "https://" + ln.Addr().String(), client: client, decide: decide}
	t.Cleanup(func() { ln.Close(); client.CloseIdleConnections() })
	go s.serve()
	return s
}

func (s *h2Server) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns++
		s.mu.Unlock()
		go s.conn(c)
	}
}

func (s *h2Server) stats() (requests, conns int, bodies [][32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, s.conns, append([][32]byte(nil), s.bodies...)
}

const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	flagEndStream     = 0x1
	flagAck           = 0x1
	flagEndHeaders    = 0x4
	flagPadded        = 0x8
	errProtocol       = 0x1
	errInternal       = 0x2
	errRefusedStream  = 0x7
	errCancel         = 0x8
)

func writeFrame(w io.Writer, typ, flags byte, stream uint32, payload []byte) error {
	var h [9]byte
	h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	h[3], h[4] = typ, flags
	binary.BigEndian.PutUint32(h[5:], stream&0x7fffffff)
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

func (s *h2Server) conn(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	preface := make([]byte, 24)
	if _, err := io.ReadFull(r, preface); err != nil {
		return
	}
	if writeFrame(c, frameSettings, 0, 0, nil) != nil {
		return
	}
	bodies := map[uint32]*bytes.Buffer{}
	for {
		var h [9]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return
		}
		length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		typ, flags := h[3], h[4]
		stream := binary.BigEndian.Uint32(h[5:]) & 0x7fffffff
		payload := make([]byte, length)
		if _, err := io.ReadFull(r, payload); err != nil {
			return
		}
		switch typ {
		case frameSettings:
			if flags&flagAck == 0 {
				_ = writeFrame(c, frameSettings, flagAck, 0, nil)
			}
		case framePing:
			if flags&flagAck == 0 {
				_ = writeFrame(c, framePing, flagAck, 0, payload)
			}
		case frameHeaders:
			bodies[stream] = new(bytes.Buffer)
		case frameData:
			if flags&flagPadded != 0 && len(payload) > 0 {
				pad := int(payload[0])
				payload = payload[1 : len(payload)-pad]
			}
			if b := bodies[stream]; b != nil {
				b.Write(payload)
			}
			if n := uint32(length); n > 0 { // give the window back
				var inc [4]byte
				binary.BigEndian.PutUint32(inc[:], n)
				_ = writeFrame(c, frameWindowUpdate, 0, 0, inc[:])
				_ = writeFrame(c, frameWindowUpdate, 0, stream, inc[:])
			}
		}
		if (typ == frameHeaders || typ == frameData) && flags&flagEndStream != 0 {
			if !s.respond(c, stream, bodies[stream]) {
				return
			}
			delete(bodies, stream)
		}
	}
}

// respond answers one complete request; false closes the connection.
func (s *h2Server) respond(c net.Conn, stream uint32, body *bytes.Buffer) bool {
	s.mu.Lock()
	s.requests++
	n := s.requests
	if body == nil {
		body = new(bytes.Buffer)
	}
	s.bodies = append(s.bodies, sha256.Sum256(body.Bytes()))
	s.mu.Unlock()
	reset := func(errCode uint32) bool {
		var code [4]byte
		binary.BigEndian.PutUint32(code[:], errCode)
		return writeFrame(c, frameRSTStream, 0, stream, code[:]) == nil
	}
	switch s.decide(n) {
	case h2Refuse:
		return reset(errRefusedStream)
	case h2ResetProtocol:
		return reset(errProtocol)
	case h2ResetInternal:
		return reset(errInternal)
	case h2ResetCancel:
		return reset(errCancel)
	case h2GoAway, h2GoAwayError:
		var p [8]byte
		if stream > 2 {
			binary.BigEndian.PutUint32(p[:4], stream-2) // this stream was not processed
		}
		if s.decide(n) == h2GoAwayError {
			binary.BigEndian.PutUint32(p[4:], 0xb) // ENHANCE_YOUR_CALM
		}
		_ = writeFrame(c, frameGoAway, 0, 0, p[:])
		return false
	case h2Status503:
		return writeFrame(c, frameHeaders, flagEndHeaders|flagEndStream, stream, status(503)) == nil
	}
	return writeFrame(c, frameHeaders, flagEndHeaders|flagEndStream, stream, status(200)) == nil
}

// status encodes ":status: code" in HPACK: a literal without indexing whose
// name is entry 8 of the static table.
func status(code int) []byte {
	v := strconv.Itoa(code)
	return append([]byte{0x08, byte(len(v))}, v...)
}

// firstThen returns a decide function that answers the first n requests
// with a and the rest with 200.
func firstThen(n int, a h2Action) func(int) h2Action {
	return func(i int) h2Action {
		if i <= n {
			return a
		}
		return h2Status200
	}
}

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
			tr.base = srv.client
			body := &closeTracker{Reader: bytes.NewReader(payload)}
			req := mustRequest(t, tt.method, srv.url, body) // no GetBody
			if tt.header != "" {
				req.Header.Set(tt.header, "k-1")
			}
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			readAll(t, resp)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "HTTP/2.0", resp.Proto)
			requests, _, bodies := srv.stats()
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
	for _, action := range []h2Action{h2ResetProtocol, h2ResetInternal, h2ResetCancel} {
		for _, bare := range []bool{true, false} {
			name := map[h2Action]string{h2ResetProtocol: "PROTOCOL_ERROR", h2ResetInternal: "INTERNAL_ERROR", h2ResetCancel: "CANCEL"}[action]
			if bare {
				name += " bare net/http"
			}
			t.Run(name, func(t *testing.T) {
				srv := newH2Server(t, firstThen(1, action))
				var rt http.RoundTripper = srv.client
				if !bare {
					tr, _ := newTestTransport(t)
					tr.base = srv.client
					rt = tr
				}
				body := &closeTracker{Reader: bytes.NewReader(payload)}
				req := mustRequest(t, http.MethodPost, srv.url, onlyReader{body})
				req.Body = body
				resp, err := rt.RoundTrip(req)
				if err == nil {
					readAll(t, resp)
				}
				requests, _, _ := srv.stats()
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
			tr.base = srv.client
			body := &closeTracker{Reader: bytes.NewReader(payload)}
			req := mustRequest(t, http.MethodPost, srv.url, onlyReader{body})
			req.Body = body // no GetBody
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			readAll(t, resp)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			requests, _, bodies := srv.stats()
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
		tr.base = srv.client
		body := &closeTracker{Reader: bytes.NewReader(payload)}
		req := mustRequest(t, http.MethodPost, srv.url, onlyReader{body})
		req.Body = body
		_, err := tr.RoundTrip(req)
		var rerr *Error
		require.ErrorAs(t, err, &rerr)
		assert.Equal(t, ReasonBody, rerr.Reason)
		requests, _, _ := srv.stats()
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
		tr.base = srv.client
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, srv.url, nil))
		require.NoError(t, err)
		readAll(t, resp)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		requests, _, _ := srv.stats()
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
	tr.base = srv.client
	ctx, cancel := context.WithTimeout(context.Background(), 900*time.Millisecond)
	defer cancel()
	body := &closeTracker{Reader: strings.NewReader("payload")}
	req := mustRequest(t, http.MethodPut, srv.url, onlyReader{body}).WithContext(ctx)
	req.Body = body
	_, err := tr.RoundTrip(req)
	require.Error(t, err)
	requests, _, _ := srv.stats()
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
	tr.base = srv.client
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	_, err := tr.RoundTrip(mustRequest(t, http.MethodGet, srv.url, nil).WithContext(ctx))
	require.Error(t, err)
	requests, _, _ := srv.stats()
	t.Logf("a request refused every time reached the server %d times: %v", requests, err)
	assert.LessOrEqual(t, requests, 5, "net/http's own retries, not multiplied by ours")
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, 1, rerr.Attempts, "a refused stream that net/http gave up on is not retried again")

	// And 503 over HTTP/2 is retried by retryhttp exactly as over HTTP/1.
	busy := newH2Server(t, firstThen(2, h2Status503))
	tr2, _ := newTestTransport(t)
	tr2.base = busy.client
	resp, err := tr2.RoundTrip(mustRequest(t, http.MethodGet, busy.url, nil))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	requests, conns, _ := busy.stats()
	assert.Equal(t, 3, requests)
	assert.Equal(t, 1, conns, "all three attempts on one HTTP/2 connection")
}
