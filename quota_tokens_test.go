package retryhttp

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTokenQuotasHoldButNeverPace: a quota of tokens (OpenAI's, Anthropic's
// three) counts only when spent, on any response, until its reset (the
// latest of the spent ones); it never becomes the quota a host is paced by.
func TestTokenQuotasHoldButNeverPace(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	tests := []struct {
		name   string
		h      map[string]string
		tokens time.Duration // -1: not spent
	}{
		{"nothing", nil, -1},
		{"OpenAI spent", map[string]string{"X-Ratelimit-Remaining-Tokens": "0", "X-Ratelimit-Reset-Tokens": "1m30s"}, 90 * time.Second},
		{"OpenAI left", map[string]string{"X-Ratelimit-Remaining-Tokens": "1", "X-Ratelimit-Reset-Tokens": "1m30s"}, -1},
		{"OpenAI spent, reset malformed", map[string]string{"X-Ratelimit-Remaining-Tokens": "0", "X-Ratelimit-Reset-Tokens": "1m30"}, -1},
		{"OpenAI spent, reset negative", map[string]string{"X-Ratelimit-Remaining-Tokens": "0", "X-Ratelimit-Reset-Tokens": "-6m0s"}, -1},
		{"OpenAI spent, no reset", map[string]string{"X-Ratelimit-Remaining-Tokens": "0"}, -1},
		{"OpenAI remaining malformed", map[string]string{"X-Ratelimit-Remaining-Tokens": "0.0", "X-Ratelimit-Reset-Tokens": "1s"}, -1},
		{"OpenAI reset huge saturates", map[string]string{"X-Ratelimit-Remaining-Tokens": "0", "X-Ratelimit-Reset-Tokens": "9999999999999999999999s"}, time.Duration(1<<63 - 1)},
		{"Anthropic tokens spent", map[string]string{"Anthropic-Ratelimit-Tokens-Remaining": "0", "Anthropic-Ratelimit-Tokens-Reset": at(40 * time.Second)}, 40 * time.Second},
		{"Anthropic input tokens spent", map[string]string{"Anthropic-Ratelimit-Input-Tokens-Remaining": "0", "Anthropic-Ratelimit-Input-Tokens-Reset": at(3 * time.Second)}, 3 * time.Second},
		{"Anthropic output tokens spent", map[string]string{"Anthropic-Ratelimit-Output-Tokens-Remaining": "0", "Anthropic-Ratelimit-Output-Tokens-Reset": at(5 * time.Second)}, 5 * time.Second},
		{"Anthropic: the latest reset of the spent ones", map[string]string{
			"Anthropic-Ratelimit-Tokens-Remaining": "0", "Anthropic-Ratelimit-Tokens-Reset": at(4 * time.Second),
			"Anthropic-Ratelimit-Input-Tokens-Remaining": "0", "Anthropic-Ratelimit-Input-Tokens-Reset": at(9 * time.Second),
			"Anthropic-Ratelimit-Output-Tokens-Remaining": "7", "Anthropic-Ratelimit-Output-Tokens-Reset": at(30 * time.Second),
		}, 9 * time.Second},
		{"Anthropic reset in the past", map[string]string{"Anthropic-Ratelimit-Tokens-Remaining": "0", "Anthropic-Ratelimit-Tokens-Reset": at(-time.Minute)}, 0},
		{"Anthropic reset malformed", map[string]string{"Anthropic-Ratelimit-Tokens-Remaining": "0", "Anthropic-Ratelimit-Tokens-Reset": "tomorrow"}, -1},
		{"limits alone say nothing", map[string]string{"X-Ratelimit-Limit-Tokens": "160000", "Anthropic-Ratelimit-Tokens-Limit": "96000"}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.h {
				h.Set(k, v)
			}
			for _, full := range []bool{false, true} {
				s := readSignals(h, full, now)
				assert.False(t, s.quota, "a quota of tokens is not a quota of requests")
				assert.Equal(t, tt.tokens >= 0, s.tokensSpent)
				if tt.tokens >= 0 {
					assert.Equal(t, tt.tokens, s.tokensReset)
				}
				// The wait of a response to retry, when nothing else asks for one.
				assert.Equal(t, full && tt.tokens >= 0, s.hasWait)
				if full && tt.tokens >= 0 {
					assert.Equal(t, tt.tokens, s.wait)
				}
			}
		})
	}
}

// TestAnnouncesQuota: a response is read for its quota when it has the
// Remaining field of a quota of requests; the quotas of tokens come with
// those of requests.
func TestAnnouncesQuota(t *testing.T) {
	tests := []struct {
		field string
		want  bool
	}{
		{"Ratelimit", true},
		{"X-Ratelimit-Remaining", true},
		{"Ratelimit-Remaining", true},
		{"X-Ratelimit-Remaining-Requests", true},
		{"Anthropic-Ratelimit-Requests-Remaining", true},
		{"X-Ratelimit-Reset", false},
		{"X-Ratelimit-Remaining-Tokens", false},
		{"Anthropic-Ratelimit-Tokens-Remaining", false},
		{"Retry-After", false},
		{"X-Amz-Retry-After", false},
		{"Content-Type", false},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			assert.Equal(t, tt.want, announcesQuota(http.Header{tt.field: {"0"}, "Date": {"x"}}))
		})
	}
}

// TestTheAPIsFieldsHoldTheHost: through the Transport, OpenAI's and
// Anthropic's spent quotas of requests or of tokens hold the host after a
// 200, and a 429 whose only signal is a spent quota of tokens is retried
// after that quota's reset, and holds the host as long.
func TestTheAPIsFieldsHoldTheHost(t *testing.T) {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		status int // of the first answer; the second is a 200
		h      map[string]string
		hold   time.Duration
	}{
		{"OpenAI requests spent on a 200", http.StatusOK, map[string]string{
			"X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "40s", "X-Ratelimit-Limit-Requests": "50",
			"X-Ratelimit-Remaining-Tokens": "1000", "X-Ratelimit-Reset-Tokens": "1s",
		}, 40 * time.Second},
		{"Anthropic requests spent on a 200", http.StatusOK, map[string]string{
			"Anthropic-Ratelimit-Requests-Remaining": "0", "Anthropic-Ratelimit-Requests-Reset": start.Add(30 * time.Second).Format(time.RFC3339),
			"Anthropic-Ratelimit-Tokens-Remaining": "1000", "Anthropic-Ratelimit-Tokens-Reset": start.Add(time.Second).Format(time.RFC3339),
		}, 30 * time.Second},
		{"OpenAI tokens spent on a 200", http.StatusOK, map[string]string{
			"X-Ratelimit-Remaining-Requests": "10", "X-Ratelimit-Reset-Requests": "1s",
			"X-Ratelimit-Remaining-Tokens": "0", "X-Ratelimit-Reset-Tokens": "1m30s",
		}, 90 * time.Second},
		{"Anthropic input tokens spent on a 200", http.StatusOK, map[string]string{
			"Anthropic-Ratelimit-Requests-Remaining": "10", "Anthropic-Ratelimit-Requests-Reset": start.Add(time.Second).Format(time.RFC3339),
			"Anthropic-Ratelimit-Input-Tokens-Remaining": "0", "Anthropic-Ratelimit-Input-Tokens-Reset": start.Add(15 * time.Second).Format(time.RFC3339),
		}, 15 * time.Second},
		{"OpenAI tokens spent on a 429", http.StatusTooManyRequests, map[string]string{
			"X-Ratelimit-Remaining-Requests": "10", "X-Ratelimit-Reset-Requests": "1s",
			"X-Ratelimit-Remaining-Tokens": "0", "X-Ratelimit-Reset-Tokens": "6m0s",
		}, 6 * time.Minute},
		{"Anthropic output tokens spent on a 429", http.StatusTooManyRequests, map[string]string{
			"Anthropic-Ratelimit-Requests-Remaining": "10", "Anthropic-Ratelimit-Requests-Reset": start.Add(time.Second).Format(time.RFC3339),
			"Anthropic-Ratelimit-Output-Tokens-Remaining": "0", "Anthropic-Ratelimit-Output-Tokens-Reset": start.Add(20 * time.Second).Format(time.RFC3339),
		}, 20 * time.Second},
		{"AWS on a 429", http.StatusTooManyRequests, map[string]string{"X-Amz-Retry-After": "2500"}, 2500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					for k, v := range tt.h {
						w.Header().Set(k, v)
					}
					w.WriteHeader(tt.status)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			tr, clock := newTestTransport(t, WithPolicy(Policy{MaxRetryAfter: time.Hour}))
			for range 2 {
				resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
				require.NoError(t, err)
				readAll(t, resp)
				assert.Equal(t, http.StatusOK, resp.StatusCode)
			}
			// The wait after the 200 (a hold) or the 429 (its retry's wait,
			// which holds the host too), with up to a tenth of jitter.
			waits := clock.recorded()
			require.Len(t, waits, 1, "one wait: the second request is not held again")
			assert.GreaterOrEqual(t, waits[0], tt.hold)
			assert.LessOrEqual(t, waits[0], tt.hold+tt.hold/10+time.Second)
			if tt.status == http.StatusOK {
				assert.Equal(t, int32(2), up.attempts.Load())
			} else {
				assert.Equal(t, int32(3), up.attempts.Load(), "the 429's retry, then the second request")
			}
		})
	}
}
