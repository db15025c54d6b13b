package retryhttp

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// hedgeCtx is the context of the first copy of a hedged attempt: its
// parent's, and canceled when another copy wins. Every hedged request has
// one, hedge or no hedge, so it costs nothing until asked: the cancelable
// context behind it is made only when the base asks for Done (an
// in-memory base never does). Once made, it is a stdlib cancelCtx, which
// net/http's own contexts attach to without a goroutine.
type hedgeCtx struct {
	parent context.Context

	mu       sync.Mutex
	inner    context.Context         // made by Done
	cancelFn context.CancelCauseFunc // of inner
	cause    error                   // why it was canceled before inner was made
}

func (c *hedgeCtx) Deadline() (time.Time, bool) { return c.parent.Deadline() }

// Done returns the channel of the cancelable context, made on first call.
func (c *hedgeCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner == nil {
		c.inner, c.cancelFn = context.WithCancelCause(c.parent)
		if c.cause != nil {
			c.cancelFn(c.cause)
		}
	}
	return c.inner.Done()
}

func (c *hedgeCtx) Err() error {
	c.mu.Lock()
	inner, cause := c.inner, c.cause
	c.mu.Unlock()
	switch {
	case inner != nil:
		return inner.Err()
	case cause != nil:
		return context.Canceled
	}
	return c.parent.Err()
}

// Value answers from the cancelable context once it is made (so that
// context.WithCancel on this context finds it and attaches to it), and from
// the parent before.
func (c *hedgeCtx) Value(key any) any {
	c.mu.Lock()
	inner := c.inner
	c.mu.Unlock()
	if inner != nil {
		return inner.Value(key)
	}
	return c.parent.Value(key)
}

// cancel cancels the copy: another one won.
func (c *hedgeCtx) cancel(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner != nil {
		c.cancelFn(cause)
	} else if c.cause == nil {
		c.cause = cause
	}
}

// releaseWith releases the context's resources, if it holds any, when the
// body of its copy's response is closed, or now when there is none. A
// cancelable context made from a parent that is never canceled holds
// nothing to release: nothing refers to it but its own children.
func (c *hedgeCtx) releaseWith(resp *http.Response) *http.Response {
	c.mu.Lock()
	release := c.cancelFn
	c.mu.Unlock()
	switch {
	case release == nil, c.parent.Done() == nil:
	case resp != nil:
		resp.Body = cancelOnClose(resp.Body, release)
	default:
		release(nil)
	}
	return resp
}

func (c *hedgeCtx) String() string { return "retryhttp.hedgeCtx" }

// hedgeTimer says when to send the next copy of a hedged attempt. Timers
// are pooled, so that a hedged attempt whose first copy answers in time
// allocates none: a timer goes back to the pool only when it never fired,
// so no stale firing can reach the next round.
type hedgeTimer struct {
	t     *time.Timer
	mu    sync.Mutex
	round *hedgeRound
	fired bool
}

var hedgeTimers = sync.Pool{New: func() any {
	ht := new(hedgeTimer)
	ht.t = time.AfterFunc(time.Hour, ht.fire)
	ht.t.Stop()
	return ht
}}

// armHedgeTimer gives round a timer that calls round.timeUp after d.
func armHedgeTimer(round *hedgeRound, d time.Duration) {
	ht := hedgeTimers.Get().(*hedgeTimer)
	ht.mu.Lock()
	ht.round = round
	round.timer = ht // before the timer may fire: fire reads it after taking ht.mu
	ht.mu.Unlock()
	ht.t.Reset(d)
}

func (ht *hedgeTimer) fire() {
	ht.mu.Lock()
	round := ht.round
	ht.fired = true
	ht.mu.Unlock()
	if round != nil {
		round.timeUp()
	}
}

// again calls round.timeUp once more, d from now.
func (ht *hedgeTimer) again(d time.Duration) { ht.t.Reset(d) }

// disarm stops the timer, and gives it back to the pool when it had not
// fired.
func (ht *hedgeTimer) disarm() {
	stopped := ht.t.Stop()
	ht.mu.Lock()
	ht.round = nil
	fired := ht.fired
	ht.mu.Unlock()
	if stopped && !fired {
		hedgeTimers.Put(ht)
	}
}
