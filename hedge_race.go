package retryhttp

// collect waits for the hedges of attempt a, whose first copy answered,
// until a copy wins or every copy has answered. It leaves in a the
// winner's outcome or, when all failed, the outcome of the last to answer
// (of the last that asked for a wait, if any did), and the other copies in
// a.others: one that lost the race with ErrHedgeLost. Every copy's host
// has learned from its response by then, and the Classifier has been asked
// once about each response: a keeps its decision about the one it holds. A
// panic in the Classifier, here or in a hedge's goroutine, propagates from
// here once every copy is canceled and closed.
func (h *hedgeRound) collect(c *call, a *attempt) {
	copies, result, won, throttled := h.settle(a)
	c.noHedge = c.noHedge || throttled
	first := copies[0]
	out := a.out
	*a = result.a // its Held too: only the first copy waited for its host
	a.out = out   // the attempt's request, as the gate readied it, for the next one
	if result == first {
		a.resp = h.first.releaseWith(a.resp)
	} else {
		if won && h.t.counted {
			h.t.count(c.ctx, event{kind: EventHedgeWon, method: c.method, attempt: a.number})
		}
		h.first.cancel(nil)
		if a.resp != nil {
			a.resp.Body = cancelOnClose(a.resp.Body, result.cancel)
		} else {
			result.cancel(nil)
		}
	}
	a.others = make([]attempt, 0, len(copies)-1)
	for _, cp := range copies {
		if cp == result {
			continue
		}
		if cp.done && cp.a.resp != nil {
			cp.a.resp.Body.Close() // an answer nobody will read
		}
		if !cp.done || cp.lost {
			cp.a.resp, cp.a.err = nil, ErrHedgeLost // canceled when another copy won
		}
		if cp != first {
			cp.cancel(nil) // release the hedge's context
		}
		if lat := h.t.hedge.latencies; cp.a.resp != nil && lat != nil {
			lat.observe(hostKeyOf(cp.a.out.URL), cp.a.took)
		}
		a.others = append(a.others, cp.a)
	}
}

// settle takes the first copy's outcome from a, judges it, and waits for
// the race to end: a winner, or every copy answered. It returns the copies
// (the first one first), the one whose outcome the attempt takes, whether
// it won, and whether a copy asked for a wait. A panic of the base or of
// the Classifier is raised here, once every copy is canceled and closed.
func (h *hedgeRound) settle(a *attempt) (copies []*hedgeCopy, result *hedgeCopy, won, throttled bool) {
	h.mu.Lock()
	x := h.race
	first := &x.first
	first.a = *a
	first.a.out = &h.firstReq
	first.done, first.lost = true, h.firstLost
	judge := a.resp != nil && x.panicked == nil && !first.lost
	h.mu.Unlock()
	final, panicked := false, any(nil)
	if judge {
		final, panicked = h.judge(&first.a)
	}
	h.mu.Lock()
	h.answeredLocked(first, final, panicked)
	for x.winner == nil && x.inFlight > 0 && x.panicked == nil {
		h.mu.Unlock()
		<-x.wake
		h.mu.Lock()
	}
	x.decided = true
	copies = append([]*hedgeCopy{first}, x.hedges...)
	result = x.winner
	if result == nil {
		// Every copy failed: the last to answer decides, or, when some
		// copy's response asked for a wait, the last of those, whose wait
		// the retry then honors (a copy that failed later without one
		// does not cancel what the server asked).
		now := h.t.now()
		result = lastAnswered(copies, func(cp *hedgeCopy) bool { return asksForWait(cp.a.resp, now) })
		if result == nil {
			result = lastAnswered(copies, func(*hedgeCopy) bool { return true })
		}
	}
	throttled, won, panicked = x.throttled, x.winner != nil, x.panicked
	h.mu.Unlock()
	if panicked != nil {
		for _, cp := range copies {
			if cp.done && cp.a.resp != nil {
				cp.a.resp.Body.Close()
			}
			if cp != first {
				cp.cancel(nil)
			}
		}
		h.first.releaseWith(nil)
		panic(panicked)
	}
	return copies, result, won, throttled
}

// lastAnswered returns the copy that answered last among those for which
// ok is true, or nil.
func lastAnswered(copies []*hedgeCopy, ok func(*hedgeCopy) bool) *hedgeCopy {
	var last *hedgeCopy
	for _, cp := range copies {
		if cp.done && ok(cp) && (last == nil || cp.order > last.order) {
			last = cp
		}
	}
	return last
}
