package retryhttp

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
)

// hedgeRound is one hedged attempt: its first copy, sent in the goroutine of
// RoundTrip, and the hedges sent after it, each in a goroutine of its own.
// Every hedged attempt makes one, and it is its only allocation when no
// hedge is sent: the first copy's request and context live in it, and what
// a race of copies needs is made when the first hedge is.
type hedgeRound struct {
	t        *Transport
	c        call         // the call, copied for the hedges' goroutines (the caller's lives on its stack)
	first    hedgeCtx     // the first copy's context
	firstReq http.Request // the first copy's request
	base     *http.Request
	number   int // the first copy's attempt number
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
	a      attempt
	cancel context.CancelCauseFunc // of a hedge's context (the first copy's is hedgeRound.first)
	done   bool                    // answered, and handed to RoundTrip
	lost   bool                    // canceled because another copy won
	order  int                     // among the copies that answered, in the order they did
}

// race makes one hedged attempt: the first copy now, and after delay, while
// it has no answer, hedges (see Hedging). It leaves in a the outcome of the
// winner, or of the copy whose failure decides when every copy failed,
// with the other copies in a.others.
func (t *Transport) race(c *call, a *attempt, delay time.Duration) {
	h := &hedgeRound{t: t, c: *c, base: a.out, number: a.number, delay: delay}
	h.first.parent = a.out.Context()
	h.firstReq = *a.out.WithContext(&h.first)
	h.armed = true
	armHedgeTimer(h, delay)
	out := a.out
	a.out = &h.firstReq // the first copy is the attempt itself, with a context hedges can cancel
	h.sendFirst(c, a)
	a.out = out
	h.mu.Lock()
	h.over = true
	race, keyPanic := h.race, h.keyPanic
	h.mu.Unlock()
	h.timer.disarm()
	if keyPanic != nil && race == nil {
		if a.resp != nil {
			a.resp.Body.Close()
		}
		panic(keyPanic) // in the caller's goroutine, as any panic of the functions it gave
	}
	if race == nil { // the common end: it answered before any hedge was sent
		a.resp = h.first.releaseWith(a.resp)
		if asksForWait(a.resp, t.now()) {
			c.noHedge = true // asked to wait: no hedges for this request
		}
		return
	}
	h.collect(c, a)
}

// sendFirst sends the first copy of h's attempt, in the caller's
// goroutine. When the base panics with it, the race ends there: no hedge
// follows, and those in flight are canceled and clean up after themselves
// (their late answers are closed), before the panic goes on up.
func (h *hedgeRound) sendFirst(c *call, a *attempt) {
	sent := false
	defer func() {
		if !sent {
			h.mu.Lock()
			h.over = true
			if x := h.race; x != nil {
				x.decided = true
				h.cancelAllLocked()
			}
			h.mu.Unlock()
			h.timer.disarm()
		}
	}()
	h.t.sendToHost(c, a)
	sent = true
}

// mayHedgeLocked reports whether another hedge may follow: the first copy
// has not answered, no copy won, asked for a wait or panicked, fewer than
// MaxHedges hedges are in flight, and MaxAttempts allows another attempt.
// (Whether the request may be hedged at all is hedgeable's to say, and
// sendHedged's whether this attempt is.)
func (h *hedgeRound) mayHedgeLocked() bool {
	sent, inFlight := 0, 0
	if x := h.race; x != nil {
		if x.throttled || x.winner != nil || x.panicked != nil {
			return false
		}
		sent, inFlight = len(x.hedges), x.inFlight
	}
	return !h.over && inFlight < h.t.hedge.maxHedges && h.number+sent < h.c.p.MaxAttempts
}

// timeUp sends a hedge, when mayHedgeLocked allows it, the caller is still
// waiting, the host can take it now, and the budget pays for it. It runs in
// the timer's goroutine.
func (h *hedgeRound) timeUp() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.armed = false
	t := h.t
	if !h.mayHedgeLocked() || h.c.ctx.Err() != nil {
		return
	}
	host, ok := h.admitLocked()
	if !ok {
		return
	}
	var paid receipt
	if t.budget != nil {
		if paid, ok = t.budget.spendEarned(t.now()); !ok {
			// Not sent, and not counted as a refusal: hedges come only
			// from what requests earned, so a client with little traffic
			// has its hedges refused as a rule, and
			// retryhttp_budget_refusals_total (which an alert watches)
			// counts only the retries a failing dependency was refused.
			host.release()
			host.giveBackToken()
			return
		}
	}
	sent := 0
	if h.race != nil {
		sent = len(h.race.hedges)
	}
	cp, err := h.newCopy(h.number + sent + 1)
	if err != nil {
		t.budget.refund(paid) // GetBody failed: the hedge is not sent
		host.release()
		host.giveBackToken()
		return
	}
	cp.a.host, cp.a.admitted, cp.a.rate, cp.a.rateGen = host.host, host.admitted, host.rate, host.rateGen
	if h.race == nil {
		h.race = &hedgeRace{wake: make(chan struct{}, 1)}
	}
	x := h.race
	x.hedges = append(x.hedges, cp)
	x.inFlight++
	if t.counted {
		t.count(h.c.ctx, event{kind: EventHedge, method: h.c.method, attempt: cp.a.number})
	}
	go h.send(cp, cp.a) // the goroutine's own attempt: cp.a is written only under h.mu
	h.rearmLocked()
}

// admitLocked admits a hedge to its host, like any request: not while the
// host is held, counted against its quota, and with a token of its
// adaptive rate. A hedge does not wait for its host: when the host cannot
// take it now, no hedge is sent (ok false). A panic of WithHoldKey's
// function is kept for RoundTrip to panic with.
func (h *hedgeRound) admitLocked() (host attempt, ok bool) {
	t := h.t
	holds, paced := !t.noHold && t.hosts.n.Load() != 0, t.paced()
	if !holds && !paced {
		return host, true
	}
	key, p := h.hostKey()
	if p != nil { // no hedge; RoundTrip panics with it
		h.keyPanic = p
		if x := h.race; x != nil && x.panicked == nil {
			x.panicked = p
			h.cancelAllLocked()
		}
		return host, false
	}
	if holds {
		if host.host = t.hosts.get(key); host.host != nil {
			if _, ok := host.host.admit(t.now()); !ok {
				return host, false
			}
			host.admitted = true
		}
	}
	if !paced {
		return host, true
	}
	if s := t.rate.hosts.get(key); s != nil {
		if host.rateGen, ok = s.tryTake(t.now()); !ok {
			host.release()
			return host, false
		}
		host.rate = s
	}
	return host, true
}

// rearmLocked arms the timer for the next hedge, one Delay from now, when
// one may follow.
func (h *hedgeRound) rearmLocked() {
	if h.armed || !h.mayHedgeLocked() {
		return
	}
	h.armed = true
	h.timer.again(h.delay)
}

// newCopy makes the hedge numbered n.
func (h *hedgeRound) newCopy(n int) (*hedgeCopy, error) {
	ctx, cancel := context.WithCancelCause(context.WithValue(h.c.ctx, attemptKey{}, n))
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
	return &hedgeCopy{a: attempt{number: n, out: req, hedge: true}, cancel: cancel}, nil
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

// sendCaught sends a hedge down the pipeline, and returns what the base
// panicked with, if it did: the hedge's goroutine would end the process
// with it. The hedge's place at its host is given back then.
func (h *hedgeRound) sendCaught(a *attempt) (panicked any) {
	defer func() {
		if p := recover(); p != nil {
			a.release()
			if a.resp != nil { // the panic came after the answer (WithHoldKey's function)
				a.resp.Body.Close()
			}
			a.resp, a.err, panicked = nil, errBasePanicked, p
		}
	}()
	h.t.sendToHost(&h.c, a)
	return nil
}

// send sends a hedge, in its own goroutine, and hands what it got to
// RoundTrip: it wins when its response is final and no copy won before. A
// panic of the base or of the Classifier comes out of RoundTrip, in the
// caller's goroutine.
func (h *hedgeRound) send(cp *hedgeCopy, a attempt) {
	panicked := h.sendCaught(&a)
	final := false
	if a.resp != nil && panicked == nil {
		final, panicked = h.judge(&a)
	}
	h.mu.Lock()
	x := h.race
	x.inFlight--
	if x.decided { // RoundTrip is gone: a late answer is nobody's
		h.mu.Unlock()
		if a.resp != nil {
			a.resp.Body.Close()
		}
		cp.cancel(nil)
		return
	}
	cp.a, cp.done = a, true
	h.answeredLocked(cp, final, panicked)
	h.rearmLocked() // a hedge that failed makes room for another
	h.mu.Unlock()
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

// answeredLocked takes in what copy cp got: it wins when final and no copy
// won before; a panic cancels every copy; a failure that asks for a wait
// stops the hedges.
func (h *hedgeRound) answeredLocked(cp *hedgeCopy, final bool, panicked any) {
	x := h.race
	x.answered++
	cp.order = x.answered
	switch {
	case panicked != nil:
		if x.panicked == nil {
			x.panicked = panicked
		}
		h.cancelAllLocked() // RoundTrip panics as soon as the first copy is back
	case final && x.winner == nil:
		x.winner = cp
		h.cancelOthersLocked(cp)
	default:
		if asksForWait(cp.a.resp, h.t.now()) {
			x.throttled = true
		}
	}
}

// judge asks whether a copy's response ends the attempt: not retryable by
// the Transport's rules and its Classifier, whose decision the copy keeps
// so that it is asked once per copy. A panic in the Classifier is
// recovered and returned, for RoundTrip to panic with in its own
// goroutine.
func (h *hedgeRound) judge(a *attempt) (final bool, panicked any) {
	f := classify(a.resp, nil)
	if cl := h.t.classifier; cl != nil {
		defer func() {
			if p := recover(); p != nil {
				final, panicked = false, p
			}
		}()
		a.decision, a.judged = cl(a.sent, a.resp, nil), true
		if h.t.rate != nil {
			h.t.paceFrom(a, a.decision)
		}
		var stop bool
		if f, stop = decideWith(a.decision, f, a.resp); stop {
			return true, nil
		}
	}
	return !f.retryable(), nil
}

// cancelAllLocked cancels every copy: a Classifier panicked.
func (h *hedgeRound) cancelAllLocked() {
	h.first.cancel(ErrHedgeLost)
	for _, cp := range h.race.hedges {
		cp.cancel(ErrHedgeLost)
	}
}

// cancelOthersLocked cancels every copy but the winner w. Those that have
// not answered yet are lost: observers see ErrHedgeLost for them, whatever
// their cancellation makes them return.
func (h *hedgeRound) cancelOthersLocked(w *hedgeCopy) {
	if w != &h.race.first {
		if !h.over {
			h.firstLost = true
		}
		h.first.cancel(ErrHedgeLost)
	}
	for _, cp := range h.race.hedges {
		if cp != w {
			if !cp.done {
				cp.lost = true
			}
			cp.cancel(ErrHedgeLost)
		}
	}
}

// asksForWait reports whether resp is a failure that asks for a wait
// before the next attempt.
func asksForWait(resp *http.Response, now time.Time) bool {
	return resp != nil && resp.StatusCode >= 400 && readSignals(resp.Header, true, now).hasWait
}
