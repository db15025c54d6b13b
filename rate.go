package retryhttp

import (
	"math"
	"slices"
	"sync"
	"time"
)

// rateState is one awake host's adaptive rate (see AdaptiveRate): a token
// bucket whose rate follows CUBIC's curve, and the measure of the rate the
// host answers at.
type rateState struct {
	key hostKey // the host's, to put it back to sleep
	mu  sync.Mutex

	// gen counts the cuts. A request carries the gen it took its token
	// in: a throttle of one sent before the last cut answers a rate
	// already cut, and does not cut again (as CUBIC cuts once per window
	// of TCP, however many of its segments were lost).
	gen uint32

	// The token bucket: fill tokens per second, at most burst held.
	// tokens is below 0 when requests wait for tokens to come. fill is 0
	// from waking until the first cut: the rate is being measured, and
	// nothing waits.
	fill, burst, tokens float64
	filled              time.Time // when tokens were last topped up

	// The measure: responses in the bucket that began at bucket, and the
	// smoothed rate of the buckets before (0: none yet).
	measured float64
	bucket   time.Time
	count    float64

	// While measuring, before the first cut: the responses since waking,
	// and how many of them were not throttled.
	heard, accepted float64

	// The curve: the rate at the last cut (wmax), the seconds it takes to
	// climb back to it (k), and when the last cut (or the waking) was.
	wmax, k float64
	cutAt   time.Time

	// When the host last throttled (a throttle that did not cut
	// included), and when it last answered, throttle or not (so never
	// before throttledAt): a host sleeps once its last throttle is
	// rateQuiet old (see answered), or its last answer is (see forgotten).
	throttledAt, heardAt time.Time
}

func newRateState(k hostKey, now time.Time) *rateState {
	return &rateState{key: k, gen: 1, bucket: now, cutAt: now, throttledAt: now, heardAt: now}
}

// cutSpacing is the least time between two cuts of a host's rate. Rate
// limits are counted in windows of a second or more: once a window is
// spent, every request of its rest is throttled, however slow the new
// rate, and cutting for each would take the rate far below what the host
// allows.
const cutSpacing = time.Second

// rateKind is what one response teaches a host's rate.
type rateKind uint8

const (
	rateOK       rateKind = iota // not throttled: the rate may grow
	rateThrottle                 // throttled, without saying how much: the rate is cut
	rateNeutral                  // throttled with a wait or quota the hold keeps: counted, nothing more
)

// take takes a token for a request about to be sent, and returns how long
// the request must wait for it (0: at once) and the gen it is sent in.
func (s *rateState) take(now time.Time) (time.Duration, uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fill == 0 {
		return 0, s.gen
	}
	s.refillLocked(now)
	s.tokens--
	if s.tokens >= 0 {
		return 0, s.gen
	}
	w := math.Ceil(-s.tokens / s.fill * float64(time.Second))
	if w >= math.MaxInt64 { // a MinRate so small that the wait has no end
		return math.MaxInt64, s.gen
	}
	return time.Duration(w), s.gen
}

// tryTake takes a token when one is there now, for a hedge: ok is false
// when the request would have to wait.
func (s *rateState) tryTake(now time.Time) (gen uint32, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fill == 0 {
		return s.gen, true
	}
	s.refillLocked(now)
	if s.tokens < 1 {
		return 0, false
	}
	s.tokens--
	return s.gen, true
}

// giveBack returns the token of a request that was not sent after all.
func (s *rateState) giveBack() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fill != 0 {
		s.tokens = min(s.tokens+1, s.burst)
	}
}

func (s *rateState) refillLocked(now time.Time) {
	if d := now.Sub(s.filled); d > 0 {
		s.tokens = min(s.burst, s.tokens+d.Seconds()*s.fill)
		s.filled = now
	}
}

// answered learns from a response of the host to a request sent in gen
// (0: before the host woke), and reports whether the host may sleep now:
// it has not throttled for rateQuiet, and its rate no longer holds
// anything back (it is twice what the host answers at, or more), or it
// was never cut.
func (s *rateState) answered(cfg *AdaptiveRate, kind rateKind, gen uint32, now time.Time) (sleep bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.heardAt = now
	if kind == rateThrottle {
		s.throttledAt = now
	}
	s.measureLocked(cfg, now)
	if s.fill == 0 {
		s.heard++
		if kind == rateOK {
			s.accepted++
		}
	}
	switch {
	case kind == rateNeutral:
		return false
	case kind == rateThrottle:
		if gen == s.gen && s.measured > 0 && now.Sub(s.cutAt) >= cutSpacing {
			s.cutLocked(cfg, now)
		}
		return false
	case s.fill == 0: // measuring, not cut yet
		return now.Sub(s.throttledAt) >= rateQuiet
	}
	t := now.Sub(s.cutAt).Seconds() - s.k
	curve := cfg.Scale*t*t*t + s.wmax
	s.setRateLocked(cfg, min(curve, 2*s.measured), now)
	return curve >= 2*s.measured && now.Sub(s.throttledAt) >= rateQuiet
}

// forgotten reports whether the host has not answered for rateQuiet:
// nothing is sent to it any more, and its rate may sleep without a
// response to say so.
func (s *rateState) forgotten(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return now.Sub(s.heardAt) >= rateQuiet
}

// cutLocked cuts the rate to Beta of what the host was sent at: the rate
// measured, or the bucket's own rate when that is less. The first cut
// after waking starts from the share of that rate the host accepted while
// it was measured: a host sent three times what it allows is cut to Beta
// of what it allows at once, not in four cuts over four seconds.
func (s *rateState) cutLocked(cfg *AdaptiveRate, now time.Time) {
	r := s.measured
	if s.fill != 0 {
		r = min(r, s.fill)
	} else if s.heard > 0 {
		r *= s.accepted / s.heard
	}
	s.wmax, s.cutAt = r, now
	s.k = math.Cbrt(r * (1 - cfg.Beta) / cfg.Scale)
	s.gen++
	s.setRateLocked(cfg, r*cfg.Beta, now)
}

// setRateLocked makes the bucket fill at r tokens per second (MinRate at
// least), holding at most one second's worth, or one token.
func (s *rateState) setRateLocked(cfg *AdaptiveRate, r float64, now time.Time) {
	if s.fill == 0 {
		s.filled = now // the bucket starts empty: pacing starts at once
	} else {
		s.refillLocked(now)
	}
	s.fill = max(r, cfg.MinRate)
	s.burst = max(s.fill, 1)
	s.tokens = min(s.tokens, s.burst)
}

// measureLocked counts a response in the bucket under way, and when that
// bucket has ended, folds its rate into the measured rate: Smoothing of the
// bucket's rate, and the rest of the rate before (the first bucket's rate
// alone, for the first). A silence of several buckets counts as one long
// bucket.
func (s *rateState) measureLocked(cfg *AdaptiveRate, now time.Time) {
	s.count++
	n := now.Sub(s.bucket) / cfg.Interval
	if n < 1 {
		return
	}
	span := n * cfg.Interval
	r := s.count / span.Seconds()
	if s.measured == 0 {
		s.measured = r
	} else {
		s.measured = cfg.Smoothing*r + (1-cfg.Smoothing)*s.measured
	}
	s.bucket, s.count = s.bucket.Add(span), 0
}

// evictRates puts n hosts of m to sleep: those throttled least recently.
func evictRates(m map[hostKey]*rateState, n int) {
	type candidate struct {
		key hostKey
		at  time.Time
	}
	all := make([]candidate, 0, len(m))
	for key, s := range m {
		s.mu.Lock()
		all = append(all, candidate{key, s.throttledAt})
		s.mu.Unlock()
	}
	slices.SortFunc(all, func(a, b candidate) int { return a.at.Compare(b.at) })
	for _, c := range all[:min(n, len(all))] {
		delete(m, c.key)
	}
}
