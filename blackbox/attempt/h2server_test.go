package attempt_test

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
	"sync"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/require"
)

// h2Srv is a raw HTTP/2 server (TLS, h2 by ALPN) written with frames, so
// that it can refuse streams, send GOAWAY below or at a stream, and reset
// with any code, on a request's HEADERS or once it is complete. Unlike
// testkit's, it keeps the hash of every complete request's body.

type h2Act int

const (
	actNone           h2Act = iota // go on (at "end": answer 200)
	act200                         // answer 200
	actRefuse                      // RST_STREAM REFUSED_STREAM
	actProtocol                    // RST_STREAM PROTOCOL_ERROR
	actInternal                    // RST_STREAM INTERNAL_ERROR
	actGoAwayBelow                 // GOAWAY last=stream-2 (not processed), close
	actGoAwayAt                    // GOAWAY last=stream (processed), then close without answering
	actGoAwayBelowErr              // GOAWAY last=stream-2 PROTOCOL_ERROR, close
	actHang                        // never answer
)

type h2Phase int

const (
	phaseHeaders h2Phase = iota // the request's HEADERS arrived, body not complete
	phaseEnd                    // the request is complete
)

type h2Srv struct {
	url    string
	client *http.Transport
	decide func(n int, ph h2Phase) h2Act
	// after, when set, is called once the server acted on request n.
	after func(n int, a h2Act)

	mu     sync.Mutex
	heads  int        // requests whose HEADERS arrived
	done   int        // requests received whole, and not reset before
	bodies [][32]byte // the hash of each of those, in order
	open   map[net.Conn]bool
	wg     sync.WaitGroup
}

func newH2Srv(t *testing.T, decide func(n int, ph h2Phase) h2Act, after ...func(n int, a h2Act)) *h2Srv {
	t.Helper()
	s := &h2Srv{decide: decide, open: map[net.Conn]bool{}}
	if len(after) > 0 {
		s.after = after[0]
	}
	cert := httptest.NewUnstartedServer(nil)
	cert.EnableHTTP2 = true
	cert.StartTLS()
	client := cert.Client().Transport.(*http.Transport).Clone()
	cert.Close()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: cert.TLS.Certificates, NextProtos: []string{"h2"}})
	require.NoError(t, err)
	s.url, s.client = "https://"+ln.Addr().String(), client
	t.Cleanup(func() {
		ln.Close()
		client.CloseIdleConnections()
		s.mu.Lock()
		for c := range s.open { // a stream left hanging keeps its connection
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
			s.mu.Lock()
			s.open[c] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c)
				s.mu.Lock()
				delete(s.open, c)
				s.mu.Unlock()
			}()
		}
	}()
	return s
}

func (s *h2Srv) stats() (heads, done int, bodies [][32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.heads, s.done, append([][32]byte(nil), s.bodies...)
}

func (s *h2Srv) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var wmu sync.Mutex
	write := func(typ, flags byte, stream uint32, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return testkit.WriteFrame(c, typ, flags, stream, p)
	}
	r := bufio.NewReader(c)
	if _, err := io.ReadFull(r, make([]byte, 24)); err != nil { // the preface
		return
	}
	if write(testkit.FrameSettings, 0, 0, nil) != nil {
		return
	}
	bodies := map[uint32]*bytes.Buffer{}
	nums := map[uint32]int{}
	dead := map[uint32]bool{}
	u32 := func(v ...uint32) []byte {
		var p []byte
		for _, x := range v {
			p = binary.BigEndian.AppendUint32(p, x)
		}
		return p
	}
	// act does a on stream; false closes the connection.
	act := func(stream uint32, a h2Act) bool {
		rst := func(code uint32) bool {
			dead[stream] = true
			return write(testkit.FrameRSTStream, 0, stream, u32(code)) == nil
		}
		goaway := func(last, code uint32) bool {
			_ = write(testkit.FrameGoAway, 0, 0, u32(last, code))
			time.Sleep(20 * time.Millisecond) // let the client read it before the close
			return false
		}
		below := uint32(0)
		if stream > 2 {
			below = stream - 2
		}
		switch a {
		case act200:
			dead[stream] = true
			return write(testkit.FrameHeaders, testkit.FlagEndHeaders|testkit.FlagEndStream, stream, testkit.H2Status(200)) == nil
		case actRefuse:
			return rst(0x7)
		case actProtocol:
			return rst(0x1)
		case actInternal:
			return rst(0x2)
		case actGoAwayBelow:
			return goaway(below, 0)
		case actGoAwayBelowErr:
			return goaway(below, 1)
		case actGoAwayAt:
			return goaway(stream, 0)
		case actHang:
			dead[stream] = true
		}
		return true
	}
	acted := func(stream uint32, a h2Act) bool {
		ok := act(stream, a)
		if s.after != nil {
			s.after(nums[stream], a)
		}
		return ok
	}
	for {
		var h [9]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return
		}
		length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		typ, flags := h[3], h[4]
		stream := binary.BigEndian.Uint32(h[5:]) & 0x7fffffff
		p := make([]byte, length)
		if _, err := io.ReadFull(r, p); err != nil {
			return
		}
		switch typ {
		case testkit.FrameSettings:
			if flags&testkit.FlagAck == 0 {
				_ = write(testkit.FrameSettings, testkit.FlagAck, 0, nil)
			}
		case testkit.FramePing:
			if flags&testkit.FlagAck == 0 {
				_ = write(testkit.FramePing, testkit.FlagAck, 0, p)
			}
		case testkit.FrameHeaders:
			s.mu.Lock()
			s.heads++
			n := s.heads
			s.mu.Unlock()
			nums[stream] = n
			bodies[stream] = new(bytes.Buffer)
			if flags&testkit.FlagEndStream == 0 {
				if a := s.decide(n, phaseHeaders); a != actNone && !acted(stream, a) {
					return
				}
			}
		case testkit.FrameData:
			if flags&testkit.FlagPadded != 0 && len(p) > 0 {
				p = p[1 : len(p)-int(p[0])]
			}
			if b := bodies[stream]; b != nil {
				b.Write(p)
			}
			if length > 0 { // give the window back at once
				_ = write(testkit.FrameWindowUpdate, 0, 0, u32(uint32(length)))
				if !dead[stream] {
					_ = write(testkit.FrameWindowUpdate, 0, stream, u32(uint32(length)))
				}
			}
		}
		if (typ == testkit.FrameHeaders || typ == testkit.FrameData) && flags&testkit.FlagEndStream != 0 && !dead[stream] {
			s.mu.Lock()
			s.done++
			s.bodies = append(s.bodies, sha256.Sum256(bodies[stream].Bytes()))
			s.mu.Unlock()
			a := s.decide(nums[stream], phaseEnd)
			if a == actNone {
				a = act200
			}
			if !acted(stream, a) {
				return
			}
		}
	}
}

// firstN answers requests 1..n with a at phase ph, the rest normally.
func firstN(n int, ph h2Phase, a h2Act) func(int, h2Phase) h2Act {
	return func(i int, p h2Phase) h2Act {
		if i <= n && p == ph {
			return a
		}
		return actNone
	}
}
