package retryhttp

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/retryhttp/retryhttp/internal/seam"
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
	replaySet   bool       // WithReplayBuffer was given
	hosts       hosts      // the quotas of the hosts that announce them
	metrics     *Metrics   // nil: no metrics
	classifier  Classifier // nil: the Transport's own rules
	observers   []func(Attempt)
	recorders   []func(Event)
	watched     bool          // a logger or observers want each attempt
	timed       bool          // attempts are timed: for observers, or the adaptive hedging delay
	counted     bool          // metrics or recorders count each attempt, net/http's resends included
	plain       bool          // no hedging and no timing: an attempt may skip the pipeline's layers
	ready       atomic.Bool   // init has run
	samplePos   atomic.Uint32 // which response of the current run of quotaSample is read (see learn)
	responses   atomic.Uint32 // responses seen while no host announced a quota (see mayAnnounce)
	hedge       *hedging      // nil: no hedging
	rate        *adaptive     // nil: no adaptive rate (see WithAdaptiveRate)
	beforeRetry []func(next *http.Request, prev Attempt) error
	holdKey     func(req *http.Request) string // nil: one hold per host
	budget      *Budget                        // nil: no budget
	budgetSet   bool                           // WithBudget was given, even with nil
	err         error                          // a bad option; returned by every RoundTrip

	// Test seams: the clock, the wait, and the randomness (nil: math/rand/v2);
	// noHold turns the host holds off, to measure what they are worth.
	noHold bool
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
	rand   *rand.Rand
}

var _ http.RoundTripper = (*Transport)(nil)

// init lends the test seams to the command's simulation (retryhttp storm),
// through a package only this module can import: see internal/seam.
func init() {
	seam.Set = func(rt http.RoundTripper, c seam.Clock) {
		t := rt.(*Transport)
		t.now, t.sleep, t.rand = c.Now, c.Sleep, c.Rand
	}
}

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
	t.watched = t.logger != nil || len(t.observers) > 0
	t.timed = t.watched || (t.hedge != nil && t.hedge.latencies != nil)
	t.counted = t.metrics != nil || t.recorders != nil
	t.plain = t.hedge == nil && !t.timed
	t.ready.Store(true)
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
	if !t.ready.Load() { // the zero Transport's first request
		t.once.Do(t.init)
	}
	if req == nil {
		t.refuseBadRequest(context.Background(), numMethods-1)
		return nil, errors.New("retryhttp: nil *http.Request")
	}
	p, err := &t.policy, t.err
	if policiesInContexts.Load() && err == nil {
		if cp, _ := req.Context().Value(policyKey{}).(*ctxPolicy); cp != nil {
			p, err = t.policyOf(cp)
		}
	}
	if err == nil && req.URL == nil {
		err = errors.New("retryhttp: nil Request.URL")
	}
	if err != nil {
		closeBody(req)
		t.refuseBadRequest(req.Context(), methodIndex(req.Method))
		return nil, err
	}
	return t.roundTrip(req, p)
}

// refuseBadRequest counts a request that cannot be sent at all: nil, or
// with a bad Policy or no URL.
func (t *Transport) refuseBadRequest(ctx context.Context, method int) {
	if t.counted {
		t.count(ctx, event{kind: EventRequest, method: method, stop: stopPermanent})
	}
}
