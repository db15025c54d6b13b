package retryhttp

import "net/http"

// The adaptive rate's part of the pipeline (see WithAdaptiveRate): pace,
// in the gate, has an attempt take a token of its host's rate; paceFrom,
// after the answer, has the rate learn from it.

// paced reports whether some host's adaptive rate is awake.
func (t *Transport) paced() bool { return t.rate != nil && t.rate.hosts.n.Load() != 0 }

// pace has attempt a take a token of its host's adaptive rate, when the
// host is awake, waiting for it when decidePace allows the wait. It
// returns why the attempt is not sent instead: stopPaced (with a
// *ThrottledError), or the context ended during the wait; the token is
// given back then.
func (t *Transport) pace(c *call, a *attempt) (stopReason, error) {
	now := t.now()
	s := t.rate.state(t.hostKey(a.out), false, now)
	if s == nil {
		return stopNone, nil
	}
	wait, gen := s.take(now)
	if wait > 0 {
		if stop, err := t.decidePace(c, a.out, wait, now); stop != stopNone {
			s.giveBack()
			return stop, err
		}
		if t.counted {
			t.count(c.ctx, event{kind: EventPaced, method: c.method, attempt: a.number, wait: wait})
		}
		if err := t.sleep(c.ctx, wait); err != nil {
			s.giveBack()
			return ctxStop(c.ctx.Err()), err
		}
		a.held += wait
	}
	a.rate, a.rateGen = s, gen
	return stopNone, nil
}

// paceFrom has the adaptive rate of attempt a's host learn from a's
// response (or its error, when the Classifier called it Throttled), with d
// what the Classifier said of it (UseDefault without one). A throttle
// wakes a sleeping host; a host that sleeps learns nothing else, at the
// cost of one atomic load.
func (t *Transport) paceFrom(a *attempt, d Decision) {
	resp := a.resp
	if resp == nil && d != Throttled {
		return
	}
	kind := rateOK
	if d == Throttled || throttles(resp) {
		kind = rateThrottle
	}
	s := a.rate
	if s == nil && kind == rateOK && t.rate.hosts.n.Load() == 0 {
		return
	}
	now := t.now()
	if kind == rateThrottle && resp != nil && len(resp.Header) != 0 {
		// A throttle that says how long to wait (Retry-After, or a spent
		// quota's reset) is its hold's to keep; one that announces a
		// quota with room left says nothing of how fast to go.
		if sig := readSignals(resp.Header, true, now); sig.hasWait {
			kind = rateNeutral
		}
	}
	if s == nil {
		if s = t.rate.state(t.keyAfter(a), kind == rateThrottle, now); s == nil {
			return
		}
	}
	if s.answered(&t.rate.cfg, kind, a.rateGen, now) {
		t.rate.sleep(s)
	}
}

// mayLearn reports whether attempt a may teach its host's rate anything:
// it took a token, some host is awake, or its status may be a throttle.
// While every host sleeps, a response below 400 costs this and no more.
func (r *adaptive) mayLearn(a *attempt) bool {
	return a.rate != nil || (a.resp != nil && a.resp.StatusCode >= 400) || r.hosts.n.Load() != 0
}

// keyAfter returns the host key of attempt a, which has been answered: a
// panic of WithHoldKey's function closes a's response first, which nobody
// will read.
func (t *Transport) keyAfter(a *attempt) hostKey {
	if t.holdKey == nil {
		return hostKeyOf(a.out.URL)
	}
	defer func() {
		if p := recover(); p != nil {
			if a.resp != nil {
				a.resp.Body.Close()
			}
			panic(p)
		}
	}()
	return t.hostKey(a.out)
}

// throttles reports whether a response is a host throttling by its status:
// 429, 503, or a 403 that is a rate limit (see throttled).
func throttles(resp *http.Response) bool {
	if resp == nil {
		return false
	}
	code := resp.StatusCode
	return code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable || throttled(resp)
}
