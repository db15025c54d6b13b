package retryhttp

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPerRequestPolicy(t *testing.T) {
	up := newUpstream(t, statuses(503))
	tr, _ := newTestTransport(t, WithBudget(nil)) // a quiet client's budget holds two retries

	ctx := ContextWithPolicy(context.Background(), Policy{MaxAttempts: 5})
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, int32(5), up.attempts.Load())

	up.attempts.Store(0)
	ctx = ContextWithoutRetries(context.Background())
	resp, err = tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, int32(1), up.attempts.Load())

	ctx = ContextWithPolicy(context.Background(), Policy{MaxAttempts: -2})
	_, err = tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx))
	assert.ErrorContains(t, err, "Policy.MaxAttempts")
}

func TestPerRequestPolicyInheritsTheTransports(t *testing.T) {
	// A Transport tuned for a slow API: 1 s base delay without jitter, and
	// Retry-After honored up to 5 s. A call that only asks for more
	// attempts keeps the rest of that tuning.
	throttled := newUpstream(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "30")
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	tr, clock := newTestTransport(t, WithPolicy(Policy{BaseDelay: time.Second, MaxDelay: time.Minute, Jitter: NoJitter, MaxRetryAfter: 5 * time.Second}),
		WithBudget(nil)) // a quiet client's budget holds two retries
	ctx := ContextWithPolicy(context.Background(), Policy{MaxAttempts: 4})
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, throttled.URL, nil).WithContext(ctx))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, int32(1), throttled.attempts.Load(), "Retry-After 30 s is above the Transport's 5 s")
	assert.Empty(t, clock.recorded())

	busy := newUpstream(t, statuses(503))
	resp, err = tr.RoundTrip(mustRequest(t, http.MethodGet, busy.URL, nil).WithContext(ctx))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, int32(4), busy.attempts.Load())
	assert.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, clock.recorded(),
		"the Transport's delays and jitter")

	// The package default, written out, still overrides.
	clock.waits = nil
	busy.attempts.Store(0)
	ctx = ContextWithPolicy(context.Background(), Policy{MaxAttempts: 2, BaseDelay: DefaultBaseDelay})
	resp, err = tr.RoundTrip(mustRequest(t, http.MethodGet, busy.URL, nil).WithContext(ctx))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, []time.Duration{DefaultBaseDelay}, clock.recorded())
}

func TestPerRequestPolicyIsValidatedAgainstTheTransports(t *testing.T) {
	tr, _ := newTestTransport(t, WithPolicy(Policy{MaxDelay: time.Minute}))
	up := newUpstream(t, statuses(200))

	// 30 s is above the default MaxDelay, but not above this Transport's.
	ctx := ContextWithPolicy(context.Background(), Policy{BaseDelay: 30 * time.Second})
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx))
	require.NoError(t, err)
	readAll(t, resp)

	// Two minutes is above it: a clear error, no request sent.
	ctx = ContextWithPolicy(context.Background(), Policy{BaseDelay: 2 * time.Minute})
	_, err = tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx))
	var perr *PolicyError
	require.ErrorAs(t, err, &perr)
	assert.Equal(t, "MaxDelay", perr.Field)
	assert.Equal(t, int32(1), up.attempts.Load())
}

func TestNestedPerRequestPolicyInheritsTheEnclosingOne(t *testing.T) {
	// A per-request Policy's zero fields come from the policy in force
	// where it is set: an enclosing ContextWithoutRetries stays in force
	// under a ContextWithPolicy that only bounds the attempt.
	up := newUpstream(t, statuses(503))
	tr, _ := newTestTransport(t)
	ctx := ContextWithPolicy(ContextWithoutRetries(context.Background()), Policy{AttemptTimeout: 5 * time.Second})
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodPut, up.URL, nil).WithContext(ctx))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, int32(1), up.attempts.Load(), "retries stay off")

	// Three levels: each sets one field, the innermost wins where they
	// overlap, and the Transport fills in what none set.
	up.attempts.Store(0)
	tr2, clock := newTestTransport(t, WithPolicy(Policy{Jitter: NoJitter, BaseDelay: time.Second, MaxDelay: time.Minute}))
	ctx = ContextWithPolicy(context.Background(), Policy{MaxAttempts: 2})
	ctx = ContextWithPolicy(ctx, Policy{BaseDelay: 3 * time.Second})
	ctx = ContextWithPolicy(ctx, Policy{MaxAttempts: 3})
	resp, err = tr2.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, int32(3), up.attempts.Load())
	assert.Equal(t, []time.Duration{3 * time.Second, 6 * time.Second}, clock.recorded())

	// A bad field in the enclosing policy stays bad unless overridden.
	ctx = ContextWithPolicy(ContextWithPolicy(context.Background(), Policy{BaseDelay: -1}), Policy{MaxAttempts: 2})
	_, err = tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx))
	assert.ErrorContains(t, err, "Policy.BaseDelay")
	ctx = ContextWithPolicy(ContextWithPolicy(context.Background(), Policy{BaseDelay: -1}), Policy{BaseDelay: time.Millisecond})
	resp, err = tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx))
	require.NoError(t, err)
	readAll(t, resp)
}
