package retryhttp

import (
	"log/slog"
	"strconv"
)

// Option configures a [Transport] built by [New].
type Option interface {
	apply(*Transport)
}

type optionFunc func(*Transport)

func (f optionFunc) apply(t *Transport) { f(t) }

// WithPolicy sets the Transport's retry policy. Without it, or with the zero
// Policy, the documented defaults apply. An invalid Policy (see
// [Policy.Validate]) makes every RoundTrip fail with its error; New itself
// never fails.
func WithPolicy(p Policy) Option {
	return optionFunc(func(t *Transport) { t.policy = p })
}

// WithLogger makes the Transport write one record per retry to l, at Info
// level: the method, the URL without userinfo or query, the attempt that
// failed, why, and the wait. Absent or nil: no logging.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(t *Transport) { t.logger = l })
}

// WithReplayBuffer sets how many bytes of a request body that has no GetBody
// the Transport keeps so a retry can send them again (default
// DefaultReplayBuffer, 64 KiB). The body is never read ahead: it streams to
// the server as usual while the first limit bytes are kept. If more than
// limit bytes were read when an attempt fails, the request is not retried.
// 0 keeps nothing: such a body is retried only when an attempt failed
// before reading any of it (a refused connection, say). A negative limit
// makes every RoundTrip fail. Bodies with GetBody (those from
// http.NewRequest with a *bytes.Buffer, *bytes.Reader or *strings.Reader)
// are replayed through GetBody and never buffered.
func WithReplayBuffer(limit int) Option {
	return optionFunc(func(t *Transport) {
		if limit < 0 {
			t.err = &PolicyError{Field: "ReplayBuffer", Reason: strconv.Itoa(limit) + " is negative"}
			return
		}
		t.replayLimit = limit
		t.replaySet = true
	})
}

// WithMetrics makes the Transport count its requests, attempts, retries and
// waits in m (see [Metrics]). Several Transports may share one *Metrics.
// Absent or nil: no metrics.
func WithMetrics(m *Metrics) Option {
	return optionFunc(func(t *Transport) { t.metrics = m })
}

// WithBudget makes the Transport draw its retries from b, which any number
// of Transports may share (see [Budget]). Without this option a Transport
// has a default budget of its own. WithBudget(nil) turns the budget off:
// every retry the Policy allows is then made, even during an outage.
func WithBudget(b *Budget) Option {
	return optionFunc(func(t *Transport) {
		t.budget = b
		t.budgetSet = true
	})
}
