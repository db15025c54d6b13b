package blackbox_test

// ContextWithPolicy: zero fields inherit the Transport's policy.

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// always answers code (with an optional Retry-After) and counts attempts.
type always struct {
	code       int
	retryAfter string
	n          atomic.Int32
	seen       atomic.Pointer[http.Request]
}

func (a *always) RoundTrip(r *http.Request) (*http.Response, error) {
	a.n.Add(1)
	a.seen.Store(r)
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	res := testkit.Resp(a.code, "")
	if a.retryAfter != "" {
		res.Header.Set("Retry-After", a.retryAfter)
	}
	return res, nil
}

// waitsOf sends a GET through a Transport made with opts over base and
// returns the waits the Transport chose before each retry, as its
// observer saw them (what it decided, not how long the machine took).
func waitsOf(t *testing.T, base http.RoundTripper, ctx context.Context, opts ...retryhttp.Option) ([]time.Duration, *http.Response) {
	t.Helper()
	var waits []time.Duration
	rt := retryhttp.New(base, append(opts, retryhttp.WithObserver(func(a retryhttp.Attempt) {
		if a.Retry {
			waits = append(waits, a.Wait)
		}
	}))...)
	res, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil).WithContext(ctx))
	require.NoError(t, err)
	res.Body.Close()
	return waits, res
}

func TestPerRequestPolicyInheritsDelays(t *testing.T) {
	base := &always{code: 503}
	ctx := retryhttp.ContextWithPolicy(context.Background(), retryhttp.Policy{MaxAttempts: 4})
	waits, _ := waitsOf(t, base, ctx, retryhttp.WithBudget(nil), retryhttp.WithPolicy(retryhttp.Policy{
		MaxAttempts: 2, BaseDelay: 150 * time.Millisecond, MaxDelay: 150 * time.Millisecond, Jitter: retryhttp.NoJitter,
	}))
	assert.Equal(t, int32(4), base.n.Load())
	// Inherited: 3 waits of exactly 150 ms (BaseDelay and NoJitter, capped
	// by MaxDelay: 150, 300, 600 ms otherwise).
	ms := 150 * time.Millisecond
	assert.Equal(t, []time.Duration{ms, ms, ms}, waits, "BaseDelay, NoJitter and MaxDelay inherited")
}

func TestPerRequestPolicyInheritsMaxRetryAfter(t *testing.T) {
	base := &always{code: 503, retryAfter: "1"}
	ctx := retryhttp.ContextWithPolicy(context.Background(), retryhttp.Policy{MaxAttempts: 5})
	waits, res := waitsOf(t, base, ctx, retryhttp.WithBudget(nil), retryhttp.WithPolicy(retryhttp.Policy{MaxRetryAfter: 500 * time.Millisecond}))
	assert.Equal(t, 503, res.StatusCode)
	assert.Equal(t, int32(1), base.n.Load(), "Retry-After 1 s is past the Transport's 500 ms cap: returned at once")
	assert.Empty(t, waits)
}

func TestPerRequestPolicyOverridesOnlyWhatItSets(t *testing.T) {
	base := &always{code: 503}
	ctx := retryhttp.ContextWithPolicy(context.Background(), retryhttp.Policy{BaseDelay: time.Millisecond})
	waits, _ := waitsOf(t, base, ctx, retryhttp.WithBudget(nil), retryhttp.WithPolicy(retryhttp.Policy{
		MaxAttempts: 2, BaseDelay: 5 * time.Second, Jitter: retryhttp.NoJitter,
	}))
	assert.Equal(t, int32(2), base.n.Load(), "MaxAttempts inherited")
	assert.Equal(t, []time.Duration{time.Millisecond}, waits, "BaseDelay overridden, NoJitter inherited")
}

func TestPerRequestPolicyOnAZeroTransport(t *testing.T) {
	// The zero Transport's policy is the defaults: a per-request policy
	// on it must not fail validation (MaxDelay 0 against a large BaseDelay).
	var tr retryhttp.Transport
	ctx := retryhttp.ContextWithPolicy(context.Background(), retryhttp.Policy{MaxAttempts: 1, BaseDelay: 30 * time.Second})
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := tr.RoundTrip(testkit.NewReq(t, http.MethodGet, "http://127.0.0.1:1/", nil).WithContext(ctx))
	var pe *retryhttp.PolicyError
	require.ErrorAs(t, err, &pe, "BaseDelay 30 s over the default MaxDelay 20 s is a merged-policy error")
}

func TestWithoutRetriesHandsTheCallersRequestToTheBase(t *testing.T) {
	base := &always{code: 503}
	rt := retryhttp.New(base)
	body := io.NopCloser(bytes.NewReader([]byte("x")))
	req := testkit.NewReq(t, http.MethodPut, "http://x.invalid/", body).WithContext(retryhttp.ContextWithoutRetries(context.Background()))
	res, err := rt.RoundTrip(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, int32(1), base.n.Load())
	assert.Same(t, req, base.seen.Load(), "one attempt, body never buffered: the request goes as it is")
}
