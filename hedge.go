package retryhttp

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Hedging sends extra copies of a slow idempotent request and returns the first
// final answer.
//
// Dean and Barroso ("The Tail at Scale", CACM 2013) found that a second copy
// sent once the first has been outstanding past the 95th percentile of the
// latency cuts the tail at about 5% more load. A Transport hedges only what is
// safe to send twice at once: idempotent requests (by method, Idempotency-Key,
// or ContextWithIdempotent) without a body, or whose body has a GetBody; a
// streamed body without GetBody is never hedged, nor a request with retries
// off (ContextWithoutRetries).
//
// The first copy whose response is final (not retryable by the Transport's
// rules and its Classifier) wins; the others are canceled and their bodies
// closed. A copy that fails in a way worth retrying (a 503, a reset) does not
// cancel the others; when every copy has failed, the retries go on with their
// backoff, or after the wait a copy's response asked for (Retry-After), even
// when another copy failed later without one. Every copy counts as an
// attempt toward MaxAttempts, and every hedge is paid for from the retry
// budget, only from what requests earned (Ratio of them), never from its
// floor of retries per second: hedging adds at most
// Ratio (20%) to the traffic, even for a client with little of it, and cannot
// raise the amplification of an outage above the budget's. A response that asks for a
// wait (Retry-After, or any throttling signal the Transport honors) stops the
// hedges of its request. Once the first copy has answered, no further hedge is
// sent for that attempt. A hedge goes to its host like any request: not while
// the host is held for its quota, and counted against it; every copy's
// response is read for the host's quota.
//
// Hedges are attempts, with their own numbers (AttemptFromContext, Attempt):
// a Classifier that allows one retry by checking for attempt 1 sees the hedge
// of attempt 1 as attempt 2. The first copy of an attempt is sent in the
// goroutine of RoundTrip, the hedges in their own: over a base that does not
// end a request when its context is canceled, RoundTrip returns a hedge's
// answer only once the first copy has returned.
type Hedging struct {
	// Delay is how long an attempt may wait for its response headers before a
	// hedge is sent. 0 means adaptive: the Percentile of the latencies recently
	// observed to the same host by this Transport (while it has fewer than
	// 100 observations of that host, no hedge is sent).
	Delay time.Duration
	// Percentile for the adaptive Delay; 0 means 0.95.
	Percentile float64
	// MaxHedges is how many extra copies may be in flight at once; 0 means 1.
	// Each further hedge follows one Delay after the previous copy.
	MaxHedges int
}

// Defaults of a Hedging.
const (
	DefaultHedgePercentile = 0.95
	DefaultMaxHedges       = 1
)

// ErrHedgeLost is the error an observer sees for a copy of a hedged attempt
// that was canceled because another copy won.
var ErrHedgeLost = errors.New("retryhttp: canceled: another copy of the request won")

// WithHedging makes the Transport hedge slow idempotent requests (see
// [Hedging]). A negative Delay or MaxHedges, or a Percentile outside (0, 1),
// makes every RoundTrip fail with a *PolicyError naming the field.
func WithHedging(h Hedging) Option {
	return optionFunc(func(t *Transport) {
		bad := func(field, reason string) {
			if t.err == nil {
				t.err = &PolicyError{Field: "Hedging." + field, Reason: reason}
			}
		}
		switch {
		case h.Delay < 0:
			bad("Delay", h.Delay.String()+" is negative (0 means adaptive)")
			return
		case h.MaxHedges < 0:
			bad("MaxHedges", fmt.Sprint(h.MaxHedges, " is negative (0 means ", DefaultMaxHedges, ")"))
			return
		case math.IsNaN(h.Percentile) || h.Percentile < 0 || h.Percentile >= 1:
			bad("Percentile", fmt.Sprint(h.Percentile, " is not in (0, 1) (0 means ", DefaultHedgePercentile, ")"))
			return
		}
		c := &hedging{delay: h.Delay, maxHedges: h.MaxHedges}
		if c.maxHedges == 0 {
			c.maxHedges = DefaultMaxHedges
		}
		if c.delay == 0 {
			p := h.Percentile
			if p == 0 {
				p = DefaultHedgePercentile
			}
			c.latencies = &latencies{percentile: p}
		}
		t.hedge = c
	})
}

// hedging is a Transport's hedging configuration.
type hedging struct {
	delay     time.Duration // 0: adaptive, from latencies
	maxHedges int
	latencies *latencies // the adaptive delay's estimates; nil with a fixed delay
}

// delayFor returns the delay before the first hedge of an attempt to the
// host u names, or 0 for none.
func (h *hedging) delayFor(u *url.URL) time.Duration {
	if h.latencies == nil {
		return h.delay
	}
	return h.latencies.delay(hostKeyOf(u))
}

// observe records the latency of an attempt that got a response, for the
// adaptive delay.
func (h *hedging) observe(r *run, resp *http.Response) {
	if h.latencies != nil && resp != nil {
		h.latencies.observe(hostKeyOf(r.sent.URL), r.took)
	}
}

// hedgeable reports whether req may be hedged: idempotent, and its body, if
// any, can be sent twice at once.
func hedgeable(req *http.Request, p *Policy) bool {
	return p.MaxAttempts > 1 && idempotent(req) && (!hasBody(req) || req.GetBody != nil)
}

// hedgeRound is one hedged attempt: its first copy, sent in the goroutine of
// RoundTrip, and the hedges sent after it, each in a goroutine of its own.
// Every hedged attempt makes one, and it is its only allocation when no
// hedge is sent: the first copy's request and context live in it, and what
// a race of copies needs is made when the first hedge is.
type hedgeRound struct {
	t        *Transport
	first    hedgeCtx     // the first copy's context
	firstReq http.Request // the first copy's request
	base     *http.Request
	caller   context.Context
	p        *Policy
	number   int // the first copy's attempt number
	method   int
	delay    time.Duration
	timer    *hedgeTimer

	mu        sync.Mutex
	over      bool       // the first copy answered: no more hedges
	armed     bool       // the timer will call timeUp
	firstLost bool       // the first copy was canceled because another won
	race      *hedgeRace // made with the first hedge
	keyPanic  any        // what WithHoldKey's function panicked with in timeUp, for RoundTrip to panic with
}

// hedgeRace is what a hedged attempt needs once a hedge is sent; guarded by
// hedgeRound.mu.
type hedgeRace struct {
	first     hedgeCopy    // the first copy, once it answered
	hedges    []*hedgeCopy // sent so far
	inFlight  int          // hedges not answered yet
	throttled bool         // a copy's response asked for a wait: no more hedges
	winner    *hedgeCopy   // the first copy with a final response
	answered  int          // copies that answered so far
	decided   bool         // RoundTrip took the results: copies answered later clean up after themselves
	panicked  any          // what the base or a Classifier panicked with, in a hedge's goroutine, for RoundTrip to panic with
	wake      chan struct{}
}

// hedgeCopy is one copy of a hedged attempt and what it got.
type hedgeCopy struct {
	number   int
	req      *http.Request
	cancel   context.CancelCauseFunc // of a hedge's context (the first copy's is hedgeRound.first)
	host     *hostState              // its host's quota, when it was admitted to it
	resp     *http.Response
	err      error
	took     time.Duration
	decision Decision // the Classifier's, about resp or err
	judged   bool     // the Classifier was asked
	done     bool     // answered, and handed to RoundTrip
	lost     bool     // canceled because another copy won
	order    int      // among the copies that answered, in the order they did
}

// sendHedged makes one hedged attempt: the first copy now, and after delay,
// while it has no answer, hedges (see Hedging). It returns the winner's
// response, or the last failure when every copy failed, and leaves in r the
// number of attempts sent and the one whose outcome it returns. The copies
// that are not returned are reported to observers here.
func (t *Transport) sendHedged(r *run, delay time.Duration) (*http.Response, error) {
	h := &hedgeRound{t: t, base: r.out, caller: r.req.Context(), p: r.p, number: r.attempt, method: r.method, delay: delay}
	h.first.parent = r.out.Context()
	h.firstReq = *r.out.WithContext(&h.first)
	h.armed = true
	armHedgeTimer(h, delay)
	var start time.Time
	if t.timed {
		start = time.Now()
	}
	resp, err := t.sendCopy(&h.firstReq, h, h.number)
	var took time.Duration
	if t.timed {
		took = time.Since(start)
	}
	h.mu.Lock()
	h.over = true
	race, keyPanic := h.race, h.keyPanic
	h.mu.Unlock()
	h.timer.disarm()
	if keyPanic != nil && race == nil {
		if resp != nil {
			resp.Body.Close()
		}
		panic(keyPanic) // in the caller's goroutine, as any panic of the functions it gave
	}
	if race == nil { // the common end: it answered before any hedge was sent
		r.sent, r.took = &h.firstReq, took
		resp = h.first.releaseWith(resp)
		if resp != nil && resp.StatusCode >= 400 && readSignals(resp.Header, true, t.now()).hasWait {
			r.noHedge = true // asked to wait: no hedges for this request
		}
		return resp, err
	}
	return h.collect(r, resp, err, took)
}

// sendCopy sends copy number n of h's attempt, within the attempt timeout
// when there is one, counting net/http's resends of it when the Transport
// counts.
func (t *Transport) sendCopy(req *http.Request, h *hedgeRound, n int) (*http.Response, error) {
	watch := watchNone
	if t.counted {
		watch = watchCount // hedges are idempotent: no evidence needed
	}
	_, resp, _, err := t.sendOne(req, h.caller, h.p.AttemptTimeout, watch, h.method, n)
	return resp, err
}

// timeUp sends a hedge, when one may be sent: the first copy has not
// answered, no response asked for a wait, fewer than MaxHedges hedges are in
// flight, the Policy's MaxAttempts allows another attempt, and the budget
// pays for it. It runs in the timer's goroutine.
func (h *hedgeRound) timeUp() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.armed = false
	t := h.t
	sent, inFlight := 0, 0
	if x := h.race; x != nil {
		if x.throttled || x.winner != nil {
			return
		}
		sent, inFlight = len(x.hedges), x.inFlight
	}
	if h.over || inFlight >= t.hedge.maxHedges || h.number+sent >= h.p.MaxAttempts || h.caller.Err() != nil {
		return
	}
	// A hedge goes to its host like any request: not while the host is
	// held, and counted against its quota. It does not wait for the host:
	// when the host cannot take it now, no hedge is sent.
	var host *hostState
	if !t.noHold && t.hosts.n.Load() != 0 {
		key, p := h.hostKey()
		if p != nil { // no hedge; RoundTrip panics with it
			h.keyPanic = p
			if x := h.race; x != nil && x.panicked == nil {
				x.panicked = p
				h.cancelAllLocked()
			}
			return
		}
		if host = t.hosts.get(key); host != nil {
			if _, ok := host.admit(t.now()); !ok {
				return
			}
		}
	}
	var paid receipt
	if t.budget != nil {
		var ok bool
		if paid, ok = t.budget.spendEarned(t.now()); !ok {
			// Not sent, and not counted as a refusal: hedges come only
			// from what requests earned, so a client with little traffic
			// has its hedges refused as a rule, and
			// retryhttp_budget_refusals_total (which an alert watches)
			// counts only the retries a failing dependency was refused.
			if host != nil {
				host.answered(true, nil, time.Time{}, time.Time{}) // not sent after all
			}
			return
		}
	}
	c, err := h.newCopy(h.number + sent + 1)
	if err != nil {
		t.budget.refund(paid) // GetBody failed: the hedge is not sent
		if host != nil {
			host.answered(true, nil, time.Time{}, time.Time{})
		}
		return
	}
	c.host = host
	if h.race == nil {
		h.race = &hedgeRace{wake: make(chan struct{}, 1)}
	}
	x := h.race
	x.hedges = append(x.hedges, c)
	x.inFlight++
	t.metrics.hedged(h.method)
	if t.recorders != nil {
		t.recordOther(EventHedge, h.caller, h.method, c.number)
	}
	go h.send(c)
	h.rearmLocked()
}

// rearmLocked arms the timer for the next hedge, one Delay from now, when
// one may follow: the first copy has not answered, no copy won or asked
// for a wait, fewer than MaxHedges hedges are in flight, and MaxAttempts
// allows another.
func (h *hedgeRound) rearmLocked() {
	x := h.race
	if h.armed || h.over || x.winner != nil || x.throttled || x.panicked != nil ||
		x.inFlight >= h.t.hedge.maxHedges || h.number+len(x.hedges) >= h.p.MaxAttempts {
		return
	}
	h.armed = true
	h.timer.again(h.delay)
}

// newCopy makes the request of the hedge numbered n.
func (h *hedgeRound) newCopy(n int) (*hedgeCopy, error) {
	ctx, cancel := context.WithCancelCause(context.WithValue(h.caller, attemptKey{}, n))
	req := h.base.WithContext(ctx)
	req.Header = h.base.Header.Clone() // copies run at once: a base that writes its request's header must not race
	if hasBody(h.base) {
		body, err := h.base.GetBody()
		if err == nil && body == nil {
			err = errors.New("GetBody returned a nil body")
		}
		if err != nil {
			cancel(nil)
			return nil, err
		}
		req.Body = body
	}
	return &hedgeCopy{number: n, req: req, cancel: cancel}, nil
}

// hostKey returns the key of the hold the hedges go to, or what
// WithHoldKey's function panicked with: it runs in the timer's goroutine,
// where a panic would end the process.
func (h *hedgeRound) hostKey() (k hostKey, panicked any) {
	defer func() {
		if p := recover(); p != nil {
			panicked = p
		}
	}()
	return h.t.hostKey(h.base), nil
}

// errBasePanicked stands for the outcome of a hedge whose base panicked:
// RoundTrip panics with what it panicked with.
var errBasePanicked = errors.New("retryhttp: the base RoundTripper panicked while sending a hedge")

// sendCaught sends hedge c, and returns what the base panicked with, if it
// did: the hedge's goroutine would end the process with it.
func (h *hedgeRound) sendCaught(c *hedgeCopy) (resp *http.Response, err error, panicked any) {
	defer func() {
		if p := recover(); p != nil {
			resp, err, panicked = nil, errBasePanicked, p
		}
	}()
	resp, err = h.t.sendCopy(c.req, h, c.number)
	return resp, err, nil
}

// send sends a hedge, in its own goroutine, and hands what it got to
// RoundTrip: it wins when its response is final and no copy won before. Its
// host learns from its response, as from any. A panic of the base or of
// the Classifier comes out of RoundTrip, in the caller's goroutine.
func (h *hedgeRound) send(c *hedgeCopy) {
	t := h.t
	start := time.Now()
	resp, err, panicked := h.sendCaught(c)
	took := time.Since(start)
	t.learnFrom(c.host, c.host != nil, c.req, resp)
	final := false
	if resp != nil {
		final, panicked = h.judge(c, resp)
	}
	h.mu.Lock()
	x := h.race
	x.inFlight--
	if x.decided { // RoundTrip is gone: a late answer is nobody's
		h.mu.Unlock()
		if resp != nil {
			resp.Body.Close()
		}
		c.cancel(nil)
		return
	}
	c.resp, c.err, c.took, c.done = resp, err, took, true
	x.answered++
	c.order = x.answered
	switch {
	case panicked != nil:
		if x.panicked == nil {
			x.panicked = panicked
		}
		h.cancelAllLocked() // RoundTrip panics as soon as the first copy is back
	case final && x.winner == nil:
		x.winner = c
		h.cancelOthersLocked(c)
	default:
		h.learnLocked(resp)
		h.rearmLocked() // a hedge that failed makes room for another
	}
	h.mu.Unlock()
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

// judge asks whether a copy's response ends the attempt: not retryable by
// the Transport's rules and its Classifier, whose decision the copy keeps
// so that it is asked once per copy. A panic in the Classifier is
// recovered and returned, for RoundTrip to panic with in its own
// goroutine.
func (h *hedgeRound) judge(c *hedgeCopy, resp *http.Response) (final bool, panicked any) {
	f := classify(resp, nil)
	if cl := h.t.classifier; cl != nil {
		defer func() {
			if p := recover(); p != nil {
				final, panicked = false, p
			}
		}()
		c.decision, c.judged = cl(c.req, resp, nil), true
		var stop bool
		if f, stop = decideWith(c.decision, f, resp); stop {
			return true, nil
		}
	}
	return !f.retryable(), nil
}

// cancelAllLocked cancels every copy: a Classifier panicked.
func (h *hedgeRound) cancelAllLocked() {
	h.first.cancel(ErrHedgeLost)
	for _, c := range h.race.hedges {
		c.cancel(ErrHedgeLost)
	}
}

// cancelOthersLocked cancels every copy but the winner w. Those that have
// not answered yet are lost: observers see ErrHedgeLost for them, whatever
// their cancellation makes them return.
func (h *hedgeRound) cancelOthersLocked(w *hedgeCopy) {
	if w.number != h.number {
		if !h.over {
			h.firstLost = true
		}
		h.first.cancel(ErrHedgeLost)
	}
	for _, c := range h.race.hedges {
		if c != w {
			if !c.done {
				c.lost = true
			}
			c.cancel(ErrHedgeLost)
		}
	}
}

// learnLocked notes whether a response asks for a wait: then no more
// hedges.
func (h *hedgeRound) learnLocked(resp *http.Response) {
	if asksForWait(resp, h.t.now()) {
		h.race.throttled = true
	}
}

// lastAnswered returns the copy that answered last among those for which
// ok is true, or nil.
func lastAnswered(copies []*hedgeCopy, ok func(*hedgeCopy) bool) *hedgeCopy {
	var last *hedgeCopy
	for _, c := range copies {
		if c.done && ok(c) && (last == nil || c.order > last.order) {
			last = c
		}
	}
	return last
}

// asksForWait reports whether resp is a failure that asks for a wait
// before the next attempt.
func asksForWait(resp *http.Response, now time.Time) bool {
	return resp != nil && resp.StatusCode >= 400 && readSignals(resp.Header, true, now).hasWait
}

// collect waits for the hedges of an attempt whose first copy answered
// (with resp, err after took), until a copy wins or every copy has
// answered. It returns the winner's outcome or, when all failed, the
// outcome of the last to answer (of the last that asked for a wait, if any
// did), and reports every other copy to
// observers: one that lost the race with ErrHedgeLost. Every copy's host
// has learned from its response by then, and the Classifier has been asked
// once about each response: r keeps its decision about the one returned.
// A panic in the Classifier, here or in a hedge's goroutine, propagates
// from here once every copy is canceled and closed.
func (h *hedgeRound) collect(r *run, resp *http.Response, err error, took time.Duration) (*http.Response, error) {
	t := h.t
	t.learnFrom(r.host, r.admitted, &h.firstReq, resp)
	r.admitted, r.learned = false, true
	h.mu.Lock()
	x := h.race
	first := &x.first
	first.number, first.req, first.resp, first.err, first.took, first.done = h.number, &h.firstReq, resp, err, took, true
	first.lost = h.firstLost
	judge := resp != nil && x.panicked == nil && !first.lost
	h.mu.Unlock()
	final, panicked := false, any(nil)
	if judge {
		final, panicked = h.judge(first, resp)
	}
	h.mu.Lock()
	x.answered++
	first.order = x.answered
	switch {
	case panicked != nil:
		if x.panicked == nil {
			x.panicked = panicked
		}
		h.cancelAllLocked()
	case final && x.winner == nil:
		x.winner = first
		h.cancelOthersLocked(first)
	default:
		h.learnLocked(resp)
	}
	for x.winner == nil && x.inFlight > 0 && x.panicked == nil {
		h.mu.Unlock()
		<-x.wake
		h.mu.Lock()
	}
	x.decided = true
	copies := append([]*hedgeCopy{first}, x.hedges...)
	result := x.winner
	if result == nil {
		// Every copy failed: the last to answer decides, or, when some
		// copy's response asked for a wait, the last of those, whose wait
		// the retry then honors (a copy that failed later without one
		// does not cancel what the server asked).
		now := t.now()
		result = lastAnswered(copies, func(c *hedgeCopy) bool { return asksForWait(c.resp, now) })
		if result == nil {
			result = lastAnswered(copies, func(*hedgeCopy) bool { return true })
		}
	}
	throttled, won, panicked := x.throttled, x.winner != nil, x.panicked
	h.mu.Unlock()

	if panicked != nil {
		for _, c := range copies {
			if c.done && c.resp != nil {
				c.resp.Body.Close()
			}
			if c != first {
				c.cancel(nil)
			}
		}
		h.first.releaseWith(nil)
		panic(panicked)
	}

	r.noHedge = r.noHedge || throttled
	r.attempt = h.number + len(copies) - 1
	r.shown, r.shownHedge, r.sent, r.took = result.number, result != first, result.req, result.took
	r.judged, r.decision = result.judged, result.decision
	if result == first {
		result.resp = h.first.releaseWith(result.resp)
	} else {
		if won {
			t.metrics.hedgeWon(h.method)
			if t.recorders != nil {
				t.recordOther(EventHedgeWon, h.caller, h.method, result.number)
			}
		}
		h.first.cancel(nil)
		if result.resp != nil {
			result.resp.Body = cancelOnClose(result.resp.Body, result.cancel)
		} else {
			result.cancel(nil)
		}
	}
	for _, c := range copies {
		if c == result {
			continue
		}
		if c.done && c.resp != nil {
			c.resp.Body.Close() // an answer nobody will read
		}
		if !c.done || c.lost {
			c.resp, c.err = nil, ErrHedgeLost // canceled when another copy won
		}
		if c != first {
			c.cancel(nil) // release the hedge's context
		}
		if c.resp != nil && t.hedge.latencies != nil {
			t.hedge.latencies.observe(hostKeyOf(c.req.URL), c.took)
		}
		t.metrics.attempt(h.method, c.resp)
		if t.recorders != nil {
			t.recordAttempt(h.caller, h.method, c.resp, c.number)
		}
		if t.watched {
			t.observeCopy(c, c.number != h.number)
		}
	}
	return result.resp, result.err
}
