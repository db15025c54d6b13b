package retryhttp

import (
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
	hXAmzRetryAfter      = "X-Amz-Retry-After"     // AWS: milliseconds

	// OpenAI: a quota of requests and one of tokens; resets are durations
	// from now in Go's form (12ms, 1s, 6m0s).
	hOpenAIRemainingRequests = "X-Ratelimit-Remaining-Requests"
	hOpenAIResetRequests     = "X-Ratelimit-Reset-Requests"
	hOpenAILimitRequests     = "X-Ratelimit-Limit-Requests"
	hOpenAIRemainingTokens   = "X-Ratelimit-Remaining-Tokens"
	hOpenAIResetTokens       = "X-Ratelimit-Reset-Tokens"

	// Anthropic: a quota of requests and three of tokens; resets are RFC
	// 3339 times.
	hAnthropicRequestsRemaining     = "Anthropic-Ratelimit-Requests-Remaining"
	hAnthropicRequestsReset         = "Anthropic-Ratelimit-Requests-Reset"
	hAnthropicRequestsLimit         = "Anthropic-Ratelimit-Requests-Limit"
	hAnthropicTokensRemaining       = "Anthropic-Ratelimit-Tokens-Remaining"
	hAnthropicTokensReset           = "Anthropic-Ratelimit-Tokens-Reset"
	hAnthropicInputTokensRemaining  = "Anthropic-Ratelimit-Input-Tokens-Remaining"
	hAnthropicInputTokensReset      = "Anthropic-Ratelimit-Input-Tokens-Reset"
	hAnthropicOutputTokensRemaining = "Anthropic-Ratelimit-Output-Tokens-Remaining"
	hAnthropicOutputTokensReset     = "Anthropic-Ratelimit-Output-Tokens-Reset"
)

// resetForm is how a quota's Reset field says when the quota refills.
type resetForm uint8

const (
	resetSeconds  resetForm = iota // seconds from now, a plain integer
	resetEpoch                     // seconds since the epoch when >= epochSeconds, else seconds from now
	resetDuration                  // a duration from now in Go's form: 12ms, 1m30s, 0.5s
	resetTime                      // an RFC 3339 time
)

// quotaFields names the Remaining, Reset and Limit fields of one quota
// (Limit: "" when it is not read), and the form of its Reset.
type quotaFields struct {
	remaining, reset, limit string
	form                    resetForm
}

// requestQuotas are the quotas of requests a response may announce besides
// the draft's RateLimit (which comes first), in their order of precedence.
var requestQuotas = [...]quotaFields{
	{hXRateLimitRemaining, hXRateLimitReset, hXRateLimitLimit, resetEpoch},
	{hRateLimitRemaining, hRateLimitReset, hRateLimitLimit, resetSeconds},
	{hOpenAIRemainingRequests, hOpenAIResetRequests, hOpenAILimitRequests, resetDuration},
	{hAnthropicRequestsRemaining, hAnthropicRequestsReset, hAnthropicRequestsLimit, resetTime},
}

// tokenQuotas are the quotas of tokens a response may announce. A request's
// cost in tokens is not known before it is answered, so they cannot pace
// requests: they count only when spent (Remaining: 0), until their Reset.
var tokenQuotas = [...]quotaFields{
	{hOpenAIRemainingTokens, hOpenAIResetTokens, "", resetDuration},
	{hAnthropicTokensRemaining, hAnthropicTokensReset, "", resetTime},
	{hAnthropicInputTokensRemaining, hAnthropicInputTokensReset, "", resetTime},
	{hAnthropicOutputTokensRemaining, hAnthropicOutputTokensReset, "", resetTime},
}

// epochSeconds is where X-RateLimit-Reset stops being seconds from now and
// becomes seconds since the epoch (2001-09-09), as GitHub sends it.
const epochSeconds = 1_000_000_000

// signals is what one response says about the server's limits, read once.
type signals struct {
	// wait is how long the server asks the request to wait before it comes
	// back, from the first field present and well formed, in this order:
	// Retry-After, retry-after-ms, x-ms-retry-after-ms, x-amz-retry-after,
	// then the Reset of the first spent quota of requests (RateLimit with
	// r=0, then in requestQuotas' order), then tokensReset when a quota of
	// tokens is spent. hasWait says whether there is one; retryAfter
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

	// tokensSpent says that a quota of tokens (tokenQuotas) is spent:
	// the host can serve no request for tokensReset from now (the latest
	// Reset of the spent ones), whatever requests its quota has left. It
	// is read on any response, like the quota, but never sets it: it is a
	// hold, not a rate to pace by.
	tokensSpent bool
	tokensReset time.Duration
}

// spent reports whether the response says the host's quota is spent.
func (s *signals) spent() bool { return s.quota && s.remaining == 0 }

// announcesQuota reports whether h has a field that can announce a quota:
// without one, a response that is not throttled (429, 403) has nothing to
// teach a host's hold or pacing. It looks for the Remaining field of each
// quota of requests, and stops at the first found; not for the quotas of
// tokens, which OpenAI and Anthropic send only beside their quota of
// requests (a quota of tokens sent alone is learned from the 429 it ends
// in).
func announcesQuota(h http.Header) bool {
	if _, ok := h[hRateLimit]; ok {
		return true
	}
	for i := range requestQuotas {
		if _, ok := h[requestQuotas[i].remaining]; ok {
			return true
		}
	}
	return false
}

// readSignals reads the limits a response announces: on any response the
// quota fields, and on a response to retry (full: 429, 503, ...) the wait
// fields too. Malformed values are ignored, as the draft asks: a value is
// malformed unless it is a plain non-negative integer (Retry-After: also an
// HTTP-date; RateLimit: a valid structured field; OpenAI's resets: a
// duration without a sign; Anthropic's: an RFC 3339 time), and a number
// too large saturates. A reset in the past is a reset of 0.
func readSignals(h http.Header, full bool, now time.Time) (s signals) {
	s.limit = -1
	if len(h) == 0 {
		return s
	}
	// The quota, from the draft's field, or else GitHub's, the older
	// drafts', OpenAI's or Anthropic's, in that order; a wait from each of
	// them in that order, when spent.
	var q [1 + len(requestQuotas)]signals
	if v, ok := h[hRateLimit]; ok {
		q[0].readRateLimit(v, h[hRateLimitPolicy])
	}
	for i := range requestQuotas {
		q[i+1].readQuota(h, &requestQuotas[i], now)
	}
	for _, c := range q {
		if c.quota {
			s.quota, s.remaining, s.reset, s.limit = true, c.remaining, c.reset, c.limit
			break
		}
	}
	for i := range tokenQuotas {
		f := &tokenQuotas[i]
		if r, ok := plainInt(h, f.remaining); !ok || r != 0 {
			continue
		}
		if d, ok := readReset(h, f.reset, f.form, now); ok && (!s.tokensSpent || d > s.tokensReset) {
			s.tokensSpent, s.tokensReset = true, d
		}
	}
	if !full {
		return s
	}
	if v, ok := h[hRetryAfter]; ok && len(v) == 1 {
		s.wait, s.hasWait = parseRetryAfter(v[0], now)
		s.retryAfter = s.hasWait
	}
	for _, name := range [...]string{hRetryAfterMs, hXMsRetryAfterMs, hXAmzRetryAfter} {
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
	if !s.hasWait && s.tokensSpent {
		s.wait, s.hasWait = s.tokensReset, true
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

// readQuota reads a quota's Remaining, Reset and Limit fields (GitHub's
// X-RateLimit-*, the older drafts' RateLimit-*, OpenAI's and Anthropic's
// fields of requests): a quota needs the first two well formed; Limit is
// -1 unless well formed.
func (s *signals) readQuota(h http.Header, f *quotaFields, now time.Time) {
	s.limit = -1
	r, ok := plainInt(h, f.remaining)
	if !ok {
		return
	}
	d, ok := readReset(h, f.reset, f.form, now)
	if !ok {
		return
	}
	s.quota, s.remaining, s.reset = true, r, d
	if l, ok := plainInt(h, f.limit); ok {
		s.limit = l
	}
}
