// Package testkit holds what the black-box suites under blackbox/ share:
// loopback servers that misbehave on demand (raw HTTP/1 over TCP, raw
// HTTP/2 frames over TLS), bodies that count their Close calls, fake bases,
// and a goroutine settle for leak checks. Tests only.
package testkit

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
var Fast = retryhttp.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}

// newRT returns a Transport over a fresh pooled transport with fast retries
// and no budget, unless opts say otherwise.
func NewRT(t *testing.T, base http.RoundTripper, opts ...retryhttp.Option) *retryhttp.Transport {
	t.Helper()
	if base == nil {
		b := cleanhttp.DefaultPooledTransport()
		t.Cleanup(b.CloseIdleConnections)
		base = b
	}
	all := append([]retryhttp.Option{retryhttp.WithPolicy(Fast), retryhttp.WithBudget(nil)}, opts...)
	return retryhttp.New(base, all...)
}

// countingBody is a request body without GetBody that counts Close calls
// (and any Read after Close).
type CountingBody struct {
	r          io.Reader
	Closes     atomic.Int32
	readsAfter atomic.Int32
}

func NewCountingBody(b []byte) *CountingBody { return &CountingBody{r: bytes.NewReader(b)} }

func (c *CountingBody) Read(p []byte) (int, error) {
	if c.Closes.Load() > 0 {
		c.readsAfter.Add(1)
	}
	return c.r.Read(p)
}

func (c *CountingBody) Close() error {
	c.Closes.Add(1)
	return nil
}

// requireClosedOnce waits up to a second for the body to be closed, then
// checks that it stays closed exactly once.
func RequireClosedOnce(t *testing.T, c *CountingBody) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for c.Closes.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, int32(1), c.Closes.Load(), "the caller's body must be closed exactly once")
}

// req builds a request whose body (if any) has no GetBody.
func NewReq(t *testing.T, method, url string, body io.ReadCloser) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	if body != nil {
		r.Body = body
	}
	return r
}

type RoundTripFunc func(*http.Request) (*http.Response, error)

func (f RoundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// resp makes a response for a fake base.
func Resp(code int, body string) *http.Response {
	return &http.Response{StatusCode: code, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
}

// ---------------------------------------------------------------------------
// Raw HTTP/1 server.

// h1Server accepts TCP connections and hands each request (request line and
// headers read, body not read) to handle, which does what it wants with the
// connection. It counts the requests whose head reached it.
type H1Server struct {
	ln       net.Listener
	URL      string
	Requests atomic.Int32
	Conns    atomic.Int32
	handle   func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) (keepAlive bool)
	wg       sync.WaitGroup
	mu       sync.Mutex
	open     map[net.Conn]bool
}

func NewH1Server(t *testing.T, handle func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) bool) *H1Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &H1Server{ln: ln, URL: "http://" + ln.Addr().String() + "/", handle: handle, open: map[net.Conn]bool{}}
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
			s.Conns.Add(1)
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
					n := int(s.Requests.Add(1))
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
func Reset(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

func WriteResponse(c net.Conn, code int, headers string, body string) {
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Length: %d\r\n%s\r\n%s", code, http.StatusText(code), len(body), headers, body)
}

// ---------------------------------------------------------------------------
// Raw HTTP/2 server, after /work/main/http2_test.go, generalized: it acts
// when a request's HEADERS arrive (before its body) or when it is complete,
// and counts both.

type H2Kind int

const (
	H2Respond          H2Kind = iota // HEADERS with :status, END_STREAM
	H2Reset                          // RST_STREAM with code
	H2GoAway                         // GOAWAY with lastStream(stream), code; then close
	H2GoAwayKeep                     // GOAWAY with lastStream(stream), code; keep the connection open, never answer
	H2Close                          // close the TCP connection, no frame
	H2RST                            // close the TCP connection with an RST
	H2Silent                         // do nothing (let the client time out)
	H2RespondThenReset               // HEADERS :status (no END_STREAM), then RST_STREAM code
)

type H2Action struct {
	Kind       H2Kind
	Early      bool // act on HEADERS, before the body
	Status     int
	Code       uint32
	LastStream func(stream uint32) uint32
}

type H2Server struct {
	ln     net.Listener // guarded by mu
	cfg    *tls.Config
	URL    string
	Client *http.Transport
	decide func(n int) H2Action
	after  func(n int) // called after the server acted on request n (optional)

	mu       sync.Mutex
	heads    int // HEADERS frames (requests that reached the server)
	complete int // requests received whole
	Conns    int
	open     map[net.Conn]bool
	wg       sync.WaitGroup
}

func NewH2Server(t *testing.T, decide func(n int) H2Action, after ...func(n int)) *H2Server {
	t.Helper()
	cert := httptest.NewUnstartedServer(nil)
	cert.EnableHTTP2 = true
	cert.StartTLS()
	client := cert.Client().Transport.(*http.Transport).Clone()
	cert.Close()
	cfg := &tls.Config{Certificates: cert.TLS.Certificates, NextProtos: []string{"h2"}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	s := &H2Server{ln: ln, cfg: cfg, URL: "https://" + ln.Addr().String() + "/", Client: client, decide: decide}
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
func (s *H2Server) Down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ln.Close()
}

func (s *H2Server) Up() error {
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

func (s *H2Server) serve(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.Conns++
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

func (s *H2Server) Stats() (heads, complete, conns int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.heads, s.complete, s.Conns
}

const (
	FrameData         = 0x0
	FrameHeaders      = 0x1
	FrameRSTStream    = 0x3
	FrameSettings     = 0x4
	FramePing         = 0x6
	FrameGoAway       = 0x7
	FrameWindowUpdate = 0x8
	FlagEndStream     = 0x1
	FlagAck           = 0x1
	FlagEndHeaders    = 0x4
	FlagPadded        = 0x8
)

func WriteFrame(w io.Writer, typ, flags byte, stream uint32, payload []byte) error {
	var h [9]byte
	h[0], h[1], h[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	h[3], h[4] = typ, flags
	binary.BigEndian.PutUint32(h[5:], stream&0x7fffffff)
	if _, err := w.Write(append(h[:], payload...)); err != nil {
		return err
	}
	return nil
}

func H2Status(code int) []byte {
	v := strconv.Itoa(code)
	return append([]byte{0x08, byte(len(v))}, v...)
}

func (s *H2Server) conn(c net.Conn) {
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
		return WriteFrame(c, typ, flags, stream, payload)
	}
	if write(FrameSettings, 0, 0, nil) != nil {
		return
	}
	actions := map[uint32]H2Action{}
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
		case FrameSettings:
			if flags&FlagAck == 0 {
				_ = write(FrameSettings, FlagAck, 0, nil)
			}
		case FramePing:
			if flags&FlagAck == 0 {
				_ = write(FramePing, FlagAck, 0, payload)
			}
		case FrameHeaders:
			s.mu.Lock()
			s.heads++
			n := s.heads
			s.mu.Unlock()
			a := s.decide(n)
			actions[stream] = a
			nums[stream] = n
			if a.Early {
				done[stream] = true
				ok := s.act(write, c, stream, a)
				if s.after != nil {
					s.after(n)
				}
				if !ok {
					return
				}
			}
		case FrameData:
			if n := uint32(length); n > 0 {
				var inc [4]byte
				binary.BigEndian.PutUint32(inc[:], n)
				_ = write(FrameWindowUpdate, 0, 0, inc[:])
				if !done[stream] {
					_ = write(FrameWindowUpdate, 0, stream, inc[:])
				}
			}
		}
		if (typ == FrameHeaders || typ == FrameData) && flags&FlagEndStream != 0 {
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
func (s *H2Server) act(write func(typ, flags byte, stream uint32, payload []byte) error, c net.Conn, stream uint32, a H2Action) bool {
	code := func(v uint32) []byte {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], v)
		return b[:]
	}
	switch a.Kind {
	case H2Reset:
		return write(FrameRSTStream, 0, stream, code(a.Code)) == nil
	case H2RespondThenReset:
		_ = write(FrameHeaders, FlagEndHeaders, stream, H2Status(a.Status))
		return write(FrameRSTStream, 0, stream, code(a.Code)) == nil
	case H2GoAway, H2GoAwayKeep:
		last := uint32(0)
		if a.LastStream != nil {
			last = a.LastStream(stream)
		}
		p := append(code(last), code(a.Code)...)
		_ = write(FrameGoAway, 0, 0, p)
		if a.Kind == H2GoAwayKeep {
			return true
		}
		time.Sleep(10 * time.Millisecond)
		return false
	case H2Close:
		return false
	case H2RST:
		if tc, ok := c.(*tls.Conn); ok {
			if nc, ok := tc.NetConn().(*net.TCPConn); ok {
				_ = nc.SetLinger(0)
			}
		}
		return false
	case H2Silent:
		return true
	}
	st := a.Status
	if st == 0 {
		st = 200
	}
	return write(FrameHeaders, FlagEndHeaders|FlagEndStream, stream, H2Status(st)) == nil
}

func FirstThen(n int, a H2Action) func(int) H2Action {
	return func(i int) H2Action {
		if i <= n {
			return a
		}
		return H2Action{Kind: H2Respond, Status: 200}
	}
}

// ---------------------------------------------------------------------------
// Goroutines.

// settleGoroutines waits up to d for the goroutine count to fall to at most
// want, and returns the last count.
func SettleGoroutines(want int, d time.Duration) int {
	deadline := time.Now().Add(d)
	n := runtime.NumGoroutine()
	for n > want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		runtime.GC()
		n = runtime.NumGoroutine()
	}
	return n
}

func GoroutineDump() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
