package retryhttp

import (
	"math"
	"net/http"
	"time"

	"github.com/dunglas/httpsfv"
)

// The fields a server uses to say when to come back, and how much of its
// quota is left, in their canonical form.
const (
	hRetryAfter          = "Retry-After"           // RFC 9110: seconds or an HTTP-date
	hRetryAfterMs        = "Retry-After-Ms"        // Azure: milliseconds
	hXMsRetryAfterMs     = "X-Ms-Retry-After-Ms"   // Azure: milliseconds
	hRateLimit           = "Ratelimit"             // draft-ietf-httpapi-ratelimit-headers-11: "name";r=R;t=T
	hRateLimitPolicy     = "Ratelimit-Policy"      // the same draft: "name";q=Q;w=W
	hXRateLimitLimit     = "X-Ratelimit-Limit"     // GitHub and many others: the quota
	hXRateLimitRemaining = "X-Ratelimit-Remaining" // what is left of it
	hXRateLimitReset     = "X-Ratelimit-Reset"     // when it refills: epoch seconds (>= 1e9) or seconds from now
	hRateLimitLimit      = "Ratelimit-Limit"       // the older drafts: the quota
	hRateLimitRemaining  = "Ratelimit-Remaining"   // what is left of it
	hRateLimitReset      = "Ratelimit-Reset"       // seconds from now
)

// epochSeconds is where X-RateLimit-Reset stops being seconds from now and
// becomes seconds since the epoch (2001-09-09), as GitHub sends it.
const epochSeconds = 1_000_000_000

// signals is what one response says about the server's limits, read once.
type signals struct {
	// wait is how long the server asks the request to wait before it comes
	// back, from the first field present and well formed, in this order:
	// Retry-After, retry-after-ms, x-ms-retry-after-ms, RateLimit with r=0,
	// X-RateLimit-Reset with X-RateLimit-Remaining: 0, RateLimit-Reset with
	// RateLimit-Remaining: 0. hasWait says whether there is one; retryAfter
	// whether it is Retry-After's, which takes precedence over the rest and
	// is the only one a 503 has for its own request alone.
	wait       time.Duration
	hasWait    bool
	retryAfter bool

	// The host's quota, when the response announces one: remaining
	// requests (0: spent) until reset, from now; limit is the quota per
	// window, or -1.
	quota     bool
	remaining int64
	reset     time.Duration
	limit     int64
}

// spent reports whether the response says the host's quota is spent.
func (s *signals) spent() bool { return s.quota && s.remaining == 0 }

// announcesQuota reports whether h has a field that can announce a quota:
// without one, a response that is not throttled (429, 403) has nothing to
// teach a host's hold or pacing.
func announcesQuota(h http.Header) bool {
	_, a := h[hRateLimit]
	_, b := h[hXRateLimitRemaining]
	_, c := h[hRateLimitRemaining]
	return a || b || c
}

// readSignals reads the limits a response announces: on any response the
// quota fields, and on a response to retry (full: 429, 503, ...) the wait
// fields too. Malformed values are ignored, as the draft asks: a value is
// malformed unless it is a plain non-negative integer (Retry-After: also an
// HTTP-date; RateLimit: a valid structured field).
func readSignals(h http.Header, full bool, now time.Time) (s signals) {
	s.limit = -1
	if len(h) == 0 {
		return s
	}
	// The quota, from the draft's field, or else GitHub's, or else the
	// older drafts'; a wait from each of them in that order, when spent.
	var q [3]signals
	if v, ok := h[hRateLimit]; ok {
		q[0].readRateLimit(v, h[hRateLimitPolicy])
	}
	q[1].readLegacy(h, hXRateLimitRemaining, hXRateLimitReset, hXRateLimitLimit, true, now)
	q[2].readLegacy(h, hRateLimitRemaining, hRateLimitReset, hRateLimitLimit, false, now)
	for _, c := range q {
		if c.quota {
			s.quota, s.remaining, s.reset, s.limit = true, c.remaining, c.reset, c.limit
			break
		}
	}
	if !full {
		return s
	}
	if v, ok := h[hRetryAfter]; ok && len(v) == 1 {
		s.wait, s.hasWait = parseRetryAfter(v[0], now)
		s.retryAfter = s.hasWait
	}
	for _, name := range [...]string{hRetryAfterMs, hXMsRetryAfterMs} {
		if s.hasWait {
			return s
		}
		if ms, ok := plainInt(h, name); ok {
			s.wait, s.hasWait = scaled(ms, time.Millisecond), true
		}
	}
	for _, c := range q {
		if s.hasWait {
			return s
		}
		if c.spent() {
			s.wait, s.hasWait = c.reset, true
		}
	}
	return s
}

// readRateLimit reads the draft's RateLimit field: a list of policies,
// each with r (remaining) and t (seconds until it refills). The most
// restrictive counts: the one with the least remaining, and of those the
// latest to refill. RateLimit-Policy gives the quota (q) of that policy.
func (s *signals) readRateLimit(values, policy []string) {
	s.limit = -1
	list, err := httpsfv.UnmarshalList(values)
	if err != nil {
		return
	}
	name := ""
	for _, m := range list {
		item, ok := m.(httpsfv.Item)
		if !ok || item.Params == nil {
			continue
		}
		r, rok := nonNegative(item.Params.Get("r"))
		t, tok := nonNegative(item.Params.Get("t"))
		if !rok || !tok {
			continue
		}
		reset := scaled(t, time.Second)
		if !s.quota || r < s.remaining || (r == s.remaining && reset > s.reset) {
			s.quota, s.remaining, s.reset = true, r, reset
			name = policyName(item.Value)
		}
	}
	if !s.quota || len(policy) == 0 {
		return
	}
	policies, err := httpsfv.UnmarshalList(policy)
	if err != nil {
		return
	}
	for _, m := range policies {
		if item, ok := m.(httpsfv.Item); ok && item.Params != nil && policyName(item.Value) == name {
			if q, ok := nonNegative(item.Params.Get("q")); ok {
				s.limit = q
			}
		}
	}
}

// policyName returns a policy's name, a String or a Token.
func policyName(v any) string {
	switch n := v.(type) {
	case string:
		return n
	case httpsfv.Token:
		return string(n)
	}
	return ""
}

// readLegacy reads a Remaining/Reset/Limit triple: GitHub's X-RateLimit-*
// (Reset in epoch seconds, or seconds from now below 10^9, when epoch is
// set) or the older drafts' RateLimit-* (Reset in seconds from now).
func (s *signals) readLegacy(h http.Header, remaining, reset, limit string, epoch bool, now time.Time) {
	s.limit = -1
	r, ok := plainInt(h, remaining)
	if !ok {
		return
	}
	t, ok := plainInt(h, reset)
	if !ok {
		return
	}
	d := scaled(t, time.Second)
	if epoch && t >= epochSeconds {
		d = max(0, time.Unix(min(t, math.MaxInt64/int64(time.Second)/2), 0).Sub(now))
	}
	s.quota, s.remaining, s.reset = true, r, d
	if l, ok := plainInt(h, limit); ok {
		s.limit = l
	}
}

// plainInt returns the field name of h as a plain non-negative integer:
// decimal digits only, around optional white space, on one field line (two
// lines make "1, 30", which is not one). A number too large saturates.
func plainInt(h http.Header, name string) (int64, bool) {
	v, ok := h[name]
	if !ok || len(v) != 1 {
		return 0, false
	}
	s := trimOWS(v[0])
	if s == "" || !isDigits(s) {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if n > (math.MaxInt64-9)/10 {
			return math.MaxInt64, true
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// nonNegative returns a structured-field parameter that is a non-negative
// Integer.
func nonNegative(v any, ok bool) (int64, bool) {
	n, isInt := v.(int64)
	return n, ok && isInt && n >= 0
}

// scaled returns n units without overflowing.
func scaled(n int64, unit time.Duration) time.Duration {
	if n > math.MaxInt64/int64(unit) {
		return math.MaxInt64
	}
	return time.Duration(n) * unit
}
