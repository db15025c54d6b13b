package attempt_test

import (
	"sync"
	"testing"

	"github.com/retryhttp/retryhttp/internal/rawhttp"
)

// h2Srv is internal/rawhttp's raw HTTP/2 server (TLS, h2 by ALPN), driven
// by what these tests say of each request at each phase: it can refuse
// streams, send GOAWAY below or at a stream, and reset with any code, on a
// request's HEADERS or once it is complete, and it keeps the hash of every
// complete request's body.
type h2Srv struct {
	*rawhttp.H2Server
	url    string
	decide func(n int, ph h2Phase) h2Act

	mu    sync.Mutex
	acted map[int]h2Act // what the server did with request n
}

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

// newH2Srv starts a server that asks decide, for request n (1-based, in
// the order their HEADERS arrive), what to do on its HEADERS and, if
// nothing then, once it is complete. after, when given, is called once the
// server acted on request n.
func newH2Srv(t *testing.T, decide func(n int, ph h2Phase) h2Act, after ...func(n int, a h2Act)) *h2Srv {
	t.Helper()
	s := &h2Srv{decide: decide, acted: map[int]h2Act{}}
	var onActed []func(int)
	if len(after) > 0 {
		onActed = append(onActed, func(n int) {
			s.mu.Lock()
			a := s.acted[n]
			s.mu.Unlock()
			after[0](n, a)
		})
	}
	s.H2Server = rawhttp.NewH2Server(t, s.action, onActed...)
	s.url = s.URL
	return s
}

// action says, when request n's HEADERS arrive, what the server does and
// when.
func (s *h2Srv) action(n int) rawhttp.H2Action {
	a, early := s.decide(n, phaseHeaders), true
	if a == actNone {
		a, early = s.decide(n, phaseEnd), false
	}
	s.mu.Lock()
	s.acted[n] = a
	s.mu.Unlock()
	below := func(stream uint32) uint32 {
		if stream > 2 {
			return stream - 2
		}
		return 0
	}
	r := rawhttp.H2Action{Early: early}
	switch a {
	case actRefuse:
		r.Kind, r.Code = rawhttp.H2Reset, rawhttp.CodeRefusedStream
	case actProtocol:
		r.Kind, r.Code = rawhttp.H2Reset, rawhttp.CodeProtocol
	case actInternal:
		r.Kind, r.Code = rawhttp.H2Reset, rawhttp.CodeInternal
	case actGoAwayBelow:
		r.Kind, r.LastStream = rawhttp.H2GoAway, below
	case actGoAwayAt:
		r.Kind, r.LastStream = rawhttp.H2GoAway, func(stream uint32) uint32 { return stream }
	case actGoAwayBelowErr:
		r.Kind, r.Code, r.LastStream = rawhttp.H2GoAway, rawhttp.CodeProtocol, below
	case actHang:
		r.Kind = rawhttp.H2Silent
	default:
		r.Kind, r.Status = rawhttp.H2Respond, 200
	}
	return r
}

// stats returns the requests whose HEADERS arrived, those received whole,
// and the hash of each of those, in order.
func (s *h2Srv) stats() (heads, done int, bodies [][32]byte) {
	heads, done, _ = s.Stats()
	return heads, done, s.Bodies()
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
