package retryhttp

import "fmt"

// Jitter chooses how a backoff wait is randomized, after the AWS Architecture
// Blog post "Exponential Backoff And Jitter" (2015). Randomness keeps a crowd
// of clients that failed together from coming back together. See
// [Policy.Delay] for the formulas.
type Jitter int

const (
	// FullJitter waits a uniform random time in [0, temp]. It spreads clients
	// the widest and, in the post's simulation, finishes the work soonest
	// with the fewest calls. The zero value.
	FullJitter Jitter = iota
	// EqualJitter waits temp/2 plus a uniform random time in [0, temp/2]: it
	// never retries almost at once, at the cost of finishing later.
	EqualJitter
	// DecorrelatedJitter waits min(MaxDelay, uniform in [BaseDelay, 3·prev]),
	// growing from the previous wait instead of the attempt number.
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
