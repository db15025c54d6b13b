package retryhttp

import (
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
)

// parseRetryAfter returns the wait that a Retry-After value asks for, counted
// from now (RFC 9110 §10.2.3: Retry-After = HTTP-date / delay-seconds). Both
// forms are accepted: delay-seconds, a run of decimal digits, and an HTTP-date
// in any of the three formats of http.ParseTime. A date in the past asks for
// no wait. ok is false when v is neither form; the caller then ignores it. A
// number too large for a time.Duration saturates instead of wrapping.
func parseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = trimOWS(v)
	if v == "" {
		return 0, false
	}
	if isDigits(v) {
		const maxSeconds = math.MaxInt64 / int64(time.Second)
		var secs int64
		for i := 0; i < len(v); i++ {
			secs = secs*10 + int64(v[i]-'0')
			if secs > maxSeconds {
				return math.MaxInt64, true
			}
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d = t.Sub(now); d < 0 {
		d = 0
	}
	return d, true
}

// trimOWS strips the optional white space (space and tab) around a field value.
func trimOWS(s string) string { return strings.Trim(s, " \t") }

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// jitteredBefore returns retryAfterWait's wait for asked, with its jitter
// kept within half of what is left before the deadline (the caller made
// sure that asked itself ends before it), so that the requests told one
// instant still come back spread out, and still have time to be answered.
func jitteredBefore(asked, base time.Duration, r *rand.Rand, now, deadline time.Time, hasDeadline bool) time.Duration {
	spread := retryAfterSpread(asked, base)
	if hasDeadline {
		spread = max(0, min(spread, deadline.Sub(now.Add(asked))/2))
	}
	if asked > math.MaxInt64-spread {
		return math.MaxInt64
	}
	return asked + uniform(r, 0, spread)
}

// maxRetryAfterExtra caps the floor of the random extra added to a
// Retry-After wait, so a large BaseDelay does not stretch a short asked wait.
const maxRetryAfterExtra = time.Second

// retryAfterSpread is how much later than asked a retry may come back: a
// tenth of asked, and at least min(base, 1s).
func retryAfterSpread(asked, base time.Duration) time.Duration {
	return max(asked/10, min(base, maxRetryAfterExtra))
}

// retryAfterWait returns the wait before a retry that the server asked to
// come back after asked: the asked wait plus a uniform random extra in
// [0, max(asked/10, min(base, 1s))]. Clients told the same instant (an
// HTTP-date, or "Retry-After: 0" to a whole fleet) then come back spread out
// rather than in lockstep, and none comes back early. It never overflows.
func retryAfterWait(asked, base time.Duration, r *rand.Rand) time.Duration {
	spread := retryAfterSpread(asked, base)
	if asked > math.MaxInt64-spread {
		return math.MaxInt64
	}
	return asked + uniform(r, 0, spread)
}
