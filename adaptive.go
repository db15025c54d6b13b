package retryhttp

import (
	"math"
	"strconv"
	"sync/atomic"
	"time"
)

// The defaults of an [AdaptiveRate]: the constants of the AWS SDKs'
// "adaptive" retry mode.
const (
	DefaultAdaptiveBeta      = 0.7
	DefaultAdaptiveScale     = 0.4
	DefaultAdaptiveMinRate   = 0.5
	DefaultAdaptiveSmoothing = 0.8
	DefaultAdaptiveInterval  = 500 * time.Millisecond
)

// AdaptiveRate configures [WithAdaptiveRate]: a send rate per host, for
// servers that throttle without saying how much. Its zero value means the
// defaults, the constants of the AWS SDKs' adaptive retry mode.
//
// A host's rate sleeps until the host throttles: a 429, a 503, a 403 that
// is GitHub's rate limit, or an answer a Classifier calls [Throttled], with
// no Retry-After or quota announced (those the host holds keep: see
// [ErrThrottled]). Awake, the rate is measured (the responses per second the
// host sent back, in Interval's buckets, smoothed), cut to Beta of what was
// measured when the host throttles a request sent at the current rate, and
// grown back along CUBIC's curve while it does not:
//
//	rate(t) = Scale·(t − K)³ + Wmax,  K = ∛(Wmax·(1 − Beta) / Scale)
//
// with Wmax the rate the host last throttled and t the seconds since, never
// above twice the rate measured, nor below MinRate. Every request to the
// host (first attempts, retries and hedges alike) takes a token of the rate
// before it is sent: one that would wait past its context's deadline or its
// Policy's MaxRetryAfter is not sent and fails with an error that
// errors.Is(err, ErrThrottled); a hedge is sent only when a token is there
// at once.
type AdaptiveRate struct {
	// Beta is the share of its measured rate a host keeps when it throttles:
	// in (0, 1). 0 means DefaultAdaptiveBeta (0.7).
	Beta float64
	// Scale is CUBIC's C, how fast the rate grows back: requests per second
	// per second cubed, above 0. 0 means DefaultAdaptiveScale (0.4).
	Scale float64
	// MinRate is the least rate, in requests per second, above 0. 0 means
	// DefaultAdaptiveMinRate (0.5: one request every 2 s).
	MinRate float64
	// Smoothing is the weight of the latest bucket in the measured rate: in
	// (0, 1]. 0 means DefaultAdaptiveSmoothing (0.8).
	Smoothing float64
	// Interval is the length of the buckets the rate is measured in. 0
	// means DefaultAdaptiveInterval (500 ms).
	Interval time.Duration
}

// WithAdaptiveRate gives each host a send rate of its own that slows down
// when the host throttles and grows back while it does not (see
// [AdaptiveRate]). Per host means per scheme, host and port, and per the
// key of [WithHoldKey] when there is one: a throttling host delays nobody
// else. A host that has not throttled costs nothing (no wait, no lock, no
// allocation: one atomic load per request while no host is awake), and a
// host that stops throttling goes back to sleep once its rate has grown to
// twice what it is sent and it has not throttled for rateQuiet (10 s).
// At most 1,024 hosts are awake at once; beyond, those throttled least
// recently sleep first.
//
// A field out of its range makes every RoundTrip fail with a *PolicyError
// naming it. Without this option, requests are sent as fast as the caller
// sends them, held back only by what servers announce.
func WithAdaptiveRate(r AdaptiveRate) Option {
	return optionFunc(func(t *Transport) {
		cfg, field, reason := r.withDefaults()
		if field != "" {
			if t.err == nil {
				t.err = &PolicyError{Field: "AdaptiveRate." + field, Reason: reason}
			}
			return
		}
		t.rate = &adaptive{cfg: cfg}
	})
}

// withDefaults returns r with the defaults in its zero fields, or the
// name of a field out of its range and why.
func (r AdaptiveRate) withDefaults() (cfg AdaptiveRate, field, reason string) {
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	switch {
	case bad(r.Beta) || r.Beta < 0 || r.Beta >= 1:
		return r, "Beta", f(r.Beta) + " is not in (0, 1)"
	case bad(r.Scale) || r.Scale < 0:
		return r, "Scale", f(r.Scale) + " is negative"
	case bad(r.MinRate) || r.MinRate < 0:
		return r, "MinRate", f(r.MinRate) + " is negative"
	case bad(r.Smoothing) || r.Smoothing < 0 || r.Smoothing > 1:
		return r, "Smoothing", f(r.Smoothing) + " is not in (0, 1]"
	case r.Interval < 0:
		return r, "Interval", r.Interval.String() + " is negative"
	}
	if r.Beta == 0 {
		r.Beta = DefaultAdaptiveBeta
	}
	if r.Scale == 0 {
		r.Scale = DefaultAdaptiveScale
	}
	if r.MinRate == 0 {
		r.MinRate = DefaultAdaptiveMinRate
	}
	if r.Smoothing == 0 {
		r.Smoothing = DefaultAdaptiveSmoothing
	}
	if r.Interval == 0 {
		r.Interval = DefaultAdaptiveInterval
	}
	return r, "", ""
}

// adaptive is a Transport's adaptive rates: one per awake host.
type adaptive struct {
	cfg   AdaptiveRate
	hosts hostMap[rateState]
	swept atomic.Int64 // when forgotten hosts were last put to sleep, in Unix nanoseconds
}

// rateQuiet is how long an awake host must go without throttling before
// it may sleep again (see WithAdaptiveRate).
const rateQuiet = 10 * time.Second

// state returns the rate of the host k names, waking it when a throttle
// from it is to be learned. Asked for a host that sleeps, it puts to
// sleep, once per rateQuiet, the hosts nothing was sent to for rateQuiet
// (see sweep).
func (r *adaptive) state(k hostKey, wake bool, now time.Time) *rateState {
	if s := r.hosts.get(k); s != nil || !wake {
		if s == nil {
			r.sweep(now)
		}
		return s
	}
	return r.hosts.getOrAdd(k, maxHosts,
		func() *rateState { return newRateState(k, now) },
		func(m map[hostKey]*rateState) { evictRates(m, maxHosts/8) })
}

// sweep puts to sleep the hosts that have neither throttled nor answered
// for rateQuiet, at most once per rateQuiet: a host the Transport stopped
// sending to would otherwise stay awake, and every request to every host
// would keep paying for the lookups of the awake.
func (r *adaptive) sweep(now time.Time) {
	last := r.swept.Load()
	if now.UnixNano()-last < int64(rateQuiet) || !r.swept.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	if m := r.hosts.m.Load(); m != nil {
		for _, s := range *m {
			if s.forgotten(now) {
				r.sleep(s)
			}
		}
	}
}

// sleep forgets host s's rate: it may sleep.
func (r *adaptive) sleep(s *rateState) { r.hosts.remove(s.key, s) }
