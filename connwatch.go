package retryhttp

import (
	"context"
	"net/http"
	"net/http/httptrace"
	"sync"
)

// connWatch records, through httptrace, the connections an attempt asked
// for and those assigned to it.
//
// For a request that is not idempotent, it is evidence: an error that says
// "the connection could not be made" means the server never saw the request
// only if no connection was assigned before (net/http's HTTP/2 client
// resends a request on its own after a PROTOCOL_ERROR reset, and if that
// resend finds the server gone, its dial error is what comes back); and an
// attempt timeout means the same only when the base said it was waiting for
// a connection and never got one. A base that does not report connections
// (not net/http) gives no such evidence, and its request may have been
// sent.
//
// For a Transport that counts, it counts net/http's transparent resends
// (see countResends): every connection assigned to the attempt's host after
// the first carried the request again. Connections for other hosts, which a
// base may ask for with the request's context (to fetch a token, say), are
// not the attempt's: the attempt's host is the one of the first connection
// asked for (its proxy's, through a proxy).
type connWatch struct {
	mu     sync.Mutex
	asked  bool   // a connection was asked for
	target string // the host:port of the first one asked for
	mine   bool   // the last connection asked for was for target
	conns  int    // connections assigned for target: 1 for each time the base sent the request
	trace  httptrace.ClientTrace
}

func (w *connWatch) getConn(hostPort string) {
	w.mu.Lock()
	if !w.asked {
		w.asked, w.target = true, hostPort
	}
	w.mine = hostPort == w.target
	w.mu.Unlock()
}

func (w *connWatch) gotConn(httptrace.GotConnInfo) {
	w.mu.Lock()
	if w.mine || !w.asked { // a base that reports connections without asking
		w.conns++
	}
	w.mu.Unlock()
}

// seen returns how many connections were assigned to the attempt, and
// whether the attempt asked for one and got none.
func (w *connWatch) seen() (conns int, unsent bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.conns, w.asked && w.conns == 0
}

var connWatches = sync.Pool{New: func() any { return newWatch() }}

func newWatch() *connWatch {
	w := new(connWatch)
	w.trace.GetConn = w.getConn
	w.trace.GotConn = w.gotConn
	return w
}

// watchKind says what an attempt's connWatch is for.
type watchKind uint8

const (
	watchNone     watchKind = iota
	watchCount              // counting net/http's resends: a pooled watch will do
	watchEvidence           // evidence that decides a resend: the attempt's own watch
)

// newConnWatch returns a watch for an attempt with ctx, from the pool
// (pooled is then true) only when it merely counts: a base may call a
// trace's hooks after RoundTrip returned (from work it left running with
// the request's context), and a pooled watch would then be another
// request's. Evidence that decides whether a request is sent again is
// never pooled, nor a watch that httptrace composes with a caller's trace.
func newConnWatch(ctx context.Context, kind watchKind) (w *connWatch, pooled bool) {
	if kind == watchEvidence || httptrace.ContextClientTrace(ctx) != nil {
		return newWatch(), false
	}
	w = connWatches.Get().(*connWatch)
	w.mu.Lock()
	w.asked, w.target, w.mine, w.conns = false, "", false, 0
	w.mu.Unlock()
	return w, true
}

// watchesConn reports whether the attempts of req need a connWatch for
// evidence: a request that is not idempotent, which net/http may resend on
// its own (it has no body, or a GetBody), or which an attempt timeout may
// cut off before or after its connection was made.
func watchesConn(req *http.Request, p *Policy) bool {
	return !idempotent(req) && (p.AttemptTimeout > 0 || !hasBody(req) || req.GetBody != nil)
}
