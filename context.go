package retryhttp

import "context"

type policyKey struct{}

// ContextWithPolicy returns a copy of ctx that makes a Transport use p,
// instead of its own Policy, for the requests made with it. SDK authors use
// it for one call that needs more patience, or less. An invalid p makes
// those requests fail with its error (see [Policy.Validate]).
func ContextWithPolicy(ctx context.Context, p Policy) context.Context {
	return context.WithValue(ctx, policyKey{}, &ctxPolicy{policy: p.withDefaults(), err: p.Validate()})
}

// ctxPolicy is a Policy stored in a context, checked once when stored.
type ctxPolicy struct {
	policy Policy // defaults applied
	err    error  // from Validate
}

// ContextWithoutRetries returns a copy of ctx that turns retries off for the
// requests made with it: each gets exactly one attempt, as with a bare
// transport, and its body is never buffered.
func ContextWithoutRetries(ctx context.Context) context.Context {
	return ContextWithPolicy(ctx, Policy{MaxAttempts: 1})
}

// policyFrom returns the Policy that ContextWithPolicy stored in ctx, or nil.
func policyFrom(ctx context.Context) *ctxPolicy {
	p, _ := ctx.Value(policyKey{}).(*ctxPolicy)
	return p
}
