package retryhttp

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"time"
)

// Hedging sends extra copies of a slow idempotent request and returns the first
// final answer.
//
// Dean and Barroso ("The Tail at Scale", CACM 2013) found that a second copy
// sent once the first has been outstanding past the 95th percentile of the
// latency cuts the tail at about 5% more load. A Transport hedges only what is
// safe to send twice at once: idempotent requests (by method, Idempotency-Key,
// or ContextWithIdempotent) without a body, or whose body has a GetBody; a
// streamed body without GetBody is never hedged, nor a request with retries
// off (ContextWithoutRetries).
//
// The first copy whose response is final (not retryable by the Transport's
// rules and its Classifier) wins; the others are canceled and their bodies
// closed. A copy that fails in a way worth retrying (a 503, a reset) does not
// cancel the others; when every copy has failed, the retries go on with their
// backoff, or after the wait a copy's response asked for (Retry-After), even
// when another copy failed later without one. Every copy counts as an
// attempt toward MaxAttempts, and every hedge is paid for from the retry
// budget, only from what requests earned (Ratio of them), never from its
// floor of retries per second: hedging adds at most
// Ratio (20%) to the traffic, even for a client with little of it, and cannot
// raise the amplification of an outage above the budget's. A response that asks for a
// wait (Retry-After, or any throttling signal the Transport honors) stops the
// hedges of its request. Once the first copy has answered, no further hedge is
// sent for that attempt. A hedge goes to its host like any request: not while
// the host is held for its quota, and counted against it; every copy's
// response is read for the host's quota as any response is.
//
// Hedges are attempts, with their own numbers (AttemptFromContext, Attempt):
// a Classifier that allows one retry by checking for attempt 1 sees the hedge
// of attempt 1 as attempt 2. The first copy of an attempt is sent in the
// goroutine of RoundTrip, the hedges in their own: over a base that does not
// end a request when its context is canceled, RoundTrip returns a hedge's
// answer only once the first copy has returned.
type Hedging struct {
	// Delay is how long an attempt may wait for its response headers before a
	// hedge is sent. 0 means adaptive: the Percentile of the latencies recently
	// observed to the same host by this Transport (while it has fewer than
	// 100 observations of that host, no hedge is sent).
	Delay time.Duration
	// Percentile for the adaptive Delay; 0 means 0.95.
	Percentile float64
	// MaxHedges is how many extra copies may be in flight at once; 0 means 1.
	// Each further hedge follows one Delay after the previous copy.
	MaxHedges int
}

// Defaults of a Hedging.
const (
	DefaultHedgePercentile = 0.95
	DefaultMaxHedges       = 1
)

// ErrHedgeLost is the error an observer sees for a copy of a hedged attempt
// that was canceled because another copy won.
var ErrHedgeLost = errors.New("retryhttp: canceled: another copy of the request won")

// WithHedging makes the Transport hedge slow idempotent requests (see
// [Hedging]). A negative Delay or MaxHedges, or a Percentile outside (0, 1),
// makes every RoundTrip fail with a *PolicyError naming the field.
func WithHedging(h Hedging) Option {
	return optionFunc(func(t *Transport) {
		bad := func(field, reason string) {
			if t.err == nil {
				t.err = &PolicyError{Field: "Hedging." + field, Reason: reason}
			}
		}
		switch {
		case h.Delay < 0:
			bad("Delay", h.Delay.String()+" is negative (0 means adaptive)")
			return
		case h.MaxHedges < 0:
			bad("MaxHedges", fmt.Sprint(h.MaxHedges, " is negative (0 means ", DefaultMaxHedges, ")"))
			return
		case math.IsNaN(h.Percentile) || h.Percentile < 0 || h.Percentile >= 1:
			bad("Percentile", fmt.Sprint(h.Percentile, " is not in (0, 1) (0 means ", DefaultHedgePercentile, ")"))
			return
		}
		c := &hedging{delay: h.Delay, maxHedges: h.MaxHedges}
		if c.maxHedges == 0 {
			c.maxHedges = DefaultMaxHedges
		}
		if c.delay == 0 {
			p := h.Percentile
			if p == 0 {
				p = DefaultHedgePercentile
			}
			c.latencies = &latencies{percentile: p}
		}
		t.hedge = c
	})
}

// hedging is a Transport's hedging configuration.
type hedging struct {
	delay     time.Duration // 0: adaptive, from latencies
	maxHedges int
	latencies *latencies // the adaptive delay's estimates; nil with a fixed delay
}

// delayFor returns the delay before the first hedge of an attempt to the
// host u names, or 0 for none.
func (h *hedging) delayFor(u *url.URL) time.Duration {
	if h.latencies == nil {
		return h.delay
	}
	return h.latencies.delay(hostKeyOf(u))
}

// observe records the latency of an attempt that got a response, for the
// adaptive delay.
func (h *hedging) observe(a *attempt) {
	if h.latencies != nil && a.resp != nil {
		h.latencies.observe(hostKeyOf(a.sent.URL), a.took)
	}
}

// hedgeable reports whether req may be hedged at all: idempotent, and its
// body, if any, can be sent twice at once. When each hedge may go is
// mayHedge's to say, with what the attempt has learned by then.
func hedgeable(req *http.Request, p *Policy) bool {
	return p.MaxAttempts > 1 && idempotent(req) && (!hasBody(req) || req.GetBody != nil)
}

// sendHedged is the pipeline's top layer with WithHedging: an attempt of a
// request that may be hedged, to a host with a hedge delay, goes out as a
// race of copies (see hedgeRound); any other goes on to the host layer.
// Either way, the latency of what answered feeds the adaptive delay.
func (t *Transport) sendHedged(c *call, a *attempt) {
	if c.hedge && !c.noHedge {
		if d := t.hedge.delayFor(a.out.URL); d > 0 {
			t.race(c, a, d)
			t.hedge.observe(a)
			return
		}
	}
	t.sendToHost(c, a)
	t.hedge.observe(a)
}
