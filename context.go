package retryhttp

import (
	"context"
	"sync/atomic"
)

type policyKey struct{}

// ContextWithPolicy returns a copy of ctx that makes a Transport use p for
// the requests made with it. Each zero field of p takes the value of the
// policy in force where it is set: the one an enclosing ContextWithPolicy
// (or ContextWithoutRetries) put in ctx, else the Transport's own Policy,
// so p says only what differs for this call:
//
//	ctx = retryhttp.ContextWithPolicy(ctx, retryhttp.Policy{MaxAttempts: 6})
//
// gives a request 6 attempts with the Transport's delays, jitter and
// MaxRetryAfter, and
//
//	ctx = retryhttp.ContextWithPolicy(retryhttp.ContextWithoutRetries(ctx), retryhttp.Policy{AttemptTimeout: 5 * time.Second})
//
// keeps retries off and bounds the one attempt. To ask for a package default where the Transport has
// another value, write the default out (Policy{BaseDelay:
// retryhttp.DefaultBaseDelay}). Jitter's zero value is FullJitter, so a
// per-request Policy cannot bring FullJitter back on a Transport that uses
// another jitter.
//
// A p with a bad field makes those requests fail with its error (see
// [Policy.Validate]); so does a merged Policy whose MaxDelay is below its
// BaseDelay.
func ContextWithPolicy(ctx context.Context, p Policy) context.Context {
	policiesInContexts.Store(true)
	if enclosing, ok := ctx.Value(policyKey{}).(*ctxPolicy); ok {
		p = p.inherit(enclosing.policy)
	}
	return context.WithValue(ctx, policyKey{}, &ctxPolicy{policy: p, err: p.validateFields()})
}

// policiesInContexts is set once any context of the process carries a
// Policy: until then, RoundTrip need not look one up (a context lookup is
// a tenth of a Transport's own cost on the happy path).
var policiesInContexts atomic.Bool

// ctxPolicy is a Policy stored in a context, its fields checked once when
// stored.
type ctxPolicy struct {
	policy Policy // as given, over the enclosing one: zero fields inherit the Transport's
	err    error  // from validateFields
}

// ContextWithoutRetries returns a copy of ctx that turns retries off for the
// requests made with it: each gets exactly one attempt, as with a bare
// transport, and its body is never buffered.
func ContextWithoutRetries(ctx context.Context) context.Context {
	return ContextWithPolicy(ctx, Policy{MaxAttempts: 1})
}

// policyOf returns the Policy of a request whose context carries cp (from
// ContextWithPolicy): cp's over the Transport's. It fails when that Policy
// is invalid. (RoundTrip reads the context itself, so that a request
// without one pays a single lookup.)
func (t *Transport) policyOf(cp *ctxPolicy) (*Policy, error) {
	if cp.err != nil {
		return nil, cp.err
	}
	p := cp.policy.inherit(t.policy)
	return &p, p.validateDelays()
}

// inherit returns p with each zero field taken from base.
func (p Policy) inherit(base Policy) Policy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = base.MaxAttempts
	}
	if p.BaseDelay == 0 {
		p.BaseDelay = base.BaseDelay
	}
	if p.MaxDelay == 0 {
		p.MaxDelay = base.MaxDelay
	}
	if p.Jitter == FullJitter {
		p.Jitter = base.Jitter
	}
	if p.MaxRetryAfter == 0 {
		p.MaxRetryAfter = base.MaxRetryAfter
	}
	if p.AttemptTimeout == 0 {
		p.AttemptTimeout = base.AttemptTimeout
	}
	return p
}
