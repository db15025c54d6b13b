package retryhttp

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
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
//
// The zero Transport is ready to use, like New(nil): it sends through a
// cleanhttp.DefaultPooledTransport() of its own, with the default Policy,
// replay buffer and retry budget.
type Transport struct {
	once        sync.Once // applies the defaults, for New and for the zero Transport
	base        http.RoundTripper
	policy      Policy // as given to WithPolicy; defaults applied by init
	logger      *slog.Logger
	replayLimit int
	replaySet   bool     // WithReplayBuffer was given
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
	t := &Transport{base: base}
	for _, o := range opts {
		if o != nil {
			o.apply(t)
		}
	}
	t.once.Do(t.init)
	return t
}

// init applies the defaults to every field that options left unset.
func (t *Transport) init() {
	if t.base == nil {
		t.base = cleanhttp.DefaultPooledTransport()
	}
	if !t.replaySet {
		t.replayLimit = DefaultReplayBuffer
	}
	if t.now == nil {
		t.now = time.Now
	}
	if t.sleep == nil {
		t.sleep = sleep
	}
	if err := t.policy.Validate(); err != nil && t.err == nil {
		t.err = err
	}
	if !t.budgetSet {
		t.budget = new(Budget) // the zero Budget has the defaults
	}
	t.metrics.attach(t.budget)
	t.policy = t.policy.withDefaults()
}

// CloseIdleConnections closes the idle connections of the base transport,
// when it has such a method, so that http.Client.CloseIdleConnections
// works through a Transport. The Transport never calls it on its own.
func (t *Transport) CloseIdleConnections() {
	t.once.Do(t.init)
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip sends req, retrying as the Policy allows. See [Transport].
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.once.Do(t.init)
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

// roundTrip runs the attempts of req under p: send, decide, wait, send
// again, until decide says why to stop.
func (t *Transport) roundTrip(req *http.Request, p *Policy) (*http.Response, error) {
	ctx := req.Context()
	method := methodIndex(req.Method)
	var body *replayBody // the replay buffer, for a body without GetBody
	out := req           // what the next attempt sends
	if p.MaxAttempts > 1 && hasBody(req) && req.GetBody == nil {
		body = newReplayBody(req.Body, t.replayLimit)
		out, _ = body.request(req) // a fresh replayBody always gives its first view
	}
	if t.budget != nil {
		t.budget.earn(t.now)
	}
	var s step // what comes after each attempt; filled by decide
	for attempt := 1; ; attempt++ {
		resp, err := t.send(out)
		t.metrics.attempt(method, resp)
		if resp != nil && out != req {
			resp.Request = req
		}

		if o := t.decide(&s, ctx, req, p, body, attempt, resp, err); o != outcomeNone {
			if body != nil {
				body.finish(resp != nil)
			}
			t.metrics.request(method, o)
			if resp != nil {
				return resp, nil
			}
			return nil, giveUp(ctx, err, attempt, o)
		}

		if resp != nil {
			discard(resp)
		}
		t.logRetry(ctx, req, attempt, s.f, s.wait, resp, err)
		if err := t.sleep(ctx, s.wait); err != nil {
			t.budget.refund(s.paid)
			if s.next != req {
				s.next.Body.Close() // the body made for the attempt that will not be sent
			}
			if body != nil {
				body.finish(false)
			}
			t.metrics.request(method, outcomeCanceled)
			return nil, &Error{Attempts: attempt, Err: err, Waiting: true}
		}
		t.metrics.retry(method, s.f, s.wait, s.retryAfter)
		out = s.next
	}
}

// send makes one attempt through the base and holds it to the RoundTripper
// contract: a response and no error, or an error and no response; a
// response's nil Body is an empty one, as http.Client treats it.
func (t *Transport) send(out *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(out)
	switch {
	case err == nil && resp == nil:
		return nil, errors.New("retryhttp: base RoundTripper returned a nil response and a nil error")
	case err != nil && resp != nil:
		if resp.Body != nil {
			resp.Body.Close() // as http.Client does: the error wins
		}
		return nil, err
	case resp != nil && resp.Body == nil:
		resp.Body = http.NoBody
	}
	return resp, err
}

// step is what decide says comes after an attempt that is retried: the
// wait before the next attempt and its request, already paid for from the
// budget.
type step struct {
	f          failure // what went wrong with the attempt
	wait       time.Duration
	retryAfter bool          // the wait is the server's Retry-After
	next       *http.Request // the next attempt's request, with a fresh body
	paid       receipt       // what the retry took from the budget
}

// decide is the one place that says whether and when a request is sent
// again after an attempt. It returns why the request stops, or outcomeNone
// with s filled in for the retry. It checks, in order: what the attempt's
// outcome allows (a retryable failure, the context, MaxAttempts, the
// method), how long to wait (Retry-After or backoff, within MaxRetryAfter
// and the deadline), the budget, and whether the body can be sent again.
// s.wait holds the previous wait when it is called.
func (t *Transport) decide(s *step, ctx context.Context, req *http.Request, p *Policy, body *replayBody, attempt int, resp *http.Response, err error) outcome {
	f := classify(resp, err)
	if o := stop(ctx, req, p, attempt, f, err); o != outcomeNone {
		return o
	}
	s.f = f
	wait, retryAfter, o := t.nextWait(ctx, p, resp, attempt, s.wait)
	if o != outcomeNone {
		return o
	}
	s.wait, s.retryAfter, s.paid = wait, retryAfter, receipt{}
	if t.budget != nil {
		var ok bool
		if s.paid, ok = t.budget.spend(t.now()); !ok {
			t.metrics.refused()
			return outcomeBudget
		}
	}
	if s.next, o = nextRequest(req, body); o != outcomeNone {
		t.budget.refund(s.paid) // the retry will not be sent
	}
	return o
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
