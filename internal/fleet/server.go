package fleet

import (
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

// Trigger is what the server does during the outage.
type Trigger int

const (
	Stall       Trigger = iota // serves nothing; requests queue (a long GC pause, a failover)
	Unavailable                // answers 503 at once, without work
	Drop                       // resets every connection at once, without work
)

var triggerNames = [...]string{Stall: "stall", Unavailable: "503", Drop: "drop"}

// String returns "stall", "503" or "drop", the names ParseTrigger takes.
func (t Trigger) String() string { return triggerNames[t] }

// ParseTrigger returns the Trigger named s.
func ParseTrigger(s string) (Trigger, bool) {
	for i, name := range triggerNames {
		if s == name {
			return Trigger(i), true
		}
	}
	return 0, false
}

// ShedAbove is how much queued work makes the server answer 429, with
// Config.Shed: a second's worth.
const ShedAbove = time.Second

// server is the one server every client sends to. It serves capacity
// requests a second, one at a time (service each), in the order they
// arrive. An attempt's client gives up on it after the attempt timeout,
// but the server does its work all the same: it cannot tell.
//
// Because the queue is FIFO and the work of a request is fixed, when an
// attempt arrives the server knows when it will be served: after the work
// queued before it. So the queue is not kept, only when its work ends
// (free), and each attempt costs one event: its answer, or its timeout.
type server struct {
	service  time.Duration
	free     time.Duration // when the work queued so far is done
	from, to time.Duration // the outage
	trigger  Trigger
	timeout  time.Duration // the clients' attempt timeout; 0: none
	shed     bool          // answer 429 above ShedAbove of queued work
}

// answer is what an attempt gets.
type answer int

const (
	answerOK       answer = iota
	answer503             // the outage, with Trigger Unavailable
	answerReset           // the outage, with Trigger Drop
	answer429             // shed, with Config.Shed
	answerTimedOut        // the attempt timed out on the client
)

func newServer(c *Config) server {
	return server{
		service: time.Duration(float64(time.Second) / c.Capacity),
		from:    c.OutageAt,
		to:      c.OutageAt + c.Outage,
		trigger: c.Trigger,
		timeout: c.AttemptTimeout,
		shed:    c.Shed,
	}
}

// attempt takes an attempt that arrives at at, and says when and how it
// is answered.
func (s *server) attempt(at time.Duration) (time.Duration, answer) {
	out := at >= s.from && at < s.to
	switch {
	case out && s.trigger == Unavailable:
		return at, answer503
	case out && s.trigger == Drop:
		return at, answerReset
	}
	ready := at // when the server could start on it, were nothing queued
	if s.trigger == Stall && at >= s.from && at < s.to {
		ready = s.to
	}
	if s.shed && s.free-ready > ShedAbove {
		return at, answer429 // more than ShedAbove of work queued
	}
	start := max(ready, s.free)
	if s.trigger == Stall && start >= s.from && start < s.to {
		start = s.to // the work queued before the stall ends in it
	}
	s.free = start + s.service
	if s.timeout > 0 && s.free-at > s.timeout {
		return at + s.timeout, answerTimedOut
	}
	return s.free, answerOK
}

// base is the clients' base RoundTripper: the network and the server,
// in virtual time.
type base struct{ w *world }

// tooMany is the header of a 429; a Transport only reads it.
var tooMany = http.Header{"Retry-After": {"1"}}

var statusLines = map[int]string{200: "200 OK", 429: "429 Too Many Requests", 503: "503 Service Unavailable"}

// errReset is the error of an attempt whose connection the server reset.
var errReset error = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}

// timedOut is the error of an attempt that timed out: a net.Error whose
// Timeout is true, which a Transport retries as a timeout (reason
// "timeout"). The simulation times attempts out itself, in virtual time,
// rather than with Policy.AttemptTimeout, whose timer runs in real time.
type timedOut struct{}

func (timedOut) Error() string   { return "fleet: attempt timed out" }
func (timedOut) Timeout() bool   { return true }
func (timedOut) Temporary() bool { return true }

var _ net.Error = timedOut{}

func (b base) RoundTrip(req *http.Request) (*http.Response, error) {
	w := b.w
	if w.done {
		return nil, errEnded
	}
	w.stats.attempt(w.now)
	at, a := w.srv.attempt(w.now)
	if at > w.now {
		w.block(at)
		if w.done {
			return nil, errEnded
		}
	}
	switch a {
	case answerTimedOut:
		w.stats.timeout(w.now)
		return nil, timedOut{}
	case answerReset:
		return nil, errReset
	}
	resp := &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Body: http.NoBody, Request: req}
	switch a {
	case answer503:
		resp.StatusCode = http.StatusServiceUnavailable
	case answer429:
		resp.StatusCode, resp.Header = http.StatusTooManyRequests, tooMany
	}
	resp.Status = statusLines[resp.StatusCode]
	return resp, nil
}
