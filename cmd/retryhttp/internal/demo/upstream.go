package demo

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// faults says how the embedded upstream misbehaves.
type faults struct {
	errorRate    float64       // answered 503
	throttleRate float64       // answered 429 with Retry-After
	retryAfter   time.Duration // the Retry-After of the 429s
	resetRate    float64       // connection reset before any response
	latency      time.Duration // time to answer
	slowRate     float64       // share of requests answered after slowLatency instead: a slow tail
	slowLatency  time.Duration
	quota        int // requests allowed per quotaWindow (0: no quota), announced with RateLimit
	quotaWindow  time.Duration
	capacity     int // requests per second served (0: no limit); a bare 429 beyond, see capacityLimit
}

func (f faults) validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"-error-rate", f.errorRate}, {"-throttle-rate", f.throttleRate}, {"-reset-rate", f.resetRate}, {"-slow-rate", f.slowRate}} {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("%s: %v is not between 0 and 1", r.name, r.v)
		}
	}
	if sum := f.errorRate + f.throttleRate + f.resetRate; sum > 1 {
		return fmt.Errorf("-error-rate, -throttle-rate and -reset-rate add up to %v, more than 1", sum)
	}
	if f.retryAfter < 0 || f.latency < 0 || f.slowLatency < 0 {
		return fmt.Errorf("-retry-after, -latency and -slow-latency must not be negative")
	}
	if f.retryAfter%time.Second != 0 {
		return fmt.Errorf("-retry-after: %v is not a whole number of seconds (Retry-After has no fractions)", f.retryAfter)
	}
	if f.quota < 0 {
		return fmt.Errorf("-quota: %d is negative (0: no quota)", f.quota)
	}
	if f.capacity < 0 {
		return fmt.Errorf("-capacity: %d is negative (0: no limit)", f.capacity)
	}
	if f.quota > 0 && (f.quotaWindow < time.Second || f.quotaWindow%time.Second != 0) {
		return fmt.Errorf("-quota-window: %v is not a whole number of seconds", f.quotaWindow)
	}
	return nil
}

// quotaKeeper enforces a quota of requests per fixed window and announces
// it as the IETF draft does: RateLimit-Policy ("default";q=Q;w=W) and
// RateLimit ("default";r=left;t=seconds until the window ends); a request
// over the quota gets 429 with r=0.
type quotaKeeper struct {
	quota  int
	window time.Duration

	mu    sync.Mutex
	start time.Time
	used  int
}

// admit counts one request and announces the quota on w; false means it is
// over the quota.
func (q *quotaKeeper) admit(w http.ResponseWriter) bool {
	now := time.Now()
	start := now.Truncate(q.window)
	q.mu.Lock()
	if !start.Equal(q.start) {
		q.start, q.used = start, 0
	}
	q.used++
	left := q.quota - q.used
	q.mu.Unlock()
	reset := int(math.Ceil(start.Add(q.window).Sub(now).Seconds()))
	w.Header().Set("RateLimit-Policy", fmt.Sprintf(`"default";q=%d;w=%d`, q.quota, int(q.window/time.Second)))
	w.Header().Set("RateLimit", fmt.Sprintf(`"default";r=%d;t=%d`, max(left, 0), reset))
	return left >= 0
}

// capacityLimit is the upstream's -capacity: a token bucket that fills
// with capacity tokens a second and holds one second's worth, as a server's
// rate limiter does (golang.org/x/time/rate, an API gateway's rate and
// burst, Envoy's local rate limit). A request that finds it empty gets a
// bare 429: no Retry-After, no RateLimit headers, nothing that says how
// much is allowed. Unlike a fixed window counted per second, it lets no
// burst of twice the capacity through across the edge of two windows, and
// refuses the requests beyond the capacity all through the second instead
// of every request at the end of each window.
type capacityLimit struct {
	capacity float64

	mu     sync.Mutex
	tokens float64
	filled time.Time // when tokens was last topped up
}

// newCapacityLimit returns a limit of n requests a second, its bucket full
// at now.
func newCapacityLimit(n int, now time.Time) *capacityLimit {
	return &capacityLimit{capacity: float64(n), tokens: float64(n), filled: now}
}

// admit reports whether a request that arrives at now is served, taking
// its token.
func (l *capacityLimit) admit(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if d := now.Sub(l.filled); d > 0 {
		l.tokens = min(l.capacity, l.tokens+d.Seconds()*l.capacity)
		l.filled = now
	}
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// outage returns the faults of a total outage: every request is answered
// 503 after f's latency.
func (f faults) outage() faults {
	return faults{errorRate: 1, latency: f.latency}
}

// upstream is the embedded flaky upstream. What it does can change while it
// runs: the demo's phases switch it from transient failures to an outage
// and back.
type upstream struct {
	*httptest.Server
	current atomic.Pointer[http.HandlerFunc]
}

// startUpstream starts the embedded flaky upstream on 127.0.0.1, failing
// as f says.
func startUpstream(f faults) (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	u := &upstream{}
	u.serve(f.handler())
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*u.current.Load())(w, r)
	}))
	u.Listener.Close()
	u.Listener = ln
	u.Start()
	return u, nil
}

// serve makes h answer the requests that arrive from now on.
func (u *upstream) serve(h http.HandlerFunc) { u.current.Store(&h) }

// handler returns what answers the requests now.
func (u *upstream) handler() http.HandlerFunc { return *u.current.Load() }

// String describes the failures f makes, for the demo's output; rates of
// zero are left out.
func (f faults) String() string {
	var parts []string
	if f.errorRate > 0 {
		parts = append(parts, fmt.Sprintf("503 %s", rate(f.errorRate)))
	}
	if f.throttleRate > 0 {
		parts = append(parts, fmt.Sprintf("429 %s with Retry-After %v", rate(f.throttleRate), f.retryAfter))
	}
	if f.resetRate > 0 {
		parts = append(parts, fmt.Sprintf("resets %s", rate(f.resetRate)))
	}
	parts = append(parts, fmt.Sprintf("latency %v", f.latency))
	if f.slowRate > 0 {
		parts = append(parts, fmt.Sprintf("%s take %v", rate(f.slowRate), f.slowLatency))
	}
	if f.capacity > 0 {
		parts = append(parts, fmt.Sprintf("capacity %d requests/s, a bare 429 beyond", f.capacity))
	}
	return strings.Join(parts, ", ")
}

// rate formats a share as a percentage, to a thousandth of a percent and
// with no more digits than it needs: 0.07 is "7%", not 7.000000000000001%.
func rate(r float64) string {
	return strconv.FormatFloat(math.Round(100_000*r)/1000, 'f', -1, 64) + "%"
}

func (f faults) handler() http.HandlerFunc {
	retryAfter := strconv.Itoa(int(f.retryAfter / time.Second))
	var quota *quotaKeeper
	if f.quota > 0 {
		quota = &quotaKeeper{quota: f.quota, window: f.quotaWindow}
	}
	var capacity *capacityLimit
	if f.capacity > 0 {
		capacity = newCapacityLimit(f.capacity, time.Now())
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if capacity != nil && !capacity.admit(time.Now()) {
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
		if quota != nil && !quota.admit(w) {
			http.Error(w, "quota spent", http.StatusTooManyRequests)
			return
		}
		latency := f.latency
		if f.slowRate > 0 && rand.Float64() < f.slowRate {
			latency = f.slowLatency
		}
		if latency > 0 {
			t := time.NewTimer(latency)
			select {
			case <-t.C:
			case <-r.Context().Done(): // a hedge won, or the client gave up
				t.Stop()
				return
			}
		}
		p := rand.Float64()
		switch {
		case p < f.resetRate:
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				if tcp, ok := conn.(*net.TCPConn); ok {
					_ = tcp.SetLinger(0) // close with a reset
				}
				_ = conn.Close()
			}
		case p < f.resetRate+f.errorRate:
			http.Error(w, "upstream unavailable", http.StatusServiceUnavailable)
		case p < f.resetRate+f.errorRate+f.throttleRate:
			w.Header().Set("Retry-After", retryAfter)
			http.Error(w, "slow down", http.StatusTooManyRequests)
		default:
			_, _ = io.WriteString(w, "ok\n")
		}
	}
}
