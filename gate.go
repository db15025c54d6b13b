package retryhttp

import (
	"math/rand/v2"
	"net/http"
	"time"
)

// The host gate: before an attempt is sent, admit lets it go to its host
// (at once, unless the host's quota is spent); after it, sendToHost has the
// host learn from the answer. Hosts, their quotas and their keys are in
// hold.go.

// admit lets attempt a go to its host, after waiting for it while the host
// is held and decideHold allows the wait. It returns why the attempt is not
// sent instead: stopThrottled (with a *ThrottledError), or the context
// ended during the wait.
func (t *Transport) admit(c *call, a *attempt) (stopReason, error) {
	a.host, a.admitted = nil, false
	if t.noHold {
		return stopNone, nil
	}
	h := t.hosts.get(t.hostKey(a.out))
	if h == nil {
		return stopNone, nil
	}
	a.host = h
	counted := false
	for {
		now := t.now()
		until, ok := h.admit(now)
		if ok {
			a.admitted = true
			return stopNone, nil
		}
		wait, s, err := t.decideHold(c, a.out, until, now)
		if s != stopNone {
			return s, err
		}
		if !counted && t.counted {
			t.count(c.ctx, event{kind: EventHeld, method: c.method, attempt: a.number})
		}
		counted = true
		t.logHold(c, a, until, wait)
		if err := t.sleep(c.ctx, wait); err != nil {
			return ctxStop(c.ctx.Err()), err
		}
		a.held += wait
	}
}

// sendToHost has each attempt's host learn from its answer (see
// learnFrom), and gives back the attempt's place among the host's requests
// in flight. Every response is read for this, whatever its request's
// Policy.
func (t *Transport) sendToHost(c *call, a *attempt) {
	t.sendTimed(c, a)
	t.learn(a)
}

// learn has attempt a's host learn from its answer, when the answer may
// say something, and gives back a's place among the host's requests in
// flight. A 429 or a 403 always may. Any other response is read for its
// quota fields while some host has announced a quota (then every response
// is), during the Transport's first quotaWarmup responses, and after that
// one response in quotaSample, at a random place: a host
// that starts to announce its quota is learned within a few dozen
// responses, and a Transport whose hosts announce
// nothing does not pay a header lookup per family of quota fields on every
// response (five: they would be more than its own cost on the happy path). A wait a server asks for
// (Retry-After, or a spent quota's reset on a response to retry) is read
// from every response to retry, by decide.
func (t *Transport) learn(a *attempt) {
	if t.rate != nil && t.classifier == nil && t.rate.mayLearn(a) { // with a Classifier, once it has judged (decide, judge)
		t.paceFrom(a, UseDefault)
	}
	if !a.admitted {
		resp := a.resp
		if resp == nil || len(resp.Header) == 0 || t.noHold {
			return
		}
		if code := resp.StatusCode; code != http.StatusTooManyRequests && code != http.StatusForbidden && t.hosts.n.Load() == 0 {
			// Sampled (see quotaSample): every one of the first
			// quotaWarmup responses, then one at a random place in each
			// run of quotaSample.
			n := t.responses.Add(1)
			if n%quotaSample == 0 {
				t.drawSample()
			}
			if n > quotaWarmup && n%quotaSample != t.samplePos.Load() {
				return
			}
		}
	}
	t.learnFrom(a.host, a.admitted, a.out, a.resp)
	a.admitted = false
}

// drawSample draws the place of the sample in the next run of quotaSample
// responses.
func (t *Transport) drawSample() { t.samplePos.Store(rand.Uint32N(quotaSample)) }

// quotaWarmup is how many responses a Transport reads whole for quota
// fields before it samples them; quotaSample how many responses it reads
// one of after that, while no host has announced a quota. The sample's
// place is drawn anew for each run of quotaSample responses, so that
// traffic that takes turns between hosts (A, B, A, B, ...) cannot leave a
// host unread for good, as a fixed place would; the draw costs one random
// number per run.
const (
	quotaWarmup = 64
	quotaSample = 32
)

// learnFrom records what a response (or an error, when resp is nil) to req
// says of its host's quota: h is the host's state when the request was
// admitted to it (admitted), or nil.
func (t *Transport) learnFrom(h *hostState, admitted bool, req *http.Request, resp *http.Response) {
	full := resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusForbidden)
	if resp == nil || len(resp.Header) == 0 || (!full && !announcesQuota(resp.Header)) {
		// Nothing to learn: no clock, no parsing.
		if admitted {
			h.answered(true, nil, time.Time{}, time.Time{})
		}
		return
	}
	now := t.now()
	s := readSignals(resp.Header, full, now)
	hold := hostHold(resp, &s, now)
	if !s.quota && hold.IsZero() && !s.tokensSpent {
		if admitted {
			h.answered(true, nil, time.Time{}, now)
		}
		return
	}
	if h == nil {
		h = t.hosts.getOrAdd(t.hostKey(req), now)
	}
	h.answered(admitted, &s, hold, now)
}
