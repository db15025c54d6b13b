package retryhttp

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Defaults used for the zero fields of a [Policy].
//
// Three attempts in all and a full-jitter exponential backoff capped at 20 s
// are the defaults of the AWS SDKs (aws/retry: 3 attempts, full jitter, 20 s
// cap). The 100 ms base sits between the AWS SDK's 50 ms and gax-go's 1 s: long
// enough for a restarting backend or a congested link to make progress, short
// enough that an interactive caller barely notices one retry. A server may ask
// for at most a minute through Retry-After, the cap Azure's SDK applies; a
// longer wait is better decided by the caller than slept through by a library.
const (
	DefaultMaxAttempts   = 3
	DefaultBaseDelay     = 100 * time.Millisecond
	DefaultMaxDelay      = 20 * time.Second
	DefaultMaxRetryAfter = 60 * time.Second
)

// Policy says how many attempts a request may take and how long to wait
// between them. Its zero value is valid and means the documented defaults;
// every zero field takes its Default constant. A Policy is a plain value: copy
// it freely; it holds no state and is safe for concurrent use.
//
// With the defaults, the waits before the first retries are drawn from
// (FullJitter, BaseDelay 100ms, MaxDelay 20s):
//
//	retry n  temp = min(MaxDelay, BaseDelay·2^n)  FullJitter  EqualJitter   NoJitter
//	0        100ms                                [0, 100ms]  [50, 100ms]   100ms
//	1        200ms                                [0, 200ms]  [100, 200ms]  200ms
//	2        400ms                                [0, 400ms]  [200, 400ms]  400ms
//	8        20s (25.6s capped)                   [0, 20s]    [10s, 20s]    20s
type Policy struct {
	// MaxAttempts is the number of attempts in all, the first one included.
	// 0 means DefaultMaxAttempts (3); 1 disables retries.
	MaxAttempts int
	// BaseDelay is the backoff's first step. 0 means DefaultBaseDelay (100ms).
	BaseDelay time.Duration
	// MaxDelay caps one backoff wait. 0 means DefaultMaxDelay (20s). It must
	// not be below BaseDelay.
	MaxDelay time.Duration
	// Jitter chooses how a wait is randomized. The zero value is FullJitter.
	Jitter Jitter
	// MaxRetryAfter is the longest wait a server may ask for with Retry-After
	// and still be retried; a longer one returns the response at once.
	// 0 means DefaultMaxRetryAfter (60s).
	MaxRetryAfter time.Duration
	// AttemptTimeout bounds how long one attempt may go without progress,
	// from sending it until its response headers arrive; 0 means no bound.
	// It bounds connecting and, once the request body is sent, the wait for
	// the response headers; while the body is being sent, only a stall ends
	// the attempt (no bytes of the body taken for AttemptTimeout), never a
	// slow upload that goes on. It never cuts a response body that the
	// caller is reading. The context's deadline still bounds everything
	// (but a body whose Read blocks and whose Close does not end that Read:
	// net/http waits for it). Negative is invalid (Validate names it).
	//
	// Progress is what the base takes of the body. Below it, the operating
	// system's socket buffers (up to a few MiB) and HTTP/2's flow-control
	// window hold bytes the server has not read yet, and the wait for the
	// headers starts once the base has taken the whole body: an upload
	// whose last few MiB take the server longer than AttemptTimeout to read
	// is cut, and so is an HTTP/2 stream whose window grants one frame
	// (16 KiB) less often than that. Set AttemptTimeout above what the
	// server needs for that much, or 0 for such uploads.
	//
	// An attempt that times out is retried with reason "timeout" when that
	// is safe: an idempotent request, or one whose connection was never
	// made. Its error, when it is the last, satisfies
	// errors.Is(err, ErrAttemptTimeout). Amazon's Builders' Library advises
	// setting it at the latency percentile of the dependency that matches
	// an acceptable rate of false timeouts (p99.9, say).
	AttemptTimeout time.Duration
}

// Validate reports whether every field of p holds a usable value. The error
// names each offending field; errors.As finds a *PolicyError for each.
func (p Policy) Validate() error {
	if err := p.validateFields(); err != nil {
		return errors.Join(err, p.validateDelays())
	}
	return p.validateDelays()
}

// validateFields checks each field on its own.
func (p Policy) validateFields() error {
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, &PolicyError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if p.MaxAttempts < 0 {
		bad("MaxAttempts", "%d is negative (0 means %d, 1 disables retries)", p.MaxAttempts, DefaultMaxAttempts)
	}
	if p.BaseDelay < 0 {
		bad("BaseDelay", "%v is negative", p.BaseDelay)
	}
	if p.MaxDelay < 0 {
		bad("MaxDelay", "%v is negative", p.MaxDelay)
	}
	if p.MaxRetryAfter < 0 {
		bad("MaxRetryAfter", "%v is negative", p.MaxRetryAfter)
	}
	if p.AttemptTimeout < 0 {
		bad("AttemptTimeout", "%v is negative (0 means no bound)", p.AttemptTimeout)
	}
	if p.Jitter < FullJitter || p.Jitter > NoJitter {
		bad("Jitter", "unknown value %d", int(p.Jitter))
	}
	return errors.Join(errs...)
}

// validateDelays checks that MaxDelay, or its default, is not below
// BaseDelay, or its default. Negative delays are validateFields' to report.
func (p Policy) validateDelays() error {
	if p.BaseDelay < 0 || p.MaxDelay < 0 {
		return nil
	}
	d := p.withDefaults()
	if d.MaxDelay >= d.BaseDelay {
		return nil
	}
	note := ""
	if p.MaxDelay == 0 {
		note = " (the default)"
	}
	return &PolicyError{Field: "MaxDelay", Reason: fmt.Sprintf("%v%s is below BaseDelay %v", d.MaxDelay, note, d.BaseDelay)}
}

// withDefaults returns p with every zero field replaced by its default.
func (p Policy) withDefaults() Policy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.BaseDelay == 0 {
		p.BaseDelay = DefaultBaseDelay
	}
	if p.MaxDelay == 0 {
		p.MaxDelay = DefaultMaxDelay
	}
	if p.MaxRetryAfter == 0 {
		p.MaxRetryAfter = DefaultMaxRetryAfter
	}
	return p
}

// sane returns p with defaults applied and with any invalid field replaced by
// something usable, so that Delay is total: it never panics and never returns
// a negative or overflowing wait, whatever p holds.
func (p Policy) sane() Policy {
	if p.MaxAttempts < 0 {
		p.MaxAttempts = 0
	}
	if p.BaseDelay < 0 {
		p.BaseDelay = 0
	}
	if p.MaxDelay < 0 {
		p.MaxDelay = 0
	}
	if p.MaxRetryAfter < 0 {
		p.MaxRetryAfter = 0
	}
	if p.AttemptTimeout < 0 {
		p.AttemptTimeout = 0
	}
	p = p.withDefaults()
	if p.MaxDelay < p.BaseDelay {
		p.MaxDelay = p.BaseDelay
	}
	return p
}

// Delay returns the backoff wait before retry n (n = 0 for the first retry),
// from temp = min(MaxDelay, BaseDelay·2^n) and the policy's Jitter:
//
//	NoJitter            temp
//	FullJitter          uniform in [0, temp]
//	EqualJitter         temp/2 + uniform in [0, temp/2]
//	DecorrelatedJitter  min(MaxDelay, uniform in [BaseDelay, 3·prev])
//
// prev is the previous wait returned for this request (only DecorrelatedJitter
// uses it; 0 before the first retry counts as BaseDelay). r supplies the
// randomness; nil uses math/rand/v2's top-level generator, which is seeded
// at random and takes no lock. A seeded *rand.Rand makes the sequence
// repeatable, as in simulations.
//
// Delay is a pure function of its arguments: it keeps no state. For any p,
// even one that fails Validate, it returns a wait in [0, MaxDelay] and never
// panics; invalid fields count as their defaults.
func (p Policy) Delay(n int, prev time.Duration, r *rand.Rand) time.Duration {
	p = p.sane()
	switch p.Jitter {
	case EqualJitter:
		temp := capped(p.BaseDelay, p.MaxDelay, n)
		half := temp / 2
		return half + uniform(r, 0, temp-half)
	case DecorrelatedJitter:
		prev = max(prev, p.BaseDelay)
		hi := time.Duration(math.MaxInt64)
		if prev <= math.MaxInt64/3 {
			hi = 3 * prev
		}
		return min(p.MaxDelay, uniform(r, p.BaseDelay, hi))
	case NoJitter:
		return capped(p.BaseDelay, p.MaxDelay, n)
	default: // FullJitter, and any unknown value
		return uniform(r, 0, capped(p.BaseDelay, p.MaxDelay, n))
	}
}

// capped returns min(limit, base·2^n) without overflowing, for 0 <= base <= limit.
func capped(base, limit time.Duration, n int) time.Duration {
	if n < 0 {
		n = 0
	}
	if n >= 63 || base > limit>>uint(n) {
		return limit
	}
	return base << uint(n)
}

// uniform returns a uniformly random duration in [lo, hi], for lo <= hi.
func uniform(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	span := int64(hi - lo)
	if span == math.MaxInt64 { // span+1 would overflow; one value fewer is no loss
		span--
	}
	if r == nil {
		return lo + time.Duration(rand.Int64N(span+1))
	}
	return lo + time.Duration(r.Int64N(span+1))
}
