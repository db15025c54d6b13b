package retryhttp

import "fmt"

// Jitter chooses how a backoff wait is randomized, after the AWS Architecture
// Blog post "Exponential Backoff And Jitter" (2015). Randomness keeps a crowd
// of clients that failed together from coming back together. See
// [Policy.Delay] for the formulas.
type Jitter int

const (
	// FullJitter waits a uniform random time in [0, temp]: it spreads clients
	// the widest, and needs no state beyond the attempt number. In the post's
	// simulation, as reproduced by retryhttp sim (clients contending to
	// write one row), it makes far fewer calls than no jitter and finishes
	// far sooner; it makes about as many calls as EqualJitter and finishes
	// sooner; DecorrelatedJitter makes fewer calls than it up to about 50
	// clients, more beyond, and finishes sooner from 20 clients up. The zero
	// value.
	FullJitter Jitter = iota
	// EqualJitter waits temp/2 plus a uniform random time in [0, temp/2]: it
	// never retries almost at once, and its waits add up to at least half
	// their sum without jitter, at the cost of finishing later than
	// FullJitter for about the same number of calls.
	EqualJitter
	// DecorrelatedJitter waits min(MaxDelay, uniform in [BaseDelay, 3·prev]),
	// growing from the previous wait instead of the attempt number. In
	// retryhttp sim it finishes soonest from 20 contending clients up, and
	// makes the fewest calls up to about 50 clients (more than FullJitter
	// beyond).
	DecorrelatedJitter
	// NoJitter waits exactly temp. Clients that failed together retry
	// together; use it only where one client talks to one server.
	NoJitter
)

var jitterNames = [...]string{FullJitter: "full", EqualJitter: "equal", DecorrelatedJitter: "decorrelated", NoJitter: "none"}

// String returns "full", "equal", "decorrelated" or "none", the names
// [ParseJitter] accepts.
func (j Jitter) String() string {
	if j < 0 || int(j) >= len(jitterNames) {
		return fmt.Sprintf("Jitter(%d)", int(j))
	}
	return jitterNames[j]
}

// ParseJitter returns the Jitter named s: "full", "equal", "decorrelated" or
// "none".
func ParseJitter(s string) (Jitter, error) {
	for j, name := range jitterNames {
		if s == name {
			return Jitter(j), nil
		}
	}
	return 0, fmt.Errorf("retryhttp: unknown jitter %q (want full, equal, decorrelated or none)", s)
}
