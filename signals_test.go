package retryhttp

import (
	"math"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestReadSignals(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	epoch := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	s := time.Second
	tests := []struct {
		name      string
		h         map[string]string
		wait      time.Duration // -1: none
		quota     bool
		remaining int64
		reset     time.Duration
		limit     int64
	}{
		{"nothing", nil, -1, false, 0, 0, -1},
		{"Retry-After seconds", map[string]string{"Retry-After": "7"}, 7 * s, false, 0, 0, -1},
		{"Retry-After date", map[string]string{"Retry-After": now.Add(30 * s).Format(http.TimeFormat)}, 30 * s, false, 0, 0, -1},
		{"retry-after-ms", map[string]string{"Retry-After-Ms": "1500"}, 1500 * time.Millisecond, false, 0, 0, -1},
		{"x-ms-retry-after-ms", map[string]string{"X-Ms-Retry-After-Ms": "250"}, 250 * time.Millisecond, false, 0, 0, -1},
		{"Retry-After first", map[string]string{"Retry-After": "3", "Retry-After-Ms": "100", "Ratelimit": `"default";r=0;t=30`}, 3 * s, true, 0, 30 * s, -1},
		{"ms before RateLimit", map[string]string{"Retry-After-Ms": "100", "Ratelimit": `"default";r=0;t=30`}, 100 * time.Millisecond, true, 0, 30 * s, -1},
		{"RateLimit r=0", map[string]string{"Ratelimit": `"default";r=0;t=30`}, 30 * s, true, 0, 30 * s, -1},
		{"RateLimit r>0 asks no wait", map[string]string{"Ratelimit": `"default";r=12;t=30`}, -1, true, 12, 30 * s, -1},
		{"RateLimit with its policy", map[string]string{"Ratelimit": `"default";r=12;t=30`, "Ratelimit-Policy": `"default";q=50;w=60`}, -1, true, 12, 30 * s, 50},
		{"RateLimit: the most restrictive policy", map[string]string{"Ratelimit": `"burst";r=5;t=2, "day";r=0;t=3600`, "Ratelimit-Policy": `"burst";q=10;w=2, "day";q=1000;w=86400`}, 3600 * s, true, 0, 3600 * s, 1000},
		{"RateLimit malformed", map[string]string{"Ratelimit": `"default";r=0;t=`}, -1, false, 0, 0, -1},
		{"RateLimit negative", map[string]string{"Ratelimit": `"default";r=0;t=-5`}, -1, false, 0, 0, -1},
		{"RateLimit decimal", map[string]string{"Ratelimit": `"default";r=0;t=1.5`}, -1, false, 0, 0, -1},
		{"GitHub, epoch reset", map[string]string{"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": epoch(3 * s), "X-Ratelimit-Limit": "5000"}, 3 * s, true, 0, 3 * s, 5000},
		{"GitHub, reset in the past", map[string]string{"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": epoch(-3 * s)}, 0, true, 0, 0, -1},
		{"X-RateLimit-Reset in seconds", map[string]string{"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "20"}, 20 * s, true, 0, 20 * s, -1},
		{"X-RateLimit left", map[string]string{"X-Ratelimit-Remaining": "4999", "X-Ratelimit-Reset": epoch(time.Hour)}, -1, true, 4999, time.Hour, -1},
		{"X-RateLimit without a reset", map[string]string{"X-Ratelimit-Remaining": "0"}, -1, false, 0, 0, -1},
		{"X-RateLimit malformed", map[string]string{"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "+3"}, -1, false, 0, 0, -1},
		{"older drafts", map[string]string{"Ratelimit-Remaining": "0", "Ratelimit-Reset": "9", "Ratelimit-Limit": "100"}, 9 * s, true, 0, 9 * s, 100},
		{"RateLimit before GitHub's", map[string]string{"Ratelimit": `"default";r=3;t=10`, "X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "20"}, 20 * s, true, 3, 10 * s, -1},
		{"malformed ms ignored", map[string]string{"Retry-After-Ms": "1e3", "X-Ms-Retry-After-Ms": "40"}, 40 * time.Millisecond, false, 0, 0, -1},
		{"huge saturates", map[string]string{"Retry-After-Ms": "99999999999999999999999"}, time.Duration(1<<63 - 1), false, 0, 0, -1},

		{"x-amz-retry-after", map[string]string{"X-Amz-Retry-After": "2500"}, 2500 * time.Millisecond, false, 0, 0, -1},
		{"x-amz-retry-after huge saturates", map[string]string{"X-Amz-Retry-After": "99999999999999999999999"}, time.Duration(1<<63 - 1), false, 0, 0, -1},
		{"x-amz-retry-after in seconds is malformed", map[string]string{"X-Amz-Retry-After": "2.5"}, -1, false, 0, 0, -1},
		{"x-amz-retry-after negative", map[string]string{"X-Amz-Retry-After": "-5"}, -1, false, 0, 0, -1},
		{"x-ms-retry-after-ms before x-amz-retry-after", map[string]string{"X-Ms-Retry-After-Ms": "40", "X-Amz-Retry-After": "900"}, 40 * time.Millisecond, false, 0, 0, -1},
		{"Retry-After before x-amz-retry-after", map[string]string{"Retry-After": "2", "X-Amz-Retry-After": "900"}, 2 * s, false, 0, 0, -1},
		{"x-amz-retry-after before RateLimit", map[string]string{"X-Amz-Retry-After": "900", "Ratelimit": `"default";r=0;t=30`}, 900 * time.Millisecond, true, 0, 30 * s, -1},
		{"x-amz-retry-after malformed, then RateLimit", map[string]string{"X-Amz-Retry-After": "soon", "Ratelimit": `"default";r=0;t=30`}, 30 * s, true, 0, 30 * s, -1},

		{"OpenAI requests spent", map[string]string{"X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "1m30s", "X-Ratelimit-Limit-Requests": "5000"}, 90 * s, true, 0, 90 * s, 5000},
		{"OpenAI requests left", map[string]string{"X-Ratelimit-Remaining-Requests": "4999", "X-Ratelimit-Reset-Requests": "12ms", "X-Ratelimit-Limit-Requests": "5000"}, -1, true, 4999, 12 * time.Millisecond, 5000},
		{"OpenAI reset 6m0s", map[string]string{"X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "6m0s"}, 6 * time.Minute, true, 0, 6 * time.Minute, -1},
		{"OpenAI reset 0.5s", map[string]string{"X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "0.5s"}, s / 2, true, 0, s / 2, -1},
		{"OpenAI reset 0", map[string]string{"X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "0"}, 0, true, 0, 0, -1},
		{"OpenAI reset negative", map[string]string{"X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "-1s"}, -1, false, 0, 0, -1},
		{"OpenAI reset without a unit", map[string]string{"X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "12"}, -1, false, 0, 0, -1},
		{"OpenAI reset in days", map[string]string{"X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "1d"}, -1, false, 0, 0, -1},
		{"OpenAI reset as an RFC 3339 time", map[string]string{"X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": now.Add(5 * s).Format(time.RFC3339)}, -1, false, 0, 0, -1},
		{"OpenAI reset huge saturates", map[string]string{"X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "99999999999999999999h"}, time.Duration(1<<63 - 1), true, 0, time.Duration(1<<63 - 1), -1},
		{"OpenAI remaining huge saturates", map[string]string{"X-Ratelimit-Remaining-Requests": "99999999999999999999", "X-Ratelimit-Reset-Requests": "1s"}, -1, true, 1<<63 - 1, s, -1},
		{"OpenAI remaining malformed", map[string]string{"X-Ratelimit-Remaining-Requests": "none", "X-Ratelimit-Reset-Requests": "1s"}, -1, false, 0, 0, -1},
		{"OpenAI limit malformed", map[string]string{"X-Ratelimit-Remaining-Requests": "3", "X-Ratelimit-Reset-Requests": "1s", "X-Ratelimit-Limit-Requests": "5k"}, -1, true, 3, s, -1},

		{"Anthropic requests spent", map[string]string{"Anthropic-Ratelimit-Requests-Remaining": "0", "Anthropic-Ratelimit-Requests-Reset": now.Add(20 * s).Format(time.RFC3339), "Anthropic-Ratelimit-Requests-Limit": "1000"}, 20 * s, true, 0, 20 * s, 1000},
		{"Anthropic requests left", map[string]string{"Anthropic-Ratelimit-Requests-Remaining": "999", "Anthropic-Ratelimit-Requests-Reset": now.Add(time.Minute).Format(time.RFC3339)}, -1, true, 999, time.Minute, -1},
		{"Anthropic reset with an offset and a fraction", map[string]string{"Anthropic-Ratelimit-Requests-Remaining": "0", "Anthropic-Ratelimit-Requests-Reset": "2026-11-27T13:00:01.5+01:00"}, 1500 * time.Millisecond, true, 0, 1500 * time.Millisecond, -1},
		{"Anthropic reset in the past", map[string]string{"Anthropic-Ratelimit-Requests-Remaining": "0", "Anthropic-Ratelimit-Requests-Reset": now.Add(-time.Hour).Format(time.RFC3339)}, 0, true, 0, 0, -1},
		{"Anthropic reset far ahead saturates", map[string]string{"Anthropic-Ratelimit-Requests-Remaining": "0", "Anthropic-Ratelimit-Requests-Reset": "9999-12-31T23:59:59Z"}, time.Duration(1<<63 - 1), true, 0, time.Duration(1<<63 - 1), -1},
		{"Anthropic reset as an HTTP-date", map[string]string{"Anthropic-Ratelimit-Requests-Remaining": "0", "Anthropic-Ratelimit-Requests-Reset": now.Add(5 * s).Format(http.TimeFormat)}, -1, false, 0, 0, -1},
		{"Anthropic reset in seconds", map[string]string{"Anthropic-Ratelimit-Requests-Remaining": "0", "Anthropic-Ratelimit-Requests-Reset": "20"}, -1, false, 0, 0, -1},
		{"Anthropic reset without a zone", map[string]string{"Anthropic-Ratelimit-Requests-Remaining": "0", "Anthropic-Ratelimit-Requests-Reset": "2026-11-27T12:00:20"}, -1, false, 0, 0, -1},

		{"GitHub's quota before OpenAI's", map[string]string{"X-Ratelimit-Remaining": "10", "X-Ratelimit-Reset": "20", "X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "1s"}, s, true, 10, 20 * s, -1},
		{"the older drafts' quota before OpenAI's", map[string]string{"Ratelimit-Remaining": "10", "Ratelimit-Reset": "20", "X-Ratelimit-Remaining-Requests": "5", "X-Ratelimit-Reset-Requests": "1s"}, -1, true, 10, 20 * s, -1},
		{"RateLimit's wait before OpenAI's", map[string]string{"Ratelimit": `"default";r=0;t=30`, "X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "1s"}, 30 * s, true, 0, 30 * s, -1},
		{"OpenAI's quota before Anthropic's", map[string]string{"X-Ratelimit-Remaining-Requests": "3", "X-Ratelimit-Reset-Requests": "2s", "Anthropic-Ratelimit-Requests-Remaining": "0", "Anthropic-Ratelimit-Requests-Reset": now.Add(5 * s).Format(time.RFC3339)}, 5 * s, true, 3, 2 * s, -1},
		{"OpenAI's wait before Anthropic's", map[string]string{"X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "2s", "Anthropic-Ratelimit-Requests-Remaining": "0", "Anthropic-Ratelimit-Requests-Reset": now.Add(5 * s).Format(time.RFC3339)}, 2 * s, true, 0, 2 * s, -1},
		{"x-amz-retry-after before OpenAI's", map[string]string{"X-Amz-Retry-After": "300", "X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "2s"}, 300 * time.Millisecond, true, 0, 2 * s, -1},

		{"OpenAI tokens spent: a wait, not a quota", map[string]string{"X-Ratelimit-Remaining-Tokens": "0", "X-Ratelimit-Reset-Tokens": "6m0s", "X-Ratelimit-Limit-Tokens": "160000"}, 6 * time.Minute, false, 0, 0, -1},
		{"OpenAI tokens left: nothing", map[string]string{"X-Ratelimit-Remaining-Tokens": "159976", "X-Ratelimit-Reset-Tokens": "9ms", "X-Ratelimit-Limit-Tokens": "160000"}, -1, false, 0, 0, -1},
		{"requests' wait before tokens'", map[string]string{"X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "1s", "X-Ratelimit-Remaining-Tokens": "0", "X-Ratelimit-Reset-Tokens": "6m0s"}, s, true, 0, s, -1},
		{"tokens spent, requests left: the quota is the requests'", map[string]string{"X-Ratelimit-Remaining-Requests": "10", "X-Ratelimit-Reset-Requests": "1s", "X-Ratelimit-Limit-Requests": "50", "X-Ratelimit-Remaining-Tokens": "0", "X-Ratelimit-Reset-Tokens": "6m0s"}, 6 * time.Minute, true, 10, s, 50},
		{"GitHub's wait before tokens'", map[string]string{"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "20", "Anthropic-Ratelimit-Tokens-Remaining": "0", "Anthropic-Ratelimit-Tokens-Reset": now.Add(time.Minute).Format(time.RFC3339)}, 20 * s, true, 0, 20 * s, -1},
		{"Retry-After before tokens'", map[string]string{"Retry-After": "4", "X-Ratelimit-Remaining-Tokens": "0", "X-Ratelimit-Reset-Tokens": "6m0s"}, 4 * s, false, 0, 0, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.h {
				h.Set(k, v)
			}
			s := readSignals(h, true, now)
			if tt.wait < 0 {
				assert.False(t, s.hasWait, "no wait: got %v", s.wait)
			} else {
				assert.True(t, s.hasWait)
				assert.Equal(t, tt.wait, s.wait)
			}
			assert.Equal(t, tt.quota, s.quota)
			if tt.quota {
				assert.Equal(t, tt.remaining, s.remaining)
				assert.Equal(t, tt.reset, s.reset)
				assert.Equal(t, tt.limit, s.limit)
			}
			quotaOnly := readSignals(h, false, now)
			assert.False(t, quotaOnly.hasWait, "a response not retried reads only the quota")
			assert.Equal(t, s.quota, quotaOnly.quota)
		})
	}
}

// TestFieldNamesAreCanonical: the fields are looked up in the form
// http.Header keeps them in, or they are never found.
func TestFieldNamesAreCanonical(t *testing.T) {
	names := []string{hRetryAfter, hRetryAfterMs, hXMsRetryAfterMs, hXAmzRetryAfter, hRateLimit, hRateLimitPolicy}
	for _, q := range append(requestQuotas[:], tokenQuotas[:]...) {
		names = append(names, q.remaining, q.reset)
		if q.limit != "" {
			names = append(names, q.limit)
		}
	}
	for _, n := range names {
		assert.Equal(t, http.CanonicalHeaderKey(n), n)
	}
}

// FuzzReadSignals checks that no value of any of the fields makes the
// reading panic or yield a negative wait, that a plain integer in
// retry-after-ms or x-amz-retry-after is read as such, and that a quota of
// tokens never becomes the quota.
func FuzzReadSignals(f *testing.F) {
	f.Add("7", "1500", `"default";r=0;t=30`, `"default";q=50;w=60`, "0", "1795000000", "", "", "", "", "")
	f.Add("", "", `"a";r=1;t=1, "b";r=0;t=9`, "", "", "", "12", "", "", "", "")
	f.Add("Fri, 27 Nov 2026 12:00:30 GMT", "-1", `(`, `"x";q=-1`, "00", "99999999999999999999", " 3 ", "", "", "", "")
	f.Add("", "", "", "", "", "", "", "2500", "", "", "")
	f.Add("", "", "", "", "0", "", "", "", "1m30s", "2026-11-27T12:00:20Z", "0")
	f.Add("", "", "", "", "4999", "", "", "x", "0.5s", "2026-11-27T11:00:00Z", "0")
	f.Add("", "", "", "", "", "", "", "99999999999999999999", "-1s", "9999-12-31T23:59:59+01:00", "00")
	f.Add("", "", "", "", "1", "", "", "", "99999999999999999999h1.000000000000000000001ns", "2026-11-27T12:00:01.5+01:00", "")
	f.Fuzz(func(t *testing.T, retryAfter, ms, rateLimit, policy, remaining, reset, legacyReset, amz, duration, rfc3339, tokens string) {
		h := http.Header{}
		set := func(k, v string) {
			if v != "" {
				h[k] = []string{v}
			}
		}
		set(hRetryAfter, retryAfter)
		set(hRetryAfterMs, ms)
		set(hXAmzRetryAfter, amz)
		set(hRateLimit, rateLimit)
		set(hRateLimitPolicy, policy)
		set(hXRateLimitRemaining, remaining)
		set(hXRateLimitReset, reset)
		set(hRateLimitRemaining, remaining)
		set(hRateLimitReset, legacyReset)
		set(hOpenAIRemainingRequests, remaining)
		set(hOpenAIResetRequests, duration)
		set(hAnthropicRequestsRemaining, remaining)
		set(hAnthropicRequestsReset, rfc3339)
		now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
		requests := readSignals(h, true, now)
		for _, q := range tokenQuotas {
			set(q.remaining, tokens)
		}
		set(hOpenAIResetTokens, duration)
		for _, q := range tokenQuotas[1:] {
			set(q.reset, rfc3339)
		}
		s := readSignals(h, true, now)
		if s.wait < 0 || s.reset < 0 || s.tokensReset < 0 || (s.quota && s.remaining < 0) {
			t.Fatalf("negative: %+v", s)
		}
		if s.quota != requests.quota || s.remaining != requests.remaining || s.reset != requests.reset || s.limit != requests.limit {
			t.Fatalf("a quota of tokens became the quota: %+v, without tokens %+v", s, requests)
		}
		if requests.hasWait && (s.wait != requests.wait || !s.hasWait) {
			t.Fatalf("a quota of tokens came before a wait: %+v, without tokens %+v", s, requests)
		}
		if !requests.hasWait && s.tokensSpent && (!s.hasWait || s.wait != s.tokensReset) {
			t.Fatalf("a spent quota of tokens asks for no wait: %+v", s)
		}
		if n, ok := plainInt(h, hOpenAIRemainingTokens); s.tokensSpent && (!ok || n != 0) {
			t.Fatalf("tokens %q read as spent", tokens)
		}
		if q := readSignals(h, false, now); q.hasWait || q.quota != s.quota || q.tokensSpent != s.tokensSpent || q.tokensReset != s.tokensReset {
			t.Fatalf("a response not retried reads the same quota and no wait: %+v, retried %+v", q, s)
		}
		if retryAfter == "" && s.hasWait && isDigits(ms) && ms != "" && len(ms) < 15 {
			n, _ := strconv.ParseInt(ms, 10, 64)
			if s.wait != millis(n) {
				t.Fatalf("retry-after-ms %q read as %v", ms, s.wait)
			}
		}
		if retryAfter == "" && ms == "" && isDigits(amz) && amz != "" && len(amz) < 15 {
			n, _ := strconv.ParseInt(amz, 10, 64)
			if !s.hasWait || s.wait != millis(n) {
				t.Fatalf("x-amz-retry-after %q read as %v", amz, s.wait)
			}
		}
		_ = throttled(&http.Response{StatusCode: http.StatusForbidden, Header: h})
	})
}

// TestParseDuration: OpenAI's resets, in time.ParseDuration's form without
// a sign, saturated rather than failing when too long.
func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration // -1: malformed
	}{
		{"12ms", 12 * time.Millisecond},
		{"1s", time.Second},
		{"6m0s", 6 * time.Minute},
		{"1m30s", 90 * time.Second},
		{"1h2m3s", time.Hour + 2*time.Minute + 3*time.Second},
		{"0.5s", 500 * time.Millisecond},
		{".5s", 500 * time.Millisecond},
		{"1.s", time.Second},
		{"8.64s", 8640 * time.Millisecond},
		{"1.5µs", 1500},
		{"1.5μs", 1500},
		{"7us", 7 * time.Microsecond},
		{"3ns", 3},
		{"0", 0},
		{"0s", 0},
		{" 2s	", 2 * time.Second},
		{"99999999999999999999h", 1<<63 - 1},
		{"2562048h", 1<<63 - 1},
		{"9223372036854775807ns", 1<<63 - 1},
		{"", -1},
		{" ", -1},
		{"12", -1},
		{"00", -1},
		{"-1s", -1},
		{"+1s", -1},
		{"-0s", -1},
		{"1 s", -1},
		{"1d", -1},
		{"s", -1},
		{".s", -1},
		{"1..5s", -1},
		{"1sm", -1},
		{"1e3ms", -1},
		{"1m30", -1},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			d, ok := parseDuration(tt.in)
			assert.Equal(t, tt.want >= 0, ok)
			if tt.want >= 0 {
				assert.Equal(t, tt.want, d)
			}
		})
	}
}

// FuzzParseDuration checks parseDuration against time.ParseDuration: they
// agree on every duration without a sign, except that one too long
// saturates instead of failing.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"12ms", "6m0s", "1m30s", "0.5s", "0", "-1s", "+2h", "1.000000000000000000001ns", "99999999999999999999h", "1.5µs", "3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseDuration(s)
		if ok && d < 0 {
			t.Fatalf("parseDuration(%q) = %v", s, d)
		}
		v := trimOWS(s)
		want, err := time.ParseDuration(v)
		signed := v != "" && (v[0] == '-' || v[0] == '+')
		switch {
		case err == nil && !signed && (!ok || d != want):
			t.Fatalf("parseDuration(%q) = %v, %v; time.ParseDuration: %v", s, d, ok, want)
		case err != nil && ok && d != 1<<63-1:
			t.Fatalf("parseDuration(%q) = %v; time.ParseDuration: %v", s, d, err)
		case signed && ok:
			t.Fatalf("parseDuration(%q) = %v: a sign is malformed", s, d)
		}
	})
}

// BenchmarkReadSignalsOnA200 is what a response read for its limits pays
// when it has none (a 200 without a quota field is read only when
// announcesQuota finds one, so this is the cost of a 429 or 503 without
// any): the usual headers, looked at for every field.
func BenchmarkReadSignalsOnA200(b *testing.B) {
	h := http.Header{"Content-Type": {"text/plain"}, "Date": {"Fri, 27 Nov 2026 10:00:00 GMT"}, "Content-Length": {"2"}}
	now := time.Now()
	for b.Loop() {
		if s := readSignals(h, false, now); s.quota || s.hasWait {
			b.Fatal("a quota or a wait in a 200 without any")
		}
	}
}

// millis is n milliseconds, saturated at the longest Duration.
func millis(n int64) time.Duration {
	if n > math.MaxInt64/int64(time.Millisecond) {
		return math.MaxInt64
	}
	return time.Duration(n) * time.Millisecond
}
