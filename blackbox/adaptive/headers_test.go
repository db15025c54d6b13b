package adaptive_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Hostile values of the new fields, on a 429 and on a 200 (then a 429):
// no panic, no wait (the retry's, or a hold's) beyond MaxRetryAfter plus
// its jitter, no negative wait, and RoundTrip returns within its bound.
func TestHostileRateLimitFieldsNeverWaitBeyondMaxRetryAfter(t *testing.T) {
	t.Parallel()
	rfc := func(d time.Duration) string { return time.Now().Add(d).Format(time.RFC3339) }
	type kv = [][2]string
	cases := map[string]kv{
		"amz huge":                 {{"x-amz-retry-after", "99999999999999999999999999"}},
		"amz negative":             {{"x-amz-retry-after", "-5"}},
		"amz float":                {{"x-amz-retry-after", "1e3"}},
		"amz two lines":            {{"x-amz-retry-after", "10"}, {"x-amz-retry-after", "20"}},
		"amz 0":                    {{"x-amz-retry-after", "0"}},
		"openai 9999999999h":       {{"x-ratelimit-remaining-requests", "0"}, {"x-ratelimit-reset-requests", "9999999999h"}},
		"openai -1s":               {{"x-ratelimit-remaining-requests", "0"}, {"x-ratelimit-reset-requests", "-1s"}},
		"openai 1h1h":              {{"x-ratelimit-remaining-requests", "0"}, {"x-ratelimit-reset-requests", "1h1h"}},
		"openai 1.5.5s":            {{"x-ratelimit-remaining-requests", "0"}, {"x-ratelimit-reset-requests", "1.5.5s"}},
		"openai many digits":       {{"x-ratelimit-remaining-requests", "0"}, {"x-ratelimit-reset-requests", "0.00000000000000000000000000000000000001s99999999999999999999999999ns"}},
		"openai unicode":           {{"x-ratelimit-remaining-requests", "0"}, {"x-ratelimit-reset-requests", "٣s"}},
		"openai remaining huge":    {{"x-ratelimit-remaining-requests", "99999999999999999999999"}, {"x-ratelimit-reset-requests", "1s"}, {"x-ratelimit-limit-requests", "99999999999999999999999"}},
		"openai tokens only":       {{"x-ratelimit-remaining-tokens", "0"}, {"x-ratelimit-reset-tokens", "5000h"}},
		"openai tokens 300ms":      {{"x-ratelimit-remaining-tokens", "0"}, {"x-ratelimit-reset-tokens", "300ms"}},
		"openai tokens two lines":  {{"x-ratelimit-remaining-tokens", "0"}, {"x-ratelimit-reset-tokens", "1s"}, {"x-ratelimit-reset-tokens", "2s"}},
		"anthropic far future":     {{"anthropic-ratelimit-requests-remaining", "0"}, {"anthropic-ratelimit-requests-reset", "9999-12-31T23:59:59Z"}},
		"anthropic far past":       {{"anthropic-ratelimit-requests-remaining", "0"}, {"anthropic-ratelimit-requests-reset", "0001-01-01T00:00:00Z"}},
		"anthropic offset":         {{"anthropic-ratelimit-requests-remaining", "0"}, {"anthropic-ratelimit-requests-reset", time.Now().Add(300 * time.Millisecond).In(time.FixedZone("", 14*3600)).Format(time.RFC3339Nano)}},
		"anthropic -12:00":         {{"anthropic-ratelimit-requests-remaining", "0"}, {"anthropic-ratelimit-requests-reset", time.Now().Add(time.Hour).In(time.FixedZone("", -12*3600)).Format(time.RFC3339)}},
		"anthropic bad date":       {{"anthropic-ratelimit-requests-remaining", "0"}, {"anthropic-ratelimit-requests-reset", "2024-02-30T00:00:00Z"}},
		"anthropic tokens":         {{"anthropic-ratelimit-input-tokens-remaining", "0"}, {"anthropic-ratelimit-input-tokens-reset", rfc(time.Hour)}, {"anthropic-ratelimit-output-tokens-remaining", "0"}, {"anthropic-ratelimit-output-tokens-reset", rfc(2 * time.Hour)}},
		"anthropic tokens + reqs":  {{"anthropic-ratelimit-requests-remaining", "10"}, {"anthropic-ratelimit-requests-reset", rfc(time.Second)}, {"anthropic-ratelimit-tokens-remaining", "0"}, {"anthropic-ratelimit-tokens-reset", rfc(10 * time.Hour)}},
		"everything at once":       {{"retry-after", "-1"}, {"x-amz-retry-after", "x"}, {"x-ratelimit-remaining-requests", "0"}, {"x-ratelimit-reset-requests", "1h1h"}, {"anthropic-ratelimit-requests-remaining", "0"}, {"anthropic-ratelimit-requests-reset", "9999-12-31T23:59:59Z"}, {"x-ratelimit-remaining-tokens", "0"}, {"x-ratelimit-reset-tokens", "9999999999h"}},
		"requests reset 0, spent":  {{"x-ratelimit-remaining-requests", "0"}, {"x-ratelimit-reset-requests", "0"}},
		"reset hours, remaining 1": {{"x-ratelimit-remaining-requests", "1"}, {"x-ratelimit-reset-requests", "20h"}, {"x-ratelimit-limit-requests", "1"}},
	}
	const maxRA = time.Second
	bound := maxRA + maxRA/10 + 20*time.Millisecond
	for name, fields := range cases {
		for _, first := range []int{http.StatusTooManyRequests, http.StatusOK, http.StatusServiceUnavailable} {
			t.Run(name+"/"+http.StatusText(first), func(t *testing.T) {
				t.Parallel()
				var n atomic.Int32
				srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
					for _, f := range fields {
						w.Header().Add(f[0], f[1])
					}
					switch n.Add(1) {
					case 1:
						w.WriteHeader(first)
					case 2:
						w.WriteHeader(http.StatusTooManyRequests)
					}
				})
				var mu sync.Mutex
				var atts []retryhttp.Attempt
				tr := retryhttp.New(newBase(t), retryhttp.WithBudget(nil),
					retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, MaxRetryAfter: maxRA}),
					retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{}),
					retryhttp.WithObserver(func(a retryhttp.Attempt) { mu.Lock(); atts = append(atts, a); mu.Unlock() }))
				for range 3 {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := get(tr, ctx, srv.URL)
					cancel()
					if err != nil {
						require.True(t, errors.Is(err, retryhttp.ErrThrottled), "%v", err)
					}
				}
				mu.Lock()
				defer mu.Unlock()
				for _, a := range atts {
					assert.GreaterOrEqual(t, a.Wait, time.Duration(0))
					assert.GreaterOrEqual(t, a.Held, time.Duration(0))
					assert.LessOrEqual(t, a.Wait, bound, "attempt %d wait", a.Number)
					assert.LessOrEqual(t, a.Held, bound, "attempt %d held", a.Number)
				}
			})
		}
	}
}

// A 200 that spends a quota of tokens (with the quota of requests beside
// it, as OpenAI and Anthropic send them) holds its host until the reset:
// the next request waits for it, or fails fast past MaxRetryAfter.
func TestA200SpendingTokensHoldsTheHost(t *testing.T) {
	t.Parallel()
	for _, api := range []string{"openai", "anthropic"} {
		t.Run(api, func(t *testing.T) {
			var n atomic.Int32
			var mu sync.Mutex
			var times []time.Time
			srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
				mu.Lock()
				times = append(times, time.Now())
				mu.Unlock()
				h := w.Header()
				if n.Add(1) == 1 {
					if api == "openai" {
						h.Set("x-ratelimit-remaining-requests", "99")
						h.Set("x-ratelimit-reset-requests", "10ms")
						h.Set("x-ratelimit-remaining-tokens", "0")
						h.Set("x-ratelimit-reset-tokens", "1.2s")
					} else {
						h.Set("anthropic-ratelimit-requests-remaining", "99")
						h.Set("anthropic-ratelimit-requests-reset", time.Now().Add(time.Second).UTC().Format(time.RFC3339))
						h.Set("anthropic-ratelimit-output-tokens-remaining", "0")
						h.Set("anthropic-ratelimit-output-tokens-reset", time.Now().Add(2200*time.Millisecond).UTC().Format(time.RFC3339))
					}
				}
			})
			tr := retryhttp.New(newBase(t), retryhttp.WithBudget(nil), retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{}),
				retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, MaxRetryAfter: 5 * time.Second}))
			code, err := get(tr, context.Background(), srv.URL)
			require.NoError(t, err)
			require.Equal(t, 200, code)
			// Past MaxRetryAfter: fails fast.
			short := retryhttp.ContextWithPolicy(context.Background(), retryhttp.Policy{MaxAttempts: 3, MaxRetryAfter: 100 * time.Millisecond})
			_, err = get(tr, short, srv.URL)
			require.ErrorIs(t, err, retryhttp.ErrThrottled)
			// Within it: waits.
			_, err = get(tr, context.Background(), srv.URL)
			require.NoError(t, err)
			mu.Lock()
			defer mu.Unlock()
			require.Len(t, times, 2)
			assert.Greater(t, times[1].Sub(times[0]), time.Second, "held until the tokens' reset")
		})
	}
}
