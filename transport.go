package retryhttp

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-cleanhttp"
)

// Transport is an http.RoundTripper that sends each request through a base
// RoundTripper and retries it when that is safe and may help: on status 408,
// 429, 500, 502, 503 and 504 and on connection failures, for idempotent
// requests (and for any request whose connection was never made), with
// exponential backoff and jitter, honoring Retry-After.
//
// A Transport is safe for concurrent use by multiple goroutines. It never
// modifies the caller's Request, always closes its body, and returns either
// a response with a nil error or an error with no response. When it gives
// up, it returns the last response unchanged (a final 503 arrives exactly as
// it would without retries) or, when the last attempt got no response, an
// *Error that unwraps to the last attempt's error.
//
// The zero Transport is ready to use, like New(nil): it sends through a
// cleanhttp.DefaultPooledTransport() of its own, with the default Policy,
// replay buffer and retry budget.
type Transport struct {
	once        sync.Once // applies the defaults, for New and for the zero Transport
	base        http.RoundTripper
	policy      Policy // as given to WithPolicy; defaults applied by init
	logger      *slog.Logger
	replayLimit int
	replaySet   bool       // WithReplayBuffer was given
	hosts       hosts      // the quotas of the hosts that announce them
	metrics     *Metrics   // nil: no metrics
	classifier  Classifier // nil: the Transport's own rules
	observers   []func(Attempt)
	recorders   []func(Event)
	watched     bool     // a logger or observers want each attempt
	timed       bool     // attempts are timed: for observers, or the adaptive hedging delay
	counted     bool     // metrics or recorders count each attempt, net/http's resends included
	hedge       *hedging // nil: no hedging
	beforeRetry []func(next *http.Request, prev Attempt) error
	holdKey     func(req *http.Request) string // nil: one hold per host
	budget      *Budget                        // nil: no budget
	budgetSet   bool                           // WithBudget was given, even with nil
	err         error                          // a bad option; returned by every RoundTrip

	// Test seams: the clock, the wait, and the randomness (nil: math/rand/v2);
	// noHold turns the host holds off, to measure what they are worth.
	noHold bool
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
	rand   *rand.Rand
}

var _ http.RoundTripper = (*Transport)(nil)

// New returns a Transport that sends requests through base. A nil base means
// a fresh cleanhttp.DefaultPooledTransport(): net/http's default settings
// without any shared global state. New never fails: a bad option makes every
// RoundTrip return its error (a *PolicyError).
func New(base http.RoundTripper, opts ...Option) *Transport {
	t := &Transport{base: base}
	for _, o := range opts {
		if o != nil {
			o.apply(t)
		}
	}
	t.once.Do(t.init)
	return t
}

// init applies the defaults to every field that options left unset.
func (t *Transport) init() {
	if t.base == nil {
		t.base = cleanhttp.DefaultPooledTransport()
	}
	if !t.replaySet {
		t.replayLimit = DefaultReplayBuffer
	}
	if t.now == nil {
		t.now = time.Now
	}
	if t.sleep == nil {
		t.sleep = sleep
	}
	if err := t.policy.Validate(); err != nil && t.err == nil {
		t.err = err
	}
	if !t.budgetSet {
		t.budget = new(Budget) // the zero Budget has the defaults
	}
	t.metrics.attach(t.budget)
	t.policy = t.policy.withDefaults()
	t.watched = t.logger != nil || len(t.observers) > 0
	t.timed = t.watched || (t.hedge != nil && t.hedge.latencies != nil)
	t.counted = t.metrics != nil || t.recorders != nil
}

// CloseIdleConnections closes the idle connections of the base transport,
// when it has such a method, so that http.Client.CloseIdleConnections
// works through a Transport. The Transport never calls it on its own.
func (t *Transport) CloseIdleConnections() {
	t.once.Do(t.init)
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip sends req, retrying as the Policy allows. See [Transport].
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.once.Do(t.init)
	if req == nil {
		t.metrics.request(numMethods-1, outcomeNotRetryable)
		if t.recorders != nil {
			t.recordRequest(context.Background(), numMethods-1, stopPermanent, 0)
		}
		return nil, errors.New("retryhttp: nil *http.Request")
	}
	p, err := t.policyFor(req)
	if err == nil && req.URL == nil {
		err = errors.New("retryhttp: nil Request.URL")
	}
	if err != nil {
		closeBody(req)
		t.metrics.request(methodIndex(req.Method), outcomeNotRetryable)
		if t.recorders != nil {
			t.recordRequest(req.Context(), methodIndex(req.Method), stopPermanent, 0)
		}
		return nil, err
	}
	return t.roundTrip(req, p)
}

// run is the state of one RoundTrip: the request, its Policy, and where its
// attempts stand. It lives on RoundTrip's stack.
type run struct {
	req     *http.Request // the caller's, never changed
	p       *Policy
	body    *replayBody   // the replay buffer, for a body without GetBody
	out     *http.Request // what the current attempt sends
	sent    *http.Request // what the base got for it: out, or a copy with the attempt's timeout
	attempt int           // the current attempt's number
	method  int           // the method's index, for metric labels
	took    time.Duration // how long the current attempt took, when watched

	watch    watchKind // what the attempts watch their connections for (see connWatch)
	sawConn  bool      // the current attempt got a connection
	unsent   bool      // the current attempt asked for a connection and got none
	admitted bool      // the current attempt counts in its host's requests in flight

	hedge      bool // the request may be hedged
	noHedge    bool // a response asked for a wait: no more hedges
	shownHedge bool // the attempt whose outcome RoundTrip has is a hedge
	shown      int  // its number, when that is not attempt (a hedged attempt's copies)
	learned    bool // the hosts of the attempt's copies learned from their responses already
	judged     bool // the Classifier was asked about the attempt's outcome already, and said decision
	decision   Decision

	host *hostState    // the quota of the current attempt's host, when it has one
	held time.Duration // how long the current attempt waited for its host
	st   *step         // the step to the next attempt, from the first retry on
}

// number returns the number of the attempt whose outcome RoundTrip has:
// the current one's, or the copy's of a hedged attempt that decided it.
func (r *run) number() int {
	if r.shown != 0 {
		return r.shown
	}
	return r.attempt
}

// step is what decide fills in when an attempt is retried: the wait before
// the next attempt and its request.
type step struct {
	f          failure       // what went wrong with the attempt
	from       int           // the attempt's number (of the copy that decided a hedged attempt)
	wait       time.Duration // the wait before the next attempt (and, before decide, the last one)
	retryAfter bool          // the wait is the server's Retry-After
	next       *http.Request // the next attempt's request, with a fresh body
	paid       receipt       // what the retry took from the budget
	bodyErr    error         // why the body could not be sent again
}

// roundTrip runs the attempts of req under p: send, decide, observe, wait,
// send again, until decide says why to stop.
func (t *Transport) roundTrip(req *http.Request, p *Policy) (*http.Response, error) {
	r := run{req: req, p: p, method: methodIndex(req.Method), out: req}
	defer func() {
		// Every end gives back the attempt's place among its host's
		// requests in flight; a panic (of the base, a hook, a recorder)
		// must too, or the host's quota would count it for good.
		if r.admitted {
			t.release(&r)
		}
	}()
	switch {
	case !idempotentIndex(r.method) && watchesConn(req, p):
		r.watch = watchEvidence
	case t.counted:
		r.watch = watchCount
	}
	r.hedge = t.hedge != nil && hedgeable(req, p)
	if p.MaxAttempts > 1 && hasBody(req) && req.GetBody == nil {
		r.body = newReplayBody(req.Body, t.replayLimit)
		r.out, _ = r.body.request(req, r.req.Context()) // a fresh replayBody always gives its first view
	}
	if t.budget != nil {
		t.budget.earn(t.now)
	}
	var prev Attempt // the attempt a retry follows, for the WithBeforeRetry functions
	for r.attempt = 1; ; r.attempt++ {
		if t.hosts.n.Load() != 0 { // a host is held, or announced its quota
			if s, err := t.admit(&r); s != stopNone {
				return nil, t.refuse(&r, s, err)
			}
		}
		if r.attempt > 1 && len(t.beforeRetry) != 0 { // after every wait, the host's included
			if s, cause := t.runBeforeRetry(&r, prev); s != stopNone {
				t.release(&r)
				return nil, t.refuse(&r, s, cause)
			}
		}
		if r.attempt > 1 { // a retry, about to be sent: now it counts
			t.metrics.retry(r.method, r.st.f, r.st.wait, r.st.retryAfter)
			if t.recorders != nil {
				t.recordRetry(&r)
			}
		}
		resp, err := t.send(&r)
		t.metrics.attempt(r.method, resp)
		if t.recorders != nil {
			t.recordAttempt(r.req.Context(), r.method, resp, r.number())
		}
		if resp != nil && resp.Request != req {
			resp.Request = req // what a base (a tracing one, say) set it to may be its own copy
		}
		if !r.learned && (r.admitted || (resp != nil && len(resp.Header) != 0)) {
			t.learn(&r, resp)
		}
		r.learned = false

		s := t.decide(&r, resp, err)
		if t.watched {
			t.observe(&r, resp, err, s)
		}
		if s != stopNone {
			if resp != nil && r.body == nil { // the common end, kept short
				t.metrics.request(r.method, s.outcome())
				if t.recorders != nil {
					t.recordRequest(r.req.Context(), r.method, s, r.attempt)
				}
				return resp, nil
			}
			return t.finish(&r, resp, err, s)
		}

		if len(t.beforeRetry) != 0 {
			prev = r.report(resp, err, stopNone)
		}
		if resp != nil {
			discard(resp)
		}
		if err := t.sleep(r.req.Context(), r.st.wait); err != nil {
			return nil, t.abandon(&r, ctxStop(r.req.Context().Err()), err)
		}
		r.out = r.st.next
	}
}

// send makes one attempt through the base, within the Policy's
// AttemptTimeout, and holds the base to the RoundTripper contract: a
// response and no error, or an error and no response; a response's nil
// Body is an empty one, as http.Client treats it.
func (t *Transport) send(r *run) (*http.Response, error) {
	if r.hedge {
		r.shown, r.shownHedge = 0, false
		if d := t.hedge.delayFor(r.out.URL); d > 0 && !r.noHedge {
			resp, err := t.sendHedged(r, d)
			t.hedge.observe(r, resp)
			return resp, err
		}
	}
	if t.timed || r.watch != watchNone || r.p.AttemptTimeout > 0 {
		resp, err := t.sendWatched(r)
		if t.hedge != nil {
			t.hedge.observe(r, resp)
		}
		return resp, err
	}
	r.sent = r.out
	resp, err := t.base.RoundTrip(r.sent)
	if err != nil || resp == nil || resp.Body == nil {
		return checked(resp, err)
	}
	return resp, nil
}

// checked holds what a base returned to the RoundTripper contract.
func checked(resp *http.Response, err error) (*http.Response, error) {
	switch {
	case err == nil && resp == nil:
		return nil, errors.New("retryhttp: base RoundTripper returned a nil response and a nil error")
	case err != nil && resp != nil:
		if resp.Body != nil {
			resp.Body.Close() // as http.Client does: the error wins
		}
		return nil, err
	case resp != nil && resp.Body == nil:
		resp.Body = http.NoBody
	}
	return resp, err
}

// finish ends a request after its last attempt: the response as it came,
// or an *Error that says why no retry followed.
func (t *Transport) finish(r *run, resp *http.Response, err error, s stopReason) (*http.Response, error) {
	if r.body != nil {
		r.body.finish(resp != nil)
	}
	t.metrics.request(r.method, s.outcome())
	if t.recorders != nil {
		t.recordRequest(r.req.Context(), r.method, s, r.attempt)
	}
	if resp != nil {
		return resp, nil
	}
	if s == stopCanceled || s == stopDeadlinePassed {
		if ctxErr := r.req.Context().Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = errors.Join(err, ctxErr)
		}
	}
	return nil, &Error{Attempts: r.attempt, Err: err, Reason: s.reason(), detail: t.explain(r, s)}
}

// runBeforeRetry runs the WithBeforeRetry functions on the request of the
// retry about to be sent, after every wait (its host's too): they see the
// request as it will go out, and a fresh token they set does not wait for
// the host. It returns why the request stops instead, with the error to
// report: the function's (stopHook) or, when a function sent the retry to
// another host that is held, what admitting it there says.
func (t *Transport) runBeforeRetry(r *run, prev Attempt) (stopReason, error) {
	// The functions may change the next request's Header and URL: give it
	// its own, so no other request sees the changes.
	next := r.out
	if next.Header != nil {
		next.Header = next.Header.Clone()
	} else {
		next.Header = http.Header{} // a request built by hand may have none
	}
	var before hostKey
	if next.URL != nil {
		u := *next.URL
		next.URL = &u
		before = t.hostKey(next)
	}
	held := r.held
	for pass := 1; ; pass++ {
		for _, f := range t.beforeRetry {
			if err := f(next, prev); err != nil {
				return stopHook, err
			}
		}
		if next.URL == nil || t.hosts.n.Load() == 0 {
			return stopNone, nil
		}
		key := t.hostKey(next)
		if key == before {
			return stopNone, nil
		}
		// Moved to another host, or another hold scope (a new credential
		// under WithHoldKey): the retry goes to that one's hold. When it
		// had to wait there, the functions run again, so that they stay
		// the last thing before the send; up to 3 times, for functions
		// that move the request on every run.
		t.release(r)
		s, err := t.admit(r)
		r.held += held
		if s != stopNone || r.held == held || pass == 3 {
			return s, err
		}
		before, held = key, r.held
	}
}

// release gives back the current attempt's place among its host's requests
// in flight: it will not be sent after all.
func (t *Transport) release(r *run) {
	if r.admitted {
		r.host.answered(true, nil, time.Time{}, time.Time{})
		r.admitted = false
	}
}

// refuse ends a request whose next attempt is not sent: its host's quota
// is spent for longer than it may wait (stopThrottled, with the
// *ThrottledError), the context ended while it waited for the host, or a
// WithBeforeRetry function failed (stopHook).
// Observers see the attempt that was not sent, with that error, unless the
// request's previous attempt was reported with a retry to follow.
func (t *Transport) refuse(r *run, s stopReason, cause error) error {
	if r.attempt > 1 {
		r.attempt-- // the attempt that is not sent does not count
		return t.abandon(r, s, cause)
	}
	if r.body != nil {
		r.body.finish(false)
	} else {
		closeBody(r.req)
	}
	t.metrics.request(r.method, s.outcome())
	if t.recorders != nil {
		t.recordRequest(r.req.Context(), r.method, s, 0)
	}
	r.sent = r.out
	if t.watched {
		t.observe(r, nil, cause, s)
	}
	return &Error{Attempts: 0, Err: cause, Waiting: s == stopCanceled || s == stopDeadlinePassed,
		Reason: s.reason(), detail: t.explain(r, s)}
}

// abandon ends a request whose last attempt was already reported with a
// retry to follow: the wait was cut short, or a WithBeforeRetry function
// failed. The retry is not sent, so the budget gets it back.
func (t *Transport) abandon(r *run, s stopReason, cause error) error {
	t.budget.refund(r.st.paid)
	if r.st.next.Body != nil && r.st.next.Body != http.NoBody && r.st.next.Body != r.req.Body {
		r.st.next.Body.Close() // the body made for the attempt that will not be sent
	}
	if r.body != nil {
		r.body.finish(false)
	}
	t.metrics.request(r.method, s.outcome())
	if t.recorders != nil {
		t.recordRequest(r.req.Context(), r.method, s, r.attempt)
	}
	t.logGiveUp(r, nil, cause, s)
	return &Error{Attempts: r.attempt, Err: cause, Waiting: s == stopCanceled || s == stopDeadlinePassed, Reason: s.reason(), detail: t.explain(r, s)}
}
