// Package pipeline_test is an outside review of the attempt pipeline
// (commit 003568b: call, send, decide, end, count, gate, hooks, hedging),
// through the exported API only: every end path of a RoundTrip against the
// RoundTripper contract, the Events a recorder sees against the Prometheus
// series, the Attempts observers see, hedging, host holds, the quota
// sampling, and bases that break the contract.
package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/require"
)

// fast retries quickly so that no test needs a fake clock.
var fast = retryhttp.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}

// body is a request body without GetBody that counts its Close calls.
type body struct {
	r      io.Reader
	closes atomic.Int32
}

func newBody(s string) *body { return &body{r: strings.NewReader(s)} }

func (b *body) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *body) Close() error {
	b.closes.Add(1)
	return nil
}

// requireClosedOnce checks that the body was closed exactly once. RoundTrip
// has returned when it is called: the contract says the body is closed by
// then, or by the base (which, for net/http, may do it a little later).
func requireClosedOnce(t *testing.T, b *body) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for b.closes.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, int32(1), b.closes.Load(), "the caller's body must be closed exactly once")
}

// respBody is a response body that counts its Close calls and can be
// read whole.
type respBody struct {
	r      *bytes.Reader
	closes atomic.Int32
	closed chan struct{}
	once   sync.Once
}

func newRespBody(s string) *respBody {
	return &respBody{r: bytes.NewReader([]byte(s)), closed: make(chan struct{})}
}

func (b *respBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *respBody) Close() error {
	b.closes.Add(1)
	b.once.Do(func() { close(b.closed) })
	return nil
}

// response makes a response to req with status code and body s.
func response(req *http.Request, code int, s string, kv ...string) (*http.Response, *respBody) {
	b := newRespBody(s)
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return &http.Response{StatusCode: code, Status: strconv.Itoa(code), Header: h, Body: b,
		Request: req, ProtoMajor: 1, ProtoMinor: 1, ContentLength: -1}, b
}

// baseFunc adapts a function to http.RoundTripper.
type baseFunc func(*http.Request) (*http.Response, error)

func (f baseFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// snapshot is what a request looked like before RoundTrip.
type snapshot struct {
	method, url, host string
	header            http.Header
	body              io.ReadCloser
	getBody           bool
	ctx               context.Context
	contentLength     int64
	urlPtr            any
}

func snap(r *http.Request) snapshot {
	return snapshot{method: r.Method, url: r.URL.String(), host: r.Host, header: r.Header.Clone(),
		body: r.Body, getBody: r.GetBody != nil, ctx: r.Context(), contentLength: r.ContentLength, urlPtr: r.URL}
}

func (s snapshot) requireUnchanged(t *testing.T, r *http.Request) {
	t.Helper()
	require.Equal(t, s.method, r.Method, "request's Method changed")
	require.Equal(t, s.url, r.URL.String(), "request's URL changed")
	require.True(t, s.urlPtr == any(r.URL), "request's URL pointer changed")
	require.Equal(t, s.host, r.Host, "request's Host changed")
	require.Equal(t, s.header, r.Header, "request's Header changed")
	require.True(t, s.body == r.Body, "request's Body changed")
	require.Equal(t, s.getBody, r.GetBody != nil, "request's GetBody changed")
	require.True(t, s.ctx == r.Context(), "request's context changed")
	require.Equal(t, s.contentLength, r.ContentLength, "request's ContentLength changed")
}

// requireContract checks that RoundTrip returned a response or an error,
// never both, never neither.
func requireContract(t *testing.T, resp *http.Response, err error) {
	t.Helper()
	if err != nil {
		require.Nil(t, resp, "a response came with an error: %v", err)
	} else {
		require.NotNil(t, resp, "neither a response nor an error")
		require.NotNil(t, resp.Body, "a response with a nil Body")
	}
}

// recorder keeps every Event.
type recorder struct {
	mu sync.Mutex
	ev []retryhttp.Event
}

func (r *recorder) record(e retryhttp.Event) {
	r.mu.Lock()
	r.ev = append(r.ev, e)
	r.mu.Unlock()
}

func (r *recorder) all() []retryhttp.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]retryhttp.Event(nil), r.ev...)
}

func (r *recorder) of(k retryhttp.EventKind) []retryhttp.Event {
	var out []retryhttp.Event
	for _, e := range r.all() {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// observer keeps every Attempt, and calls then for each if set.
type observer struct {
	mu   sync.Mutex
	at   []retryhttp.Attempt
	then func(retryhttp.Attempt)
}

func (o *observer) observe(a retryhttp.Attempt) {
	o.mu.Lock()
	o.at = append(o.at, a)
	then := o.then
	o.mu.Unlock()
	if then != nil {
		then(a)
	}
}

func (o *observer) all() []retryhttp.Attempt {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]retryhttp.Attempt(nil), o.at...)
}

// rig is a Transport with Metrics on a registry of its own, a recorder
// and an observer.
type rig struct {
	rt  *retryhttp.Transport
	reg *prometheus.Registry
	rec *recorder
	obs *observer
}

func newRig(t *testing.T, base http.RoundTripper, opts ...retryhttp.Option) *rig {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := retryhttp.NewMetrics(reg)
	require.NoError(t, err)
	r := &rig{reg: reg, rec: &recorder{}, obs: &observer{}}
	all := []retryhttp.Option{retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil),
		retryhttp.WithMetrics(m), retryhttp.WithRecorder(r.rec.record), retryhttp.WithObserver(r.obs.observe)}
	r.rt = retryhttp.New(base, append(all, opts...)...)
	return r
}

// series reads every counter and histogram of the registry as
// "name{label=value,...}" -> value (a histogram's sample count).
func series(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "retryhttp_budget_retries_available" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(ls)
			key := mf.GetName() + "{" + strings.Join(ls, ",") + "}"
			switch {
			case m.Counter != nil:
				if v := m.GetCounter().GetValue(); v != 0 {
					out[key] = v
				}
			case m.Histogram != nil:
				if v := float64(m.GetHistogram().GetSampleCount()); v != 0 {
					out[key] = v
				}
			}
		}
	}
	return out
}

// codeLabel is the code label of an EventAttempt's series. statusZero says
// the base returned responses with status 0 (a response, not an error), so
// Code 0 means "other" rather than "error".
func codeLabel(code int, statusZero bool) string {
	switch {
	case code == 0 && !statusZero:
		return "error"
	case code >= 100 && code <= 599:
		return strconv.Itoa(code)
	}
	return "other"
}

// fromEvents is what the series must hold, given the Events.
func fromEvents(ev []retryhttp.Event, statusZero bool) map[string]float64 {
	out := map[string]float64{}
	for _, e := range ev {
		var key string
		switch e.Kind {
		case retryhttp.EventRequest:
			key = "retryhttp_requests_total{method=" + e.Method + ",outcome=" + e.Outcome + "}"
		case retryhttp.EventAttempt:
			key = "retryhttp_attempts_total{code=" + codeLabel(e.Code, statusZero) + ",method=" + e.Method + "}"
		case retryhttp.EventRetry:
			out["retryhttp_retries_total{method="+e.Method+",reason="+e.Reason+"}"]++
			src := "backoff"
			if e.ServerWait {
				src = "retry_after"
			}
			key = "retryhttp_retry_delay_seconds{source=" + src + "}"
		case retryhttp.EventBudgetRefusal:
			key = "retryhttp_budget_refusals_total{}"
		case retryhttp.EventHeld:
			key = "retryhttp_held_requests_total{method=" + e.Method + "}"
		case retryhttp.EventPaced:
			out["retryhttp_paced_requests_total{method="+e.Method+"}"]++
			key = "retryhttp_pace_delay_seconds{}"
		case retryhttp.EventHedge:
			key = "retryhttp_hedges_total{method=" + e.Method + "}"
		case retryhttp.EventHedgeWon:
			key = "retryhttp_hedge_wins_total{method=" + e.Method + "}"
		case retryhttp.EventTransparentRetry:
			key = "retryhttp_transparent_retries_total{method=" + e.Method + "}"
		}
		out[key]++
	}
	return out
}

// requireAgree checks that the recorder's Events and the Prometheus series
// count the same things, and the Events' own arithmetic: one EventRequest
// per RoundTrip, whose Attempt is the number of EventAttempts; every
// attempt after the first is a retry or a hedge.
func (r *rig) requireAgree(t *testing.T, roundTrips int) {
	t.Helper()
	r.requireAgreeZero(t, roundTrips, false)
}

func (r *rig) requireAgreeZero(t *testing.T, roundTrips int, statusZero bool) {
	t.Helper()
	ev := r.rec.all()
	require.Equal(t, fromEvents(ev, statusZero), series(t, r.reg), "the Events and the Prometheus series disagree")
	reqs, attempts, retries, hedges := 0, 0, 0, 0
	sent := 0
	for _, e := range ev {
		switch e.Kind {
		case retryhttp.EventRequest:
			reqs++
			sent += e.Attempt
		case retryhttp.EventAttempt:
			attempts++
		case retryhttp.EventRetry:
			retries++
		case retryhttp.EventHedge:
			hedges++
		}
	}
	require.Equal(t, roundTrips, reqs, "one EventRequest per RoundTrip")
	require.Equal(t, attempts, sent, "EventRequest.Attempt must sum to the EventAttempts")
	firsts := 0
	for _, e := range ev {
		if e.Kind == retryhttp.EventRequest && e.Attempt > 0 {
			firsts++
		}
	}
	require.Equal(t, attempts, firsts+retries+hedges, "every attempt but a first one is a retry or a hedge: %s", dump(ev))
}

func dump(ev []retryhttp.Event) string {
	var b strings.Builder
	for _, e := range ev {
		fmt.Fprintf(&b, "\n  %s attempt=%d code=%d outcome=%q reason=%q", e.Kind, e.Attempt, e.Code, e.Outcome, e.Reason)
	}
	return b.String()
}

func dumpAttempts(as []retryhttp.Attempt) string {
	var b strings.Builder
	for _, a := range as {
		code := 0
		if a.Response != nil {
			code = a.Response.StatusCode
		}
		fmt.Fprintf(&b, "\n  #%d hedge=%v retry=%v reason=%q code=%d err=%v held=%v", a.Number, a.Hedge, a.Retry, a.Reason, code, a.Err, a.Held)
	}
	return b.String()
}

// request is the EventRequest of a rig that made one RoundTrip.
func (r *rig) request(t *testing.T) retryhttp.Event {
	t.Helper()
	reqs := r.rec.of(retryhttp.EventRequest)
	require.Len(t, reqs, 1)
	return reqs[0]
}

// server is a loopback server whose handler is h.
func server(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// settleGoroutines waits until the number of goroutines is at most n, and
// returns the number.
func settleGoroutines(n int) int {
	deadline := time.Now().Add(3 * time.Second)
	for {
		runtime.GC()
		g := runtime.NumGoroutine()
		if g <= n || time.Now().After(deadline) {
			return g
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// baseline returns the number of goroutines once it has stopped falling.
func baseline() int {
	g := runtime.NumGoroutine()
	for i := 0; i < 50; i++ {
		time.Sleep(10 * time.Millisecond)
		n := runtime.NumGoroutine()
		if n >= g && i >= 5 {
			return min(n, g)
		}
		g = min(g, n)
	}
	return g
}

// recovered runs f and returns what it panicked with.
func recovered(f func()) (p any) {
	defer func() { p = recover() }()
	f()
	return nil
}
