package retryhttp

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/hashicorp/go-cleanhttp"
)

// Transport is an http.RoundTripper that sends each request through a base
// RoundTripper and retries it when that is safe and may help: on status 408,
// 429, 500, 502, 503 and 504 and on connection failures, for idempotent
// requests (and for any request whose connection was never made), with
// exponential backoff and jitter, honoring Retry-After.
//
// A Transport is safe for concurrent use by multiple goroutines. It never
// modifies the caller's Request, always closes its body, and returns either
// a response with a nil error or an error with no response. When it gives
// up, it returns the last response unchanged (a final 503 arrives exactly as
// it would without retries) or, when the last attempt got no response, an
// *Error that unwraps to the last attempt's error.
type Transport struct {
	base        http.RoundTripper
	policy      Policy // as given to WithPolicy; defaults applied in New
	logger      *slog.Logger
	replayLimit int
	metrics     *Metrics // nil: no metrics
	budget      *Budget  // nil: no budget
	budgetSet   bool     // WithBudget was given, even with nil
	err         error    // a bad option; returned by every RoundTrip

	// Test seams: the clock, the wait, and the randomness (nil: math/rand/v2).
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
	rand  *rand.Rand
}

var _ http.RoundTripper = (*Transport)(nil)

// New returns a Transport that sends requests through base. A nil base means
// a fresh cleanhttp.DefaultPooledTransport(): net/http's default settings
// without any shared global state. New never fails: a bad option makes every
// RoundTrip return its error (a *PolicyError).
func New(base http.RoundTripper, opts ...Option) *Transport {
	if base == nil {
		base = cleanhttp.DefaultPooledTransport()
	}
	t := &Transport{
		base:        base,
		replayLimit: DefaultReplayBuffer,
		now:         time.Now,
		sleep:       sleep,
	}
	for _, o := range opts {
		if o != nil {
			o.apply(t)
		}
	}
	if err := t.policy.Validate(); err != nil && t.err == nil {
		t.err = err
	}
	if !t.budgetSet {
		t.budget = new(Budget) // the zero Budget has the defaults
	}
	t.metrics.attach(t.budget)
	t.policy = t.policy.withDefaults()
	return t
}

// CloseIdleConnections closes the idle connections of the base transport,
// when it has such a method, so that http.Client.CloseIdleConnections
// works through a Transport. The Transport never calls it on its own.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip sends req, retrying as the Policy allows. See [Transport].
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req == nil {
		t.metrics.request(numMethods-1, outcomeNotRetryable)
		return nil, errors.New("retryhttp: nil *http.Request")
	}
	p, err := t.policyFor(req)
	if err == nil && req.URL == nil {
		err = errors.New("retryhttp: nil Request.URL")
	}
	if err != nil {
		closeBody(req)
		t.metrics.request(methodIndex(req.Method), outcomeNotRetryable)
		return nil, err
	}
	return t.roundTrip(req, p)
}

// policyFor returns the policy for req, from its context or the Transport,
// with defaults applied.
func (t *Transport) policyFor(req *http.Request) (*Policy, error) {
	if t.err != nil {
		return nil, t.err
	}
	if cp := policyFrom(req.Context()); cp != nil {
		return &cp.policy, cp.err
	}
	return &t.policy, nil
}

// roundTrip runs the attempts of req under p.
func (t *Transport) roundTrip(req *http.Request, p *Policy) (*http.Response, error) {
	ctx := req.Context()
	method := methodIndex(req.Method)
	out := req // what the next attempt sends
	var body *replayBody
	if p.MaxAttempts > 1 && hasBody(req) && req.GetBody == nil {
		// Bodies of requests that are not idempotent are kept too: retryhttp
		// sends them again only when the connection was never made, but
		// net/http itself sends a request again, through GetBody, when the
		// server said it did not process it (HTTP/2 REFUSED_STREAM, GOAWAY).
		body = newReplayBody(req.Body, t.replayLimit)
		defer body.finish()
		v, _ := body.view() // a fresh replayBody always gives its first view
		out = withBody(req, v, body.view)
	}

	if t.budget != nil {
		t.budget.earn(t.now)
	}
	var wait time.Duration
	for attempt := 1; ; attempt++ {
		resp, err := t.base.RoundTrip(out)
		switch { // a base that breaks the RoundTripper contract
		case err == nil && resp == nil:
			err = errors.New("retryhttp: base RoundTripper returned a nil response and a nil error")
		case err != nil && resp != nil:
			resp.Body.Close() // as http.Client does: the error wins
			resp = nil
		}
		if resp != nil {
			t.metrics.attempt(method, resp.StatusCode)
			if out != req {
				resp.Request = req
			}
		} else {
			t.metrics.attempt(method, 0)
		}

		f := classify(resp, err)
		o := stop(ctx, req, p, attempt, f, err)
		var next *http.Request
		var retryAfter bool
		if o == outcomeNone {
			wait, retryAfter, o = t.nextWait(ctx, p, resp, attempt, wait)
		}
		if o == outcomeNone && body != nil && !body.replayable() {
			o = outcomeNotRetryable // checked before spending from the budget
		}
		if o == outcomeNone && t.budget != nil && !t.budget.spend(t.now()) {
			o = outcomeBudget
			t.metrics.refused()
		}
		if o == outcomeNone {
			next, o = nextRequest(req, body)
		}
		if o != outcomeNone {
			t.metrics.request(method, o)
			return result(ctx, resp, err, attempt, o)
		}

		if resp != nil {
			discard(resp)
		}
		t.metrics.retry(method, f, wait, retryAfter)
		t.logRetry(ctx, req, attempt, f, wait, resp, err)
		if err := t.sleep(ctx, wait); err != nil {
			if next != req {
				next.Body.Close() // the body made for the attempt that will not be sent
			}
			t.metrics.request(method, outcomeCanceled)
			return nil, &Error{Attempts: attempt, Err: err, Waiting: true}
		}
		out = next
	}
}

// stop returns why the request must end after this attempt, or outcomeNone
// when a retry is allowed so far.
func stop(ctx context.Context, req *http.Request, p *Policy, attempt int, f failure, err error) outcome {
	switch {
	case err != nil && ctx.Err() != nil:
		return outcomeCanceled
	case !f.retryable():
		if err != nil {
			return outcomeNotRetryable
		}
		return outcomeOK
	case ctx.Err() != nil:
		return outcomeCanceled
	case attempt >= p.MaxAttempts:
		return outcomeExhausted
	case !mayRetry(req, f):
		return outcomeNotRetryable
	}
	return outcomeNone
}

// nextWait returns the wait before the next attempt: what the response's
// Retry-After asks for, plus a little jitter (retryAfter is then true), or
// else the policy's backoff. It returns outcomeTooLate when the server asks
// for more than MaxRetryAfter or when the wait would not end before the
// context's deadline.
func (t *Transport) nextWait(ctx context.Context, p *Policy, resp *http.Response, attempt int, prev time.Duration) (wait time.Duration, retryAfter bool, o outcome) {
	if resp != nil {
		if v := resp.Header.Get("Retry-After"); v != "" {
			var asked time.Duration
			if asked, retryAfter = parseRetryAfter(v, t.now()); retryAfter {
				if asked > p.MaxRetryAfter {
					return 0, true, outcomeTooLate
				}
				wait = retryAfterWait(asked, p.BaseDelay, t.rand)
			}
		}
	}
	if !retryAfter {
		wait = p.Delay(attempt-1, prev, t.rand)
	}
	if deadline, ok := ctx.Deadline(); ok && !t.now().Add(wait).Before(deadline) {
		return 0, retryAfter, outcomeTooLate
	}
	return wait, retryAfter, outcomeNone
}
