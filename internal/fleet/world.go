package fleet

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/internal/seam"
)

// A world is one run of the simulation, for one policy: the clients, each
// with a real *retryhttp.Transport of its own, the server, and virtual
// time.
//
// The Transports' code blocks (in their wait between attempts, in the base
// that stands for the network and the server), so each request the
// clients make runs in a goroutine of its own, a proc; but only one
// goroutine ever runs at a time, which makes a run deterministic. The
// event loop (simulate) takes the earliest event from its queue, moves virtual
// time to it, and hands control to the proc the event is for (or starts a
// new request, for an arrival); the proc runs until it blocks again, in the
// Transport's wait or in the simulated base, having queued the event that
// will wake it, or until its request ends, and then hands control back.
// Every handover is a channel operation, so each one also orders the
// memory both sides touch: the world needs no locks.
type world struct {
	cfg     *Config
	epoch   time.Time     // virtual time zero, as the Transports' clock reads it
	now     time.Duration // virtual time since epoch
	events  eventQueue
	yield   chan struct{} // the running proc hands control back
	running *proc         // the proc that runs now, if any
	idle    []*proc       // procs waiting for a request to make
	procs   int           // procs started
	done    bool          // the run is over: blocked procs are being ended
	srv     server
	stats   *Series
	arrive  *rand.Rand // the arrivals and the clients that make them
	rate    float64    // arrivals per second, all clients together

	clients []*retryhttp.Transport
	options func() []retryhttp.Option // the policy's, for a client's Transport
	seed    uint64
	req     *http.Request // every request is this GET, which a Transport never changes

	progress *atomic.Int64 // virtual time done, for the progress line; may be nil
}

// proc is a goroutine that makes one request at a time through a client's
// Transport.
type proc struct {
	w      *world
	wake   chan struct{}
	client int // whose request it makes
}

// event is a proc to wake at a time, or (p nil) the next arrival.
type event struct {
	at  time.Duration
	seq uint64 // breaks ties in the order the events were queued, for determinism
	p   *proc
}

// errEnded is what a wait or an attempt returns to a proc still blocked
// when the run ends.
var errEnded = errors.New("fleet: the simulation ended")

func newWorld(c *Config, pol Policy, stats *Series, progress *atomic.Int64) *world {
	w := &world{
		cfg:      c,
		epoch:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		yield:    make(chan struct{}),
		stats:    stats,
		arrive:   rand.New(rand.NewPCG(c.Seed, 0)), // the same arrivals for every policy
		rate:     c.Offered(),
		clients:  make([]*retryhttp.Transport, c.Clients),
		options:  pol.Options,
		seed:     c.Seed,
		progress: progress,
	}
	w.srv = newServer(c)
	w.req, _ = http.NewRequestWithContext(context.Background(), http.MethodGet, "http://server.test/", nil)
	return w
}

// transport returns client i's Transport, made on its first request.
func (w *world) transport(i int) *retryhttp.Transport {
	if t := w.clients[i]; t != nil {
		return t
	}
	t := retryhttp.New(base{w}, w.options()...)
	seam.Set(t, seam.Clock{
		Now:   w.clock,
		Sleep: w.sleep,
		Rand:  rand.New(rand.NewPCG(w.seed, uint64(i)+1)),
	})
	w.clients[i] = t
	return t
}

// clock is the Transports' clock.
func (w *world) clock() time.Time { return w.epoch.Add(w.now) }

// sleep is the Transports' wait: the running proc blocks for d of virtual
// time.
func (w *world) sleep(ctx context.Context, d time.Duration) error {
	if w.done {
		return errEnded
	}
	if d > 0 {
		w.block(w.now + d)
		if w.done {
			return errEnded
		}
	}
	return ctx.Err()
}

// block queues an event for the running proc at time at, hands control
// back to the loop, and returns when the event wakes the proc.
func (w *world) block(at time.Duration) {
	p := w.running
	w.events.push(event{at: at, p: p})
	w.yield <- struct{}{}
	<-p.wake
}

// simulate runs the world to the end of the simulated time, then ends the
// requests still in flight and the procs.
func (w *world) simulate() {
	end := w.cfg.Duration
	w.events.push(event{at: w.nextArrival()})
	step := time.Second
	shown := time.Duration(0)
	for w.events.Len() > 0 {
		e := w.events.pop()
		if e.at >= end {
			w.events.push(e)
			break
		}
		w.now = e.at
		if w.progress != nil && w.now-shown >= step {
			shown = w.now
			w.progress.Store(int64(w.now))
		}
		if e.p == nil {
			w.start(w.arrive.IntN(w.cfg.Clients))
			w.events.push(event{at: w.nextArrival()})
		} else {
			w.resume(e.p)
		}
	}
	w.now = end
	w.done = true
	for w.events.Len() > 0 { // the requests in flight: each returns at once now
		if e := w.events.pop(); e.p != nil {
			w.resume(e.p)
		}
	}
	for _, p := range w.idle {
		close(p.wake)
	}
	w.idle = nil
	if w.progress != nil {
		w.progress.Store(int64(end))
	}
}

// nextArrival returns when the next request arrives: the clients together
// are a Poisson process of w.rate requests per second, each request made
// by a client drawn at random (so each client is a Poisson process too).
func (w *world) nextArrival() time.Duration {
	return w.now + time.Duration(w.arrive.ExpFloat64()/w.rate*float64(time.Second))
}

// start starts a request of client i, in an idle proc or a new one, and
// runs it until it blocks or ends.
func (w *world) start(i int) {
	var p *proc
	if n := len(w.idle); n > 0 {
		p = w.idle[n-1]
		w.idle = w.idle[:n-1]
	} else {
		p = &proc{w: w, wake: make(chan struct{})}
		w.procs++
		go p.loop()
	}
	p.client = i
	w.stats.started(w.now)
	w.resume(p)
}

// resume hands control to p until it blocks or ends its request.
func (w *world) resume(p *proc) {
	w.running = p
	p.wake <- struct{}{}
	<-w.yield
	w.running = nil
}

// loop makes the proc's requests, one each time it is woken to start one,
// until its channel is closed.
func (p *proc) loop() {
	w := p.w
	for range p.wake {
		resp, err := w.transport(p.client).RoundTrip(w.req)
		if !w.done {
			w.stats.ended(w.now, err == nil && resp.StatusCode == http.StatusOK)
		}
		w.idle = append(w.idle, p)
		w.yield <- struct{}{}
	}
}

// eventQueue is a min-heap of events by time, then by the order queued
// (container/heap would box each event in an interface).
type eventQueue struct {
	h   []event
	seq uint64
}

func (q *eventQueue) Len() int { return len(q.h) }

func (q *eventQueue) less(i, j int) bool {
	if q.h[i].at != q.h[j].at {
		return q.h[i].at < q.h[j].at
	}
	return q.h[i].seq < q.h[j].seq
}

func (q *eventQueue) push(e event) {
	q.seq++
	e.seq = q.seq
	q.h = append(q.h, e)
	for i := len(q.h) - 1; i > 0; {
		parent := (i - 1) / 2
		if !q.less(i, parent) {
			break
		}
		q.h[i], q.h[parent] = q.h[parent], q.h[i]
		i = parent
	}
}

func (q *eventQueue) pop() event {
	top := q.h[0]
	last := len(q.h) - 1
	q.h[0] = q.h[last]
	q.h = q.h[:last]
	for i := 0; ; {
		least, l, r := i, 2*i+1, 2*i+2
		if l < last && q.less(l, least) {
			least = l
		}
		if r < last && q.less(r, least) {
			least = r
		}
		if least == i {
			break
		}
		q.h[i], q.h[least] = q.h[least], q.h[i]
		i = least
	}
	return top
}
