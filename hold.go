package retryhttp

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrThrottled is the errors.Is target for a request the Transport did not
// send because the host's quota is spent: it would have had to wait for the
// host past its context's deadline or its Policy's MaxRetryAfter, or it
// was made with retries off (ContextWithoutRetries, MaxAttempts 1), which
// never waits for a quota. With WithAdaptiveRate, it is also the target
// for a request that would have waited for its host's adaptive rate past
// the deadline or MaxRetryAfter. errors.As finds a *ThrottledError that
// says until when, and which.
var ErrThrottled = errors.New("retryhttp: the host's quota is spent")

// ThrottledError says which host was held, and until when.
type ThrottledError struct {
	Host  string    // scheme://host[:port], as the request's URL names it
	Until time.Time // when the host's quota refills, as the server said; or, when Adaptive, when the request's turn would have come
	// Adaptive says that the host's adaptive rate held the request (see
	// WithAdaptiveRate), not a quota the server announced.
	Adaptive bool
}

func (e *ThrottledError) Error() string {
	if e.Adaptive {
		return e.Host + "'s adaptive rate has no room for the request until " + e.Until.UTC().Format(time.RFC3339Nano)
	}
	return e.Host + "'s quota is spent until " + e.Until.UTC().Format(time.RFC3339Nano)
}

// Is reports whether target is ErrThrottled.
func (e *ThrottledError) Is(target error) bool { return target == ErrThrottled }

// maxHosts bounds how many hosts a Transport keeps a quota for; maxHold how
// far ahead a server may hold its host.
const (
	maxHosts = 1024
	maxHold  = 24 * time.Hour
)

// windowSlack is how far apart two announcements of the reset of one
// quota window may be: resets come in whole seconds.
const windowSlack = time.Second

// quotaPoll is how long a request waits, when a new window's quota is taken
// by the requests in flight, before it looks again: their answers announce
// the window.
const quotaPoll = 20 * time.Millisecond

// hostKey names a host: scheme, host and port, with the host in lower case
// and the scheme's default port left out, so that every spelling of one
// host is one key; and, for holds and quotas, the scope that WithHoldKey's
// function gave the request.
type hostKey struct{ scheme, host, scope string }

// hostKeyOf returns the key of the host u names. It allocates only for a
// host written with upper-case letters.
func hostKeyOf(u *url.URL) hostKey {
	scheme, host := u.Scheme, u.Host
	if hasUpper(scheme) {
		scheme = strings.ToLower(scheme)
	}
	if hasUpper(host) {
		host = strings.ToLower(host)
	}
	switch {
	case scheme == "http" && strings.HasSuffix(host, ":80"):
		host = host[:len(host)-len(":80")]
	case scheme == "https" && strings.HasSuffix(host, ":443"):
		host = host[:len(host)-len(":443")]
	}
	return hostKey{scheme: scheme, host: host}
}

// hostKey returns the key of the hold and quota that req is subject to:
// its host's, within the scope WithHoldKey's function gives it.
func (t *Transport) hostKey(req *http.Request) hostKey {
	k := hostKeyOf(req.URL)
	if t.holdKey != nil {
		k.scope = t.holdKey(req)
	}
	return k
}

// WithHoldKey makes the holds and quota pacing of a host (see ErrThrottled)
// apply per host and per key(req), rather than per host: requests to one
// host whose keys differ are held and paced apart. Without it, a host is
// held for all the requests a Transport sends to it (its scheme, host and
// port, whatever their path or credentials), which is right for a quota per
// client or per IP address. An SDK that sends the requests of several API
// keys or tokens to one host, each with a quota of its own, returns the
// credential (or a digest of it) so that one key's 429 does not hold the
// others.
//
// key is called only while some host has a hold or a quota, or an awake
// adaptive rate (see WithAdaptiveRate), for each request to be admitted and
// each response that announces limits or throttles; it must
// be quick and safe for concurrent use. The number of keys kept is bounded
// like the number of hosts. Absent or nil: one hold per host.
func WithHoldKey(key func(req *http.Request) string) Option {
	return optionFunc(func(t *Transport) { t.holdKey = key })
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// hosts is what a Transport knows of the quotas of the hosts it talks to:
// the hosts whose responses said their quota is spent, or announced how
// much is left. A Transport with no such host pays one atomic load per
// request for it, and nothing else.
type hosts struct{ hostMap[hostState] }

// hostState is one host's quota, as its responses announce it.
type hostState struct {
	mu        sync.Mutex
	holdUntil time.Time // no request before it: the quota is spent until then
	remaining int64     // requests left in the window, as last announced; -1: unknown
	reset     time.Time // when the window ends; zero: no window known
	limit     int64     // requests per window: the least announced in the latest window; -1: unknown
	inFlight  int64     // requests admitted and not answered yet
	admitted  int64     // requests admitted in the window, answered or not
	lowest    int64     // the least quota known for the window: limit when it began, or less announced since; -1: unknown
	seen      time.Time // when a response last said something
}

// getOrAdd returns the state of the host named by k, adding it when it is
// not there. When maxHosts are known, an eighth of them are forgotten at
// once (so that the copy of the map is paid once per many new hosts):
// those with nothing pending first, then those not held, heard from least
// recently, and a held host only when every host is held.
func (hs *hosts) getOrAdd(k hostKey, now time.Time) *hostState {
	return hs.hostMap.getOrAdd(k, maxHosts,
		func() *hostState { return &hostState{remaining: -1, limit: -1, lowest: -1, seen: now} },
		func(m map[hostKey]*hostState) { evictHosts(m, maxHosts/8, now) })
}

// evictHosts deletes n hosts from m, those that matter least first: idle
// ones, then ones not held (least recently heard from first), then held
// ones (the soonest released first).
func evictHosts(m map[hostKey]*hostState, n int, now time.Time) {
	type candidate struct {
		key  hostKey
		rank int       // 0 idle, 1 not held, 2 held
		at   time.Time // when last heard from, or when released
	}
	all := make([]candidate, 0, len(m))
	for key, h := range m {
		h.mu.Lock()
		c := candidate{key: key, at: h.seen}
		switch {
		case now.Before(h.holdUntil):
			c.rank, c.at = 2, h.holdUntil
		case now.Before(h.reset) || h.inFlight > 0:
			c.rank = 1
		}
		h.mu.Unlock()
		all = append(all, c)
	}
	slices.SortFunc(all, func(a, b candidate) int {
		if a.rank != b.rank {
			return a.rank - b.rank
		}
		return a.at.Compare(b.at)
	})
	for _, c := range all[:min(n, len(all))] {
		delete(m, c.key)
	}
}

// admit lets a request go to the host, counting it in flight, or says until
// when the host is held: its quota is spent, the requests in flight take
// what the last response said was left, or the window's requests already
// number the least quota known for it. The last check holds when answers
// are read out of order, as they are when the goroutines that read them run
// late: an answer read late may say that more is left than one read before
// it did, or repeat a quota the server has since lowered.
func (h *hostState) admit(now time.Time) (until time.Time, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rollLocked(now)
	if now.Before(h.holdUntil) {
		return h.holdUntil, false
	}
	if (h.remaining >= 0 && h.remaining-h.inFlight <= 0) || (h.lowest >= 0 && h.admitted >= h.lowest) {
		switch {
		case !h.reset.IsZero():
			return h.reset, false
		case h.inFlight > 0: // a new window, of unknown end: the answers in flight will say
			return now.Add(quotaPoll), false
		} // nothing in flight to learn from: this request will
	}
	h.inFlight++
	h.admitted++
	return time.Time{}, true
}

// rollLocked starts a new window once the announced one has ended: the
// quota is full again, as far as it is known: the least announced in the
// window that ended.
func (h *hostState) rollLocked(now time.Time) {
	if !h.reset.IsZero() && !now.Before(h.reset) {
		h.remaining, h.reset = h.limit, time.Time{}
		h.admitted, h.lowest = 0, h.limit
	}
}

// answered records a response (or an error) of a request to the host:
// the request is no longer in flight (when it was admitted), and what the
// response says of the quota is learned. hold, when not zero, is when the
// host's quota refills according to a throttling response.
func (h *hostState) answered(admitted bool, s *signals, hold time.Time, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if admitted && h.inFlight > 0 {
		h.inFlight--
	}
	if s == nil {
		return
	}
	h.seen = now
	h.rollLocked(now)
	// A window that has ended by the time its news is read (a reset now or
	// in the past) says nothing of the window under way, but its quota
	// when none is known yet: the window under way has that much.
	quota := s.quota && s.reset > 0
	if s.quota && !quota && s.limit >= 0 && h.limit < 0 {
		h.limit, h.lowest = s.limit, s.limit
		if h.reset.IsZero() {
			h.remaining = s.limit
		}
	}
	if quota {
		// Resets are announced in whole seconds: announcements of one
		// window differ by less than windowSlack, a later window's come
		// later than that. Responses arrive out of order: the least left
		// in a window is the newest news, and an older window's news is
		// stale.
		reset := now.Add(min(s.reset, maxHold))
		switch {
		case h.reset.IsZero() || reset.After(h.reset.Add(windowSlack)): // a newer window
			// An answer read late may be older news than it seems: a reset
			// in relative seconds, read late, looks later. So a quota is
			// raised only by the first news after a window ended, and the
			// window's requests are what the server counted and what is
			// in flight, or fewer.
			if s.limit >= 0 {
				if h.reset.IsZero() || h.limit < 0 || s.limit < h.limit {
					h.limit = s.limit
				}
				h.admitted = min(h.admitted, h.inFlight+max(0, s.limit-s.remaining))
			}
			h.remaining, h.reset = s.remaining, reset
		case reset.Before(h.reset.Add(-windowSlack)): // an older window
			return
		default: // the same window
			h.remaining = min(h.remaining, s.remaining)
			if reset.Before(h.reset) {
				h.reset = reset
			}
			if s.limit >= 0 && (h.limit < 0 || s.limit < h.limit) {
				h.limit = s.limit
			}
		}
		if s.limit >= 0 && (h.lowest < 0 || s.limit < h.lowest) {
			h.lowest = s.limit
		}
		if s.remaining == 0 && hold.IsZero() && reset.After(h.holdUntil) {
			h.holdUntil = reset
		}
	}
	if s.tokensSpent && s.tokensReset > 0 {
		// A quota of tokens spent (OpenAI's, Anthropic's): no request
		// until it refills, whatever the quota of requests says; the
		// window of requests is left as it is.
		if u := now.Add(min(s.tokensReset, maxHold)); u.After(h.holdUntil) {
			h.holdUntil = u
		}
	}
	if !hold.IsZero() {
		// The wait the response asked for, in the order of precedence
		// (Retry-After first), is when the quota refills.
		if hold.After(h.holdUntil) {
			h.holdUntil = hold
		}
		if quota && h.reset.After(hold) {
			h.reset = hold
		}
	}
}

// hostHold returns when the host's quota refills according to a response,
// or the zero time when it does not say: a 429 with any wait signal, a 403
// that is GitHub's primary rate limit, or any response whose announced
// quota is spent (which answered learns itself). A 503 with Retry-After
// holds only its own request: it often concerns one backend behind a
// shared host.
func hostHold(resp *http.Response, s *signals, now time.Time) time.Time {
	if s.hasWait && (resp.StatusCode == http.StatusTooManyRequests || throttled(resp)) {
		return now.Add(min(s.wait, maxHold))
	}
	return time.Time{}
}
