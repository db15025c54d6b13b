// Package rawhttp holds loopback servers for tests that misbehave on
// demand, written on the wire rather than with net/http's server: HTTP/1
// over TCP, where a handler gets the connection itself (to reset it, cut a
// response short, answer twice), and HTTP/2 over TLS in raw frames, which
// can refuse a stream, send GOAWAY below a request's stream, or reset with
// any code, as net/http's server never does on demand. The root package's
// tests and the black-box suites (through blackbox/internal/testkit) share
// it. Tests only.
package rawhttp

import (
	"bufio"
	"bytes"
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

	"github.com/stretchr/testify/require"
)

// ---------------------------------------------------------------------------
// Raw HTTP/2 server: it acts when a request's HEADERS arrive (before its
// body) or when it is complete, counts both, and keeps a hash of each
// complete request's body.

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
	heads    int        // HEADERS frames (requests that reached the server)
	complete int        // requests received whole
	bodies   [][32]byte // the SHA-256 of each complete request's body, in order
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

// Bodies returns the SHA-256 of each complete request's body, in the order
// they were completed.
func (s *H2Server) Bodies() [][32]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][32]byte(nil), s.bodies...)
}

// HTTP/2 error codes (RFC 9113 §7) for H2Action.Code.
const (
	CodeNoError         = 0x0
	CodeProtocol        = 0x1
	CodeInternal        = 0x2
	CodeRefusedStream   = 0x7
	CodeCancel          = 0x8
	CodeEnhanceYourCalm = 0xb
)

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
	bodies := map[uint32]*bytes.Buffer{}
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
			bodies[stream] = new(bytes.Buffer)
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
			data := payload
			if flags&FlagPadded != 0 && len(data) > 0 {
				pad := int(data[0])
				data = data[1:max(1, len(data)-pad)]
			}
			if b := bodies[stream]; b != nil {
				b.Write(data)
			}
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
			var body []byte
			if b := bodies[stream]; b != nil {
				body = b.Bytes()
			}
			delete(bodies, stream)
			s.mu.Lock()
			s.complete++
			s.bodies = append(s.bodies, sha256.Sum256(body))
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
