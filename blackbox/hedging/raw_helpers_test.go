package hedging_test

// Shared helpers (copied from blackbox/helpers_test.go) for the hostile review of hedging (issue 13): loopback
// servers that misbehave on demand (raw HTTP/1 over TCP, raw HTTP/2 frames
// over TLS), bodies that count their Close calls, and misbehaving bases.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/require"
)

// fast is a policy that retries quickly, so tests need no fake clock.
var fast = retryhttp.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}

// newRT returns a Transport over a fresh pooled transport with fast retries
// and no budget, unless opts say otherwise.
func newRT(t *testing.T, base http.RoundTripper, opts ...retryhttp.Option) *retryhttp.Transport {
	t.Helper()
	if base == nil {
		b := cleanhttp.DefaultPooledTransport()
		t.Cleanup(b.CloseIdleConnections)
		base = b
	}
	all := append([]retryhttp.Option{retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil)}, opts...)
	return retryhttp.New(base, all...)
}

// countingBody is a request body without GetBody that counts Close calls
// (and any Read after Close).
type countingBody struct {
	r          io.Reader
	closes     atomic.Int32
	readsAfter atomic.Int32
}

func newCountingBody(b []byte) *countingBody { return &countingBody{r: bytes.NewReader(b)} }

func (c *countingBody) Read(p []byte) (int, error) {
	if c.closes.Load() > 0 {
		c.readsAfter.Add(1)
	}
	return c.r.Read(p)
}

func (c *countingBody) Close() error {
	c.closes.Add(1)
	return nil
}

// requireClosedOnce waits up to a second for the body to be closed, then
// checks that it stays closed exactly once.
func requireClosedOnce(t *testing.T, c *countingBody) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for c.closes.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, int32(1), c.closes.Load(), "the caller's body must be closed exactly once")
}

// req builds a request whose body (if any) has no GetBody.
func newReq(t *testing.T, method, url string, body io.ReadCloser) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	if body != nil {
		r.Body = body
	}
	return r
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// resp makes a response for a fake base.
func resp(code int, body string) *http.Response {
	return &http.Response{StatusCode: code, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
}

// ---------------------------------------------------------------------------
// Raw HTTP/1 server.

// h1Server accepts TCP connections and hands each request (request line and
// headers read, body not read) to handle, which does what it wants with the
// connection. It counts the requests whose head reached it.
type h1Server struct {
	ln       net.Listener
	url      string
	requests atomic.Int32
	conns    atomic.Int32
	handle   func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) (keepAlive bool)
	wg       sync.WaitGroup
	mu       sync.Mutex
	open     map[net.Conn]bool
}

func newH1Server(t *testing.T, handle func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) bool) *h1Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &h1Server{ln: ln, url: "http://" + ln.Addr().String() + "/", handle: handle, open: map[net.Conn]bool{}}
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			s.mu.Lock()
			s.open[c] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					c.Close()
					s.mu.Lock()
					delete(s.open, c)
					s.mu.Unlock()
				}()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					n := int(s.requests.Add(1))
					if !s.handle(n, c.(*net.TCPConn), br, r) {
						return
					}
				}
			}()
		}
	}()
	return s
}

// reset closes c with an RST.
func reset(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

func writeResponse(c net.Conn, code int, headers string, body string) {
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Length: %d\r\n%s\r\n%s", code, http.StatusText(code), len(body), headers, body)
}

// ---------------------------------------------------------------------------
// Raw HTTP/2 server, after /work/main/http2_test.go, generalized: it acts
// when a request's HEADERS arrive (before its body) or when it is complete,
// and counts both.

type h2Kind int

const (
	h2Respond          h2Kind = iota // HEADERS with :status, END_STREAM
	h2Reset                          // RST_STREAM with code
	h2GoAway                         // GOAWAY with lastStream(stream), code; then close
	h2GoAwayKeep                     // GOAWAY with lastStream(stream), code; keep the connection open, never answer
	h2Close                          // close the TCP connection, no frame
	h2RST                            // close the TCP connection with an RST
	h2Silent                         // do nothing (let the client time out)
	h2RespondThenReset               // HEADERS :status (no END_STREAM), then RST_STREAM code
)

type h2Action struct {
	kind       h2Kind
	early      bool // act on HEADERS, before the body
	status     int
	code       uint32
	lastStream func(stream uint32) uint32
}

type h2Server struct {
	ln     net.Listener // guarded by mu
	cfg    *tls.Config
	url    string
	client *http.Transport
	decide func(n int) h2Action
	after  func(n int) // called after the server acted on request n (optional)

	mu       sync.Mutex
	heads    int // HEADERS frames (requests that reached the server)
	complete int // requests received whole
	conns    int
	open     map[net.Conn]bool
	wg       sync.WaitGroup
}

func newH2Server(t *testing.T, decide func(n int) h2Action, after ...func(n int)) *h2Server {
	t.Helper()
	cert := httptest.NewUnstartedServer(nil)
	cert.EnableHTTP2 = true
	cert.StartTLS()
	client := cert.Client().Transport.(*http.Transport).Clone()
	cert.Close()
	cfg := &tls.Config{Certificates: cert.TLS.Certificates, NextProtos: []string{"h2"}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	s := &h2Server{ln: ln, cfg: cfg, url: "https://" + ln.Addr().String() + "/", client: client, decide: decide}
	if len(after) > 0 {
		s.after = after[0]
	}
	s.open = map[net.Conn]bool{}
	t.Cleanup(func() {
		s.mu.Lock()
		s.ln.Close()
		s.mu.Unlock()
		client.CloseIdleConnections()
		s.mu.Lock()
		for c := range s.open { // net/http may keep a connection whose stream the server reset
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	s.wg.Add(1)
	go s.serve(ln)
	return s
}

// down closes the listener (connections already open stay), so that new
// dials are refused; up listens again on the same address.
func (s *h2Server) down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ln.Close()
}

func (s *h2Server) up() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ln, err := tls.Listen("tcp", s.ln.Addr().String(), s.cfg)
	if err != nil {
		return err
	}
	s.ln = ln
	s.wg.Add(1)
	go s.serve(ln)
	return nil
}

func (s *h2Server) serve(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns++
		s.open[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.conn(c)
			s.mu.Lock()
			delete(s.open, c)
			s.mu.Unlock()
		}()
	}
}

func (s *h2Server) stats() (heads, complete, conns int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.heads, s.complete, s.conns
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
)

func writeFrame(w io.Writer, typ, flags byte, stream uint32, payload []byte) error {
	var h [9]byte
	h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	h[3], h[4] = typ, flags
	binary.BigEndian.PutUint32(h[5:], stream&0x7fffffff)
	if _, err := w.Write(append(h[:], payload...)); err != nil {
		return err
	}
	return nil
}

func h2Status(code int) []byte {
	v := strconv.Itoa(code)
	return append([]byte{0x08, byte(len(v))}, v...)
}

func (s *h2Server) conn(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	r := bufio.NewReader(c)
	preface := make([]byte, 24)
	if _, err := io.ReadFull(r, preface); err != nil {
		return
	}
	var wmu sync.Mutex
	write := func(typ, flags byte, stream uint32, payload []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return writeFrame(c, typ, flags, stream, payload)
	}
	if write(frameSettings, 0, 0, nil) != nil {
		return
	}
	actions := map[uint32]h2Action{}
	done := map[uint32]bool{} // streams already answered early
	nums := map[uint32]int{}  // the request number of each stream
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
				_ = write(frameSettings, flagAck, 0, nil)
			}
		case framePing:
			if flags&flagAck == 0 {
				_ = write(framePing, flagAck, 0, payload)
			}
		case frameHeaders:
			s.mu.Lock()
			s.heads++
			n := s.heads
			s.mu.Unlock()
			a := s.decide(n)
			actions[stream] = a
			nums[stream] = n
			if a.early {
				done[stream] = true
				ok := s.act(write, c, stream, a)
				if s.after != nil {
					s.after(n)
				}
				if !ok {
					return
				}
			}
		case frameData:
			if n := uint32(length); n > 0 {
				var inc [4]byte
				binary.BigEndian.PutUint32(inc[:], n)
				_ = write(frameWindowUpdate, 0, 0, inc[:])
				if !done[stream] {
					_ = write(frameWindowUpdate, 0, stream, inc[:])
				}
			}
		}
		if (typ == frameHeaders || typ == frameData) && flags&flagEndStream != 0 {
			s.mu.Lock()
			s.complete++
			s.mu.Unlock()
			if !done[stream] {
				done[stream] = true
				ok := s.act(write, c, stream, actions[stream])
				if s.after != nil {
					s.after(nums[stream])
				}
				if !ok {
					return
				}
			}
		}
	}
}

// act answers one stream; false closes the connection.
func (s *h2Server) act(write func(typ, flags byte, stream uint32, payload []byte) error, c net.Conn, stream uint32, a h2Action) bool {
	code := func(v uint32) []byte {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], v)
		return b[:]
	}
	switch a.kind {
	case h2Reset:
		return write(frameRSTStream, 0, stream, code(a.code)) == nil
	case h2RespondThenReset:
		_ = write(frameHeaders, flagEndHeaders, stream, h2Status(a.status))
		return write(frameRSTStream, 0, stream, code(a.code)) == nil
	case h2GoAway, h2GoAwayKeep:
		last := uint32(0)
		if a.lastStream != nil {
			last = a.lastStream(stream)
		}
		p := append(code(last), code(a.code)...)
		_ = write(frameGoAway, 0, 0, p)
		if a.kind == h2GoAwayKeep {
			return true
		}
		time.Sleep(10 * time.Millisecond)
		return false
	case h2Close:
		return false
	case h2RST:
		if tc, ok := c.(*tls.Conn); ok {
			if nc, ok := tc.NetConn().(*net.TCPConn); ok {
				_ = nc.SetLinger(0)
			}
		}
		return false
	case h2Silent:
		return true
	}
	st := a.status
	if st == 0 {
		st = 200
	}
	return write(frameHeaders, flagEndHeaders|flagEndStream, stream, h2Status(st)) == nil
}

func firstThen(n int, a h2Action) func(int) h2Action {
	return func(i int) h2Action {
		if i <= n {
			return a
		}
		return h2Action{kind: h2Respond, status: 200}
	}
}

// ---------------------------------------------------------------------------
// Goroutines.

// settleGoroutines waits up to d for the goroutine count to fall to at most
// want, and returns the last count.
func settleGoroutines(want int, d time.Duration) int {
	deadline := time.Now().Add(d)
	n := runtime.NumGoroutine()
	for n > want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		runtime.GC()
		n = runtime.NumGoroutine()
	}
	return n
}

func goroutineDump() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
