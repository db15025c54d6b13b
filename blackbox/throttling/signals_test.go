package throttling_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
)

var wide = retryhttp.Policy{MaxAttempts: 3, MaxRetryAfter: 10 * time.Minute}

// TestPrecedenceOfWaitSignals: each signal alone, then all of them with the
// more important ones removed one by one.
func TestPrecedenceOfWaitSignals(t *testing.T) {
	s := time.Second
	all := [][2]string{
		{"Retry-After", "10"},
		{"Retry-After-Ms", "20000"},
		{"X-Ms-Retry-After-Ms", "30000"},
		{"RateLimit", `"default";r=0;t=40`},
		{"X-RateLimit-Remaining", "0"}, {"X-RateLimit-Reset", "50"},
		{"RateLimit-Remaining", "0"}, {"RateLimit-Reset", "55"},
	}
	want := []time.Duration{10 * s, 20 * s, 30 * s, 40 * s, 50 * s, 50 * s, 55 * s, 55 * s}
	for _, status := range []int{429, 503} {
		for from := 0; from < len(all); from++ {
			if from == 5 || from == 7 {
				continue // the second field of a pair
			}
			h := http.Header{}
			for _, kv := range all[from:] {
				h.Set(kv[0], kv[1])
			}
			t.Run(strconv.Itoa(status)+"/from "+all[from][0], func(t *testing.T) {
				w, server, retried, _ := firstWait(t, status, h, wide)
				assert.True(t, retried)
				assert.True(t, server, "a server wait")
				assert.GreaterOrEqual(t, w, want[from])
				assert.LessOrEqual(t, w, want[from]+want[from]/10)
			})
		}
	}
}

// TestEpochVersusRelativeReset: X-RateLimit-Reset >= 1e9 is epoch seconds.
func TestEpochVersusRelativeReset(t *testing.T) {
	in30s := time.Now().Add(30 * time.Second).Unix()
	cases := []struct {
		reset string
		want  time.Duration // -1: too long (not retried)
		epoch bool          // want is measured from the reset instant, not from now
	}{
		{strconv.FormatInt(in30s, 10), 0, true},
		{"999999999", -1, false},      // relative: 31 years
		{"1000000000", 0, false},      // epoch: 2001, in the past
		{"7", 7 * time.Second, false}, // relative
	}
	for _, c := range cases {
		t.Run(c.reset, func(t *testing.T) {
			before := time.Now()
			w, server, retried, reason := firstWait(t, 429, hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", c.reset), wide)
			after := time.Now()
			if c.want < 0 {
				assert.False(t, retried)
				assert.Equal(t, retryhttp.ReasonRetryAfter, reason)
				return
			}
			assert.True(t, retried)
			assert.True(t, server)
			assert.GreaterOrEqual(t, w, time.Duration(0))
			lo, hi := c.want, c.want
			if c.epoch {
				// Decided between before and after: however long that took,
				// the wait ends at the reset, not a fixed 30 s from the
				// table's making.
				reset := time.Unix(in30s, 0)
				lo, hi = reset.Sub(after), reset.Sub(before)
			}
			assert.GreaterOrEqual(t, w, lo-time.Second)
			assert.LessOrEqual(t, w, hi+hi/10+time.Second)
		})
	}
}

// TestMalformedSignalsAreIgnored: every malformed value leaves the backoff
// in charge (no server wait), never panics, never a negative wait.
func TestMalformedSignalsAreIgnored(t *testing.T) {
	p := retryhttp.Policy{MaxAttempts: 3, BaseDelay: 10 * time.Millisecond, MaxDelay: 20 * time.Millisecond, MaxRetryAfter: 10 * time.Minute}
	cases := map[string]http.Header{
		"ms negative":          hdr("Retry-After-Ms", "-5"),
		"ms decimal":           hdr("Retry-After-Ms", "1.5"),
		"ms plus":              hdr("Retry-After-Ms", "+3"),
		"ms inner space":       hdr("Retry-After-Ms", "1 000"),
		"ms hex":               hdr("Retry-After-Ms", "0x10"),
		"ms empty":             hdr("Retry-After-Ms", ""),
		"x-ms negative":        hdr("X-Ms-Retry-After-Ms", "-1"),
		"x-ms exp":             hdr("X-Ms-Retry-After-Ms", "1e3"),
		"RA negative":          hdr("Retry-After", "-5"),
		"RA decimal":           hdr("Retry-After", "1.5"),
		"RA plus":              hdr("Retry-After", "+3"),
		"RL invalid sf":        hdr("RateLimit", `"default";r=0;t=5,`),
		"RL unclosed string":   hdr("RateLimit", `"default;r=0;t=5`),
		"RL decimal t":         hdr("RateLimit", `"default";r=0;t=5.0`),
		"RL negative t":        hdr("RateLimit", `"default";r=0;t=-5`),
		"RL bool r":            hdr("RateLimit", `"default";r=?0;t=5`),
		"RL string t":          hdr("RateLimit", `"default";r=0;t="5"`),
		"RL inner list":        hdr("RateLimit", `("default");r=0;t=5`),
		"RL no t":              hdr("RateLimit", `"default";r=0`),
		"RL 16 digits":         hdr("RateLimit", `"default";r=0;t=1000000000000000`),
		"XRL remaining neg":    hdr("X-RateLimit-Remaining", "-0", "X-RateLimit-Reset", "5"),
		"XRL reset plus":       hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "+5"),
		"XRL reset decimal":    hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "5.5"),
		"XRL reset negative":   hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "-5"),
		"XRL remaining dec":    hdr("X-RateLimit-Remaining", "0.0", "X-RateLimit-Reset", "5"),
		"legacy reset neg":     hdr("RateLimit-Remaining", "0", "RateLimit-Reset", "-5"),
		"legacy remaining +0":  hdr("RateLimit-Remaining", "+0", "RateLimit-Reset", "5"),
		"RL remaining nonzero": hdr("RateLimit", `"default";r=3;t=5`),
		"XRL remaining 1":      hdr("X-RateLimit-Remaining", "1", "X-RateLimit-Reset", "5"),
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			w, server, retried, _ := firstWait(t, 429, h, p)
			assert.True(t, retried)
			assert.False(t, server, "ignored: the backoff decides (wait %v)", w)
			assert.GreaterOrEqual(t, w, time.Duration(0))
			assert.LessOrEqual(t, w, 20*time.Millisecond)
		})
	}
}

// TestMultipleFieldLinesAreMalformed: a singleton field sent twice is
// "v1, v2" (RFC 9110 5.3), not a plain integer: ignored, not read as its
// first line.
func TestMultipleFieldLinesAreMalformed(t *testing.T) {
	p := retryhttp.Policy{MaxAttempts: 3, BaseDelay: 10 * time.Millisecond, MaxDelay: 20 * time.Millisecond, MaxRetryAfter: 10 * time.Minute}
	cases := map[string]http.Header{
		"Retry-After":     hdr("Retry-After", "1", "Retry-After", "30"),
		"Retry-After-Ms":  hdr("Retry-After-Ms", "100", "Retry-After-Ms", "30000"),
		"X-RateLimit":     hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1", "X-RateLimit-Reset", "30"),
		"RateLimit-Reset": hdr("RateLimit-Remaining", "0", "RateLimit-Reset", "1", "RateLimit-Reset", "30"),
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			w, server, _, _ := firstWait(t, 429, h, p)
			assert.False(t, server, "two field lines of a singleton field are malformed, yet read as the first (wait %v)", w)
		})
	}
}

// TestHugeValuesNeverOverflow: the biggest values give no negative wait;
// above MaxRetryAfter the response is returned at once.
func TestHugeValuesNeverOverflow(t *testing.T) {
	cases := map[string]http.Header{
		"RA":        hdr("Retry-After", "99999999999999999999999999"),
		"ms":        hdr("Retry-After-Ms", "99999999999999999999999999"),
		"x-ms":      hdr("X-Ms-Retry-After-Ms", "9223372036854775807"),
		"RL":        hdr("RateLimit", `"default";r=0;t=999999999999999`),
		"XRL epoch": hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "99999999999999999999999999"),
		"XRL max":   hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "9223372036854775807"),
		"legacy":    hdr("RateLimit-Remaining", "0", "RateLimit-Reset", "9223372036854775807"),
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			// Not retried, for MaxRetryAfter: returned at once (no wait).
			w, _, retried, reason := firstWait(t, 429, h, retryhttp.Policy{MaxRetryAfter: time.Minute})
			assert.False(t, retried)
			assert.Equal(t, retryhttp.ReasonRetryAfter, reason, "the wait passes MaxRetryAfter")
			assert.GreaterOrEqual(t, w, time.Duration(0))
		})
	}
}

// TestRateLimitSplitOverFieldLines: RFC 8941 lists may be split over
// several field lines; the most restrictive policy counts.
func TestRateLimitSplitOverFieldLines(t *testing.T) {
	h := http.Header{"Ratelimit": {`"burst";r=5;t=2`, `"day";r=0;t=9`}}
	w, server, retried, _ := firstWait(t, 429, h, wide)
	assert.True(t, retried)
	assert.True(t, server)
	assert.GreaterOrEqual(t, w, 9*time.Second)
}
