package retryhttp

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of a [BudgetConfig]: retries may add 20% to the requests of the
// last 10 s, plus one retry every two minutes, of which a Budget holds two
// (DefaultBudgetFloorHold).
//
// The floor is per Budget, so per Transport unless Transports share one, and
// a fleet adds its floors up: N clients may retry N×MinPerSecond times a
// second in an outage whatever their traffic, plus at once the retries each
// one holds. The floor was 10 a second until retryhttp storm showed what
// that does: 1,000 clients sending 800 requests a second in all (0.8 each,
// to a server that serves 1,000) could retry 10,000 times a second, so after
// a 5 s stall every request took its three attempts (3.15 attempts per
// request), the server did nothing but work whose client had given up, and
// it never recovered; without retries it recovers 16 s after the stall. The
// Ratio bounds a fleet as it bounds one client (20% of its requests, however
// they are spread); the floors do not. So the floor is now what one client
// with little traffic needs, and no more: two retries held, for one request
// to take the default Policy's three attempts after a quiet spell, refilled
// at one every two minutes. The same fleet then recovers 76 s after the
// stall (1,000 clients add 8 retries a second and 2,000 at once, besides
// the Ratio's 20%). Measured
// with retryhttp storm (docs/command.md): floors of 1/20 a second or more
// never recover there, and 10,000 clients, who send a request every 12.5 s
// each, recover 114 s after the stall (more than 65 s with one retry held,
// 16 s with none). When many Transports of one process call one dependency, share one
// Budget among them (WithBudget).
const (
	DefaultBudgetRatio        = 0.2
	DefaultBudgetMinPerSecond = 1.0 / 120
	DefaultBudgetFloorHold    = DefaultMaxAttempts - 1
	DefaultBudgetWindow       = 10 * time.Second
)

// BudgetConfig describes a retry budget. Its zero value means the defaults.
type BudgetConfig struct {
	// Ratio is how many retries each request earns over the window: 0.2
	// lets retries add at most 20% to the requests. 0 means
	// DefaultBudgetRatio.
	Ratio float64
	// MinPerSecond is a floor of retries per second that needs no earlier
	// requests, so that a client with little traffic can still retry. It
	// refills continuously and holds one second's worth, or one retry when
	// that is less: any positive floor allows retries at its rate (0.5, one
	// every 2 s). 0 means DefaultBudgetMinPerSecond, which alone holds
	// DefaultBudgetFloorHold retries (two), so that a quiet client's request
	// may take the default Policy's three attempts: a floor set above it but
	// below one a second holds one.
	MinPerSecond float64
	// Window is how long a request's earnings last. 0 means
	// DefaultBudgetWindow.
	Window time.Duration
}

// budgetSlots is how many time slots a window is cut into: the window slides
// by a tenth of itself.
const budgetSlots = 10

// Budget limits retries so that they cannot turn an outage into a storm.
// Every request a Transport sends earns Ratio of a retry, for Window; every
// retry spends one; a floor of MinPerSecond retries per second is always
// there besides. When a retry finds nothing to spend, the Transport returns
// the failed response (or error) at once, with outcome "budget".
//
// With the defaults, when a dependency is down the traffic to it grows by at
// most about 20% (plus the floor's two retries, and one every two minutes),
// instead of tripling with three attempts per request: for one client and
// for a fleet (see the constants). Hedges (see [Hedging]) are paid only from
// what requests earned, never from the floor. When it recovers, nothing needs
// resetting: earnings return with requests and the floor refills.
//
// Why this design: it is Finagle's and Linkerd's RetryBudget (a percentage
// of the requests over a sliding window, plus a floor), the rule that bounds
// amplification directly and recovers by itself as the window slides. The
// AWS SDK's retry quota (a 500-token bucket, 5 or 14 tokens per retry,
// refunded on success) bounds retries in absolute numbers rather than in
// proportion to traffic: a busy client drains it in a few dozen failures and
// a quiet one barely notices it, and it refills only as requests succeed.
// gRPC's retry throttling (tokens drop by 1 per failure and rise by a ratio
// per success; no retries below half) stops retries entirely once failures
// dominate, which is safe but all or nothing. A ratio over a window keeps a
// steady trickle of retries during an outage, scales with traffic, and needs
// no tuning per client.
//
// The zero Budget is ready to use with the defaults; NewBudget sets others.
// A Budget is safe for concurrent use and may be shared by any number of
// Transports (see [WithBudget]): they then share one limit, which is what
// keeps a process with many clients of one dependency in check. Earning
// takes no lock (an atomic add in a time slot); spending, which happens
// only on the retry path, takes a short one.
type Budget struct {
	once     sync.Once    // starts the Budget on its first use, on the clock of the Transport that uses it
	config   BudgetConfig // NewBudget's, with its defaults; zero in the zero Budget: the defaults
	ratio    float64
	floor    float64 // retries per second
	slot     time.Duration
	start    time.Time
	requests [budgetSlots]slotCount
	current  atomic.Uint32 // the slot number when the clock was last read

	mu       sync.Mutex
	retries  [budgetSlots]slotCount // spent from earnings, by slot
	tokens   float64                // floor retries available
	capacity float64                // most tokens held: max(1, floor), or DefaultBudgetFloorHold
	refilled time.Time              // when tokens was last refilled
}

// NewBudget returns a Budget for c. It fails, naming the field, when a
// value is negative, not a number, or infinite.
func NewBudget(c BudgetConfig) (*Budget, error) {
	var errs []error
	if math.IsNaN(c.Ratio) || math.IsInf(c.Ratio, 0) || c.Ratio < 0 {
		errs = append(errs, fmt.Errorf("retryhttp: invalid BudgetConfig.Ratio: %v is not a number of retries per request", c.Ratio))
	}
	if math.IsNaN(c.MinPerSecond) || math.IsInf(c.MinPerSecond, 0) || c.MinPerSecond < 0 {
		errs = append(errs, fmt.Errorf("retryhttp: invalid BudgetConfig.MinPerSecond: %v is not a number of retries per second", c.MinPerSecond))
	}
	if c.Window < 0 {
		errs = append(errs, fmt.Errorf("retryhttp: invalid BudgetConfig.Window: %v is negative", c.Window))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if c.Ratio == 0 {
		c.Ratio = DefaultBudgetRatio
	}
	if c.MinPerSecond == 0 {
		c.MinPerSecond = DefaultBudgetMinPerSecond
	}
	if c.Window == 0 {
		c.Window = DefaultBudgetWindow
	}
	// The Budget starts on its first use, with the time of the Transport
	// that uses it (Available's, if that comes first): a Transport on
	// another clock (a simulation's) counts from its own start.
	return &Budget{config: c}, nil
}

// init sets b up for c, which has its defaults applied.
func (b *Budget) init(c BudgetConfig, now time.Time) {
	b.ratio = c.Ratio
	b.floor = c.MinPerSecond
	b.slot = max(c.Window/budgetSlots, time.Millisecond)
	b.start = now
	b.capacity = max(1, c.MinPerSecond)
	if c.MinPerSecond == DefaultBudgetMinPerSecond {
		b.capacity = DefaultBudgetFloorHold
	}
	b.tokens = b.capacity // a new client may retry at once
	b.refilled = now
	b.current.Store(b.epoch(now))
}

var defaultBudget = BudgetConfig{Ratio: DefaultBudgetRatio, MinPerSecond: DefaultBudgetMinPerSecond, Window: DefaultBudgetWindow}

// ready sets b up on its first use: with NewBudget's config, or the
// defaults for the zero Budget.
func (b *Budget) ready(now time.Time) {
	b.once.Do(func() {
		c := b.config
		if c == (BudgetConfig{}) {
			c = defaultBudget
		}
		b.init(c, now)
	})
}

// slotCount is a count in one time slot: the slot's number in the high 32
// bits and the count in the low 32, so that one compare-and-swap moves a
// slot to a new period and counts in it.
type slotCount struct{ v atomic.Uint64 }

// add counts one in the slot numbered epoch and returns the new count. If
// the slot already holds a later period (the caller's slot number was
// stale), it counts there instead: a slot never goes back in time.
func (s *slotCount) add(epoch uint32) uint32 {
	for {
		old := s.v.Load()
		next := uint64(epoch)<<32 | 1
		if stored := uint32(old >> 32); stored == epoch || int32(stored-epoch) > 0 {
			if uint32(old) == math.MaxUint32 {
				return math.MaxUint32 // saturated: more than 4 billion in one slot
			}
			next = old + 1
		}
		if s.v.CompareAndSwap(old, next) {
			return uint32(next)
		}
	}
}

// sub takes one from the slot if it still counts the period numbered
// epoch and holds more than zero.
func (s *slotCount) sub(epoch uint32) {
	for {
		old := s.v.Load()
		if uint32(old>>32) != epoch || uint32(old) == 0 {
			return
		}
		if s.v.CompareAndSwap(old, old-1) {
			return
		}
	}
}

// in returns the count if the slot belongs to the window ending at epoch.
func (s *slotCount) in(epoch uint32) float64 {
	v := s.v.Load()
	if epoch-uint32(v>>32) >= budgetSlots { // older than the window (or unused)
		return 0
	}
	return float64(uint32(v))
}

// epoch returns the number of the slot that now falls in.
func (b *Budget) epoch(now time.Time) uint32 {
	return uint32(now.Sub(b.start)/b.slot) + budgetSlots // never 0: unused slots read as old
}

// clockEvery is how many requests in a slot may be counted between two
// readings of the clock.
const clockEvery = 16

// earn records a request. Reading the clock costs as much as the rest of a
// request's bookkeeping, so a busy client reads it only every clockEvery
// requests in a slot and otherwise counts in the slot it saw last. A slot
// that has counted no more than clockEvery requests reads it each time, and
// a request that falls in a later slot moves there, so that a client with
// little traffic (one request a second, say) earns in the second each
// request falls in, not in one that may have left the window long ago (its
// earnings are all it has: the floor is one retry every two minutes). A
// stale slot number can only make a request count in an older slot, so
// earlier out of the window: the budget errs toward fewer retries, never
// more. spend reads the clock every time.
func (b *Budget) earn(now func() time.Time) {
	e := b.current.Load()
	if e == 0 { // the Budget's first use: init stores current last, and never 0
		b.ready(now())
		e = b.current.Load()
	}
	if n := b.requests[e%budgetSlots].add(e); n <= clockEvery || n%clockEvery == 0 {
		if at := b.epoch(now()); int32(at-e) > 0 {
			b.requests[e%budgetSlots].sub(e)
			b.requests[at%budgetSlots].add(at)
			b.observe(at)
		}
	}
}

// observe moves the current slot number forward to e.
func (b *Budget) observe(e uint32) {
	for {
		old := b.current.Load()
		if int32(e-old) <= 0 || b.current.CompareAndSwap(old, e) {
			return
		}
	}
}

// receipt says what spend took, so that refund can give it back.
type receipt struct {
	epoch uint32 // the slot whose earnings paid; 0: a floor token, or nothing
	token bool   // a floor token paid
}

// spend takes one retry from the budget, if it has one: from what the
// requests earned, or else from the floor.
func (b *Budget) spend(now time.Time) (receipt, bool) { return b.take(now, true) }

// spendEarned takes one hedge from what the requests earned, never from
// the floor: a hedge is extra load on a server that is answering, and the
// floor exists so that a client with little traffic can still retry a
// failure, not so that it can double its requests (Finagle's backup
// requests use a budget whose floor is 0). Hedging then never adds more
// than Ratio of the traffic.
func (b *Budget) spendEarned(now time.Time) (receipt, bool) { return b.take(now, false) }

// take takes one from the earnings, or else (when floor allows it) a floor
// token.
func (b *Budget) take(now time.Time, floor bool) (receipt, bool) {
	b.ready(now)
	e := b.epoch(now)
	b.observe(e)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.earnedLocked(e) >= 1 {
		b.retries[e%budgetSlots].add(e)
		return receipt{epoch: e}, true
	}
	if !floor {
		return receipt{}, false
	}
	b.refillLocked(now)
	if b.tokens >= 1 {
		b.tokens--
		return receipt{token: true}, true
	}
	return receipt{}, false
}

// refund gives back what spend took for a retry that was not sent after
// all. Earnings spent in a slot that has since left the window are gone
// anyway. A nil Budget refunds nothing.
func (b *Budget) refund(r receipt) {
	if b == nil {
		return
	}
	switch {
	case r.token:
		b.mu.Lock()
		b.tokens = min(b.capacity, b.tokens+1)
		b.mu.Unlock()
	case r.epoch != 0:
		b.mu.Lock()
		b.retries[r.epoch%budgetSlots].sub(r.epoch)
		b.mu.Unlock()
	}
}

// earnedLocked returns the retries earned in the window and not yet spent.
func (b *Budget) earnedLocked(e uint32) float64 {
	var requests, retries float64
	for i := range budgetSlots {
		requests += b.requests[i].in(e)
		retries += b.retries[i].in(e)
	}
	return b.ratio*requests - retries
}

func (b *Budget) refillLocked(now time.Time) {
	if elapsed := now.Sub(b.refilled); elapsed > 0 {
		b.tokens = min(b.capacity, b.tokens+b.floor*elapsed.Seconds())
		b.refilled = now
	}
}

// Available returns how many retries the budget would allow now, by the
// wall clock.
func (b *Budget) Available() float64 { return b.available(time.Now()) }

func (b *Budget) available(now time.Time) float64 {
	b.ready(now)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refillLocked(now)
	return max(0, b.earnedLocked(b.epoch(now))) + b.tokens
}
