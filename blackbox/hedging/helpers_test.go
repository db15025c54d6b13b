package hedging_test

// Helpers of the hostile review of hedging: a loopback upstream (HTTP/1 or
// HTTP/2) that numbers the copies of each request and counts its
// connections, an observer that records every Attempt, and metric readers.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/require"
)

const idHeader = "X-Test-Id"

// attemptHeader carries AttemptFromContext of each copy to the server, set
// by numbered: over a cold HTTP/2 connection a hedge may reach the server
// before the first copy, so arrival order does not say which copy is which.
const attemptHeader = "X-Test-Attempt"

// numbered is a base that tells the server each copy's attempt number.
type numbered struct{ base http.RoundTripper }

func (n numbered) RoundTrip(r *http.Request) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	r2.Header.Set(attemptHeader, fmt.Sprint(retryhttp.AttemptFromContext(r.Context())))
	return n.base.RoundTrip(r2)
}

func (n numbered) CloseIdleConnections() {
	if ci, ok := n.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// upstream is a real loopback server. Every request carries idHeader; the
// handler gets k, the attempt number of this copy of that request (1 for
// the first copy, as AttemptFromContext says), or the arrival order when
// the base did not say it.
type upstream struct {
	srv      *httptest.Server
	url      string
	base     http.RoundTripper // a client transport for this server (TLS for HTTP/2)
	arrivals atomic.Int32

	mu      sync.Mutex
	perID   map[string]int
	states  map[net.Conn]http.ConnState
	total   int                       // connections ever accepted
	arrival map[copyKey]chan struct{} // closed when that copy has arrived

	handlersRunning atomic.Int32
}

type handler func(id string, k int, w http.ResponseWriter, r *http.Request)

func newUpstream(t testing.TB, h2 bool, h handler) *upstream {
	t.Helper()
	u := &upstream{perID: map[string]int{}, states: map[net.Conn]http.ConnState{}, arrival: map[copyKey]chan struct{}{}}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.handlersRunning.Add(1)
		defer u.handlersRunning.Add(-1)
		u.arrivals.Add(1)
		id := r.Header.Get(idHeader)
		u.mu.Lock()
		u.perID[id]++
		k := u.perID[id]
		u.mu.Unlock()
		if a := r.Header.Get(attemptHeader); a != "" {
			k, _ = atoi(a)
		}
		close(u.arrivalOf(id, k))
		h(id, k, w, r)
	}))
	u.srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		u.mu.Lock()
		defer u.mu.Unlock()
		switch s {
		case http.StateNew:
			u.total++
			u.states[c] = s
		case http.StateClosed, http.StateHijacked:
			delete(u.states, c)
		default:
			u.states[c] = s
		}
	}
	if h2 {
		u.srv.EnableHTTP2 = true
		u.srv.StartTLS()
		u.base = numbered{u.srv.Client().Transport}
		u.url = u.srv.URL + "/"
	} else {
		u.srv.Start()
		u.base = numbered{cleanhttp.DefaultPooledTransport()}
		u.url = u.srv.URL + "/"
	}
	t.Cleanup(func() {
		if ci, ok := u.base.(interface{ CloseIdleConnections() }); ok {
			ci.CloseIdleConnections()
		}
		u.srv.CloseClientConnections()
		u.srv.Close()
	})
	return u
}

type copyKey struct {
	id string
	k  int
}

func (u *upstream) arrivalOf(id string, k int) chan struct{} {
	u.mu.Lock()
	defer u.mu.Unlock()
	ch, ok := u.arrival[copyKey{id, k}]
	if !ok {
		ch = make(chan struct{})
		u.arrival[copyKey{id, k}] = ch
	}
	return ch
}

// arrived is closed once copy k of request id has arrived: a handler waits
// for it to answer only after another copy is in, an order that no timer
// can upset.
func (u *upstream) arrived(id string, k int) <-chan struct{} { return u.arrivalOf(id, k) }

// until blocks until ch is closed, and reports false if the request's
// context ended first.
func until(r *http.Request, ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-r.Context().Done():
		return false
	}
}

// guarded is a caller's context whose deadline only keeps a broken
// Transport from hanging a test: far past anything the test waits for, so
// that an error saying the caller's deadline ended the request means the
// Transport did not end it as it should.
func guarded(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// processed is how long the Transport is given to act on an answer a base
// has just returned (in memory: microseconds of work) before a test's
// next step, when no event says that it has.
const processed = 250 * time.Millisecond

// copies returns how many copies of request id arrived.
func (u *upstream) copies(id string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.perID[id]
}

// conns returns the server's open connections and, among them, those
// serving a request (StateActive; a connection net/http dialed for a copy
// that was then canceled goes to the client's pool unused and stays
// StateNew on the server: that is not busy).
func (u *upstream) conns() (open, busy int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, s := range u.states {
		open++
		if s == http.StateActive {
			busy++
		}
	}
	return open, busy
}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// hang blocks until the request's context ends or d passes.
func hang(r *http.Request, d time.Duration) bool {
	select {
	case <-r.Context().Done():
		return true
	case <-time.After(d):
		return false
	}
}

var seq atomic.Int64

// get builds a GET with a fresh id.
func get(t testing.TB, ctx context.Context, url string) (*http.Request, string) {
	t.Helper()
	if ctx == nil {
		ctx = context.Background()
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	id := fmt.Sprint(seq.Add(1))
	r.Header.Set(idHeader, id)
	return r, id
}

// hedgeRT returns a Transport with fast retries, no budget and hedging h.
func hedgeRT(t testing.TB, base http.RoundTripper, h retryhttp.Hedging, opts ...retryhttp.Option) *retryhttp.Transport {
	t.Helper()
	all := append([]retryhttp.Option{retryhttp.WithPolicy(testkit.Fast), retryhttp.WithBudget(nil), retryhttp.WithHedging(h)}, opts...)
	return retryhttp.New(base, all...)
}

// ---------------------------------------------------------------------------
// Observer.

type seen struct {
	Number    int
	Hedge     bool
	Status    int
	Err       error
	Retry     bool
	Reason    string
	Goroutine bool // reported while RoundTrip was still running (set by the test)
	id        string
}

type recorder struct {
	mu  sync.Mutex
	all []seen
}

func (rec *recorder) observe(a retryhttp.Attempt) {
	s := seen{Number: a.Number, Hedge: a.Hedge, Err: a.Err, Retry: a.Retry, Reason: a.Reason}
	if a.Response != nil {
		s.Status = a.Response.StatusCode
	}
	if a.Request != nil {
		s.id = a.Request.Header.Get(idHeader)
	}
	rec.mu.Lock()
	rec.all = append(rec.all, s)
	rec.mu.Unlock()
}

func (rec *recorder) of(id string) []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []seen
	for _, s := range rec.all {
		if s.id == id {
			out = append(out, s)
		}
	}
	return out
}

func (rec *recorder) snapshot() []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]seen(nil), rec.all...)
}

func isLost(err error) bool { return errors.Is(err, retryhttp.ErrHedgeLost) }

// ---------------------------------------------------------------------------
// Metrics.

func newMetrics(t testing.TB) (*retryhttp.Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := retryhttp.NewMetrics(reg)
	require.NoError(t, err)
	return m, reg
}

// sum adds the values of every series of a family whose labels include want.
func sum(t testing.TB, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var total float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if l[k] != v {
					continue next
				}
			}
			total += value(m)
		}
	}
	return total
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// ---------------------------------------------------------------------------
// Bodies.

// trackedBody counts Close calls.
type trackedBody struct {
	io.Reader
	closes atomic.Int32
}

func (b *trackedBody) Close() error { b.closes.Add(1); return nil }

// checkGoroutines records the goroutine count now and, when the test ends
// (after every cleanup registered later: servers closed, transports'
// idle connections closed), fails if it is not back to it.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := testkit.SettleGoroutines(0, 300*time.Millisecond)
	t.Cleanup(func() {
		after := testkit.SettleGoroutines(before, 3*time.Second)
		if after > before {
			t.Errorf("goroutines: %d before, %d after\n%s", before, after, testkit.GoroutineDump())
		}
	})
}

// trickle answers 200 and writes a byte every 5 ms until the client goes
// away: a body that is still coming when the caller acts on it.
func trickle(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(200)
	for {
		if _, err := w.Write([]byte("x")); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}
