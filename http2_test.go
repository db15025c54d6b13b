package retryhttp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
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
	h2Refuse // RST_STREAM REFUSED_STREAM
	h2GoAway // GOAWAY with last stream ID below this request's, then close
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
	errRefusedStream  = 0x7
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
	switch s.decide(n) {
	case h2Refuse:
		var code [4]byte
		binary.BigEndian.PutUint32(code[:], errRefusedStream)
		return writeFrame(c, frameRSTStream, 0, stream, code[:]) == nil
	case h2GoAway:
		var p [8]byte
		if stream > 2 {
			binary.BigEndian.PutUint32(p[:4], stream-2) // this stream was not processed
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

func TestHTTP2RefusedStreamsAndGoAwayAreRecovered(t *testing.T) {
	payload := bytes.Repeat([]byte("h2-body "), 2000)
	tests := []struct {
		name   string
		method string
		decide func(n int) h2Action
	}{
		{"GET refused twice", http.MethodGet, func(n int) h2Action { return map[bool]h2Action{true: h2Refuse, false: h2Status200}[n <= 2] }},
		{"POST refused: not processed, so safe to send again", http.MethodPost, func(n int) h2Action { return map[bool]h2Action{true: h2Refuse, false: h2Status200}[n <= 2] }},
		{"PUT after GOAWAY", http.MethodPut, func(n int) h2Action { return map[bool]h2Action{true: h2GoAway, false: h2Status200}[n == 1] }},
		{"POST after GOAWAY", http.MethodPost, func(n int) h2Action { return map[bool]h2Action{true: h2GoAway, false: h2Status200}[n == 1] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newH2Server(t, tt.decide)
			tr, clock := newTestTransport(t)
			tr.base = srv.client
			req := mustRequest(t, tt.method, srv.url, io.NopCloser(bytes.NewReader(payload))) // no GetBody
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			readAll(t, resp)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "HTTP/2.0", resp.Proto)
			requests, _, bodies := srv.stats()
			for i, h := range bodies {
				assert.Equal(t, sha256.Sum256(payload), h, "request %d carried the whole body", i+1)
			}
			t.Logf("%d requests reached the server; retryhttp waited %d times", requests, len(clock.recorded()))
		})
	}
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
	busy := newH2Server(t, func(n int) h2Action { return map[bool]h2Action{true: h2Status503, false: h2Status200}[n <= 2] })
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
