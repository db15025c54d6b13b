package retryhttp

import (
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

// FuzzReadSignals checks that no value of any of the fields makes the
// reading panic or yield a negative wait, and that a plain integer in
// retry-after-ms is read as such.
func FuzzReadSignals(f *testing.F) {
	f.Add("7", "1500", `"default";r=0;t=30`, `"default";q=50;w=60`, "0", "1795000000", "")
	f.Add("", "", `"a";r=1;t=1, "b";r=0;t=9`, "", "", "", "12")
	f.Add("Fri, 27 Nov 2026 12:00:30 GMT", "-1", `(`, `"x";q=-1`, "00", "99999999999999999999", " 3 ")
	f.Fuzz(func(t *testing.T, retryAfter, ms, rateLimit, policy, remaining, reset, legacyReset string) {
		h := http.Header{}
		set := func(k, v string) {
			if v != "" {
				h[k] = []string{v}
			}
		}
		set(hRetryAfter, retryAfter)
		set(hRetryAfterMs, ms)
		set(hRateLimit, rateLimit)
		set(hRateLimitPolicy, policy)
		set(hXRateLimitRemaining, remaining)
		set(hXRateLimitReset, reset)
		set(hRateLimitRemaining, remaining)
		set(hRateLimitReset, legacyReset)
		now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
		s := readSignals(h, true, now)
		if s.wait < 0 || s.reset < 0 || (s.quota && s.remaining < 0) {
			t.Fatalf("negative: %+v", s)
		}
		if retryAfter == "" && s.hasWait && isDigits(ms) && ms != "" && len(ms) < 15 {
			n, _ := strconv.ParseInt(ms, 10, 64)
			if s.wait != time.Duration(n)*time.Millisecond {
				t.Fatalf("retry-after-ms %q read as %v", ms, s.wait)
			}
		}
		_ = throttled(&http.Response{StatusCode: http.StatusForbidden, Header: h})
	})
}

// BenchmarkReadSignalsOnA200 is what every response pays for the host hold
// (the README's Cost section): a 200 with the usual headers and no quota
// field, looked at for one.
func BenchmarkReadSignalsOnA200(b *testing.B) {
	h := http.Header{"Content-Type": {"text/plain"}, "Date": {"Fri, 27 Nov 2026 10:00:00 GMT"}, "Content-Length": {"2"}}
	now := time.Now()
	for b.Loop() {
		if s := readSignals(h, false, now); s.quota || s.hasWait {
			b.Fatal("a quota or a wait in a 200 without any")
		}
	}
}
