package demo

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUpstreamSwitchesItsFaults(t *testing.T) {
	t.Parallel()
	steady := faults{latency: time.Millisecond}
	up, err := startUpstream(steady)
	require.NoError(t, err)
	defer up.Close()
	status := func() int {
		resp, err := http.Get(up.URL)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	ok := up.handler()
	for i, tt := range []struct {
		serve http.HandlerFunc
		want  int
	}{{nil, 200}, {steady.outage().handler(), 503}, {ok, 200}} {
		if tt.serve != nil {
			up.serve(tt.serve)
		}
		for range 5 {
			assert.Equal(t, tt.want, status(), "step %d", i)
		}
	}
}

func TestFaultsString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		f    faults
		want string
	}{
		{faults{errorRate: 0.1, resetRate: 0.02, latency: 5 * time.Millisecond}, "503 10%, resets 2%, latency 5ms"},
		{faults{errorRate: 0.5, throttleRate: 0.1, retryAfter: time.Second, resetRate: 0.025, latency: time.Millisecond, slowRate: 0.05, slowLatency: 100 * time.Millisecond},
			"503 50%, 429 10% with Retry-After 1s, resets 2.5%, latency 1ms, 5% take 100ms"},
		{faults{}.outage(), "503 100%, latency 0s"},
		{faults{errorRate: 0.07, resetRate: 0.29, latency: time.Millisecond}, "503 7%, resets 29%, latency 1ms"},
		{faults{errorRate: 0.00125, latency: time.Millisecond}, "503 0.125%, latency 1ms"},
		{faults{latency: 5 * time.Millisecond, capacity: 50}, "latency 5ms, capacity 50 requests/s, a bare 429 beyond"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.f.String())
	}
}

// -capacity is a token bucket: capacity tokens a second, one second's worth
// held, so a burst is served up to the capacity and then the requests
// beyond it are refused as they come, never more than a second's worth
// saved up. Driven on its own clock: no timing.
func TestCapacityLimitIsATokenBucket(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 900_000_000, time.UTC) // late in a second: no window's edge matters
	tests := []struct {
		name     string
		at       time.Duration // since start, when the requests arrive at once
		requests int
		served   int
	}{
		{"a full bucket serves a second's worth", 0, 60, 50},
		{"spent: nothing more at the same instant", 0, 5, 0},
		{"100 ms refill 5 tokens, across the second's edge too", 100 * time.Millisecond, 10, 5},
		{"a time before the last does not refill", 50 * time.Millisecond, 3, 0},
		{"20 ms refill 1", 120 * time.Millisecond, 3, 1},
		{"an idle 10 s saves no more than a second's worth", 10 * time.Second, 200, 50},
		{"half a second refills half", 10*time.Second + 500*time.Millisecond, 100, 25},
	}
	l := newCapacityLimit(50, start)
	for _, tt := range tests {
		served := 0
		for range tt.requests {
			if l.admit(start.Add(tt.at)) {
				served++
			}
		}
		assert.Equal(t, tt.served, served, tt.name)
	}
}

// Beyond -capacity the upstream answers a bare 429: nothing that says how
// long to wait or how much is allowed, which is what wakes the adaptive
// rate.
func TestUpstreamAnswersABare429BeyondItsCapacity(t *testing.T) {
	t.Parallel()
	h := faults{capacity: 1}.handler() // one a second: the second request, a moment after the first, is refused
	var codes []int
	var refused http.Header
	for range 2 {
		w := httptest.NewRecorder()
		h(w, httptest.NewRequest(http.MethodGet, "/", nil))
		codes = append(codes, w.Code)
		refused = w.Header()
	}
	assert.Equal(t, []int{200, 429}, codes)
	for name := range refused {
		assert.NotRegexp(t, `(?i)retry-after|ratelimit`, name, "a bare 429")
	}
}
