package retryhttp

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests pin the quota pacing when the answers of a host are read out
// of order, as they are when the goroutines that read them are scheduled
// late (a busy machine): an answer the server sent early may be read after
// one it sent later. The clock is given to the host's state, so what is
// read when is exact, whatever the machine's speed.

// quotaWindowEnd is the end of the server's window in these tests (2 s
// windows, aligned on the clock as GitHub's and most servers' are); the
// next one ends 2 s later.
var quotaWindowEnd = time.Date(2026, 11, 27, 12, 0, 2, 0, time.UTC)

// answer is a response's status and header.
type answer struct {
	status int
	header http.Header
}

// github is an answer with GitHub's fields: the reset in epoch seconds.
func github(status, limit, remaining int, reset time.Time) answer {
	h := http.Header{}
	h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	return answer{status, h}
}

// draft is an answer with the draft's fields: the reset in seconds from
// when the server sent it, rounded up as servers do.
func draft(status, limit, remaining int, sent, reset time.Time) answer {
	h := http.Header{}
	t := (reset.Sub(sent) + time.Second - 1) / time.Second
	h.Set("RateLimit", fmt.Sprintf(`"default";r=%d;t=%d`, remaining, t))
	h.Set("RateLimit-Policy", fmt.Sprintf(`"default";q=%d;w=2`, limit))
	return answer{status, h}
}

// read gives h an answer to a request it admitted, as the Transport does
// when the answer is read at now.
func read(h *hostState, now time.Time, a answer) {
	s := readSignals(a.header, a.status == http.StatusTooManyRequests, now)
	h.answered(true, &s, hostHold(&http.Response{StatusCode: a.status, Header: a.header}, &s, now), now)
}

// admitAll admits requests at now until the host says to wait, and returns
// how many went; none is answered meanwhile.
func admitAll(t *testing.T, h *hostState, now time.Time) int {
	t.Helper()
	for n := range 1000 {
		if _, ok := h.admit(now); !ok {
			return n
		}
	}
	require.Fail(t, "the host took 1000 requests at once")
	return 0
}

// admitN admits n requests at now; none is answered meanwhile.
func admitN(t *testing.T, h *hostState, now time.Time, n int) {
	t.Helper()
	for i := range n {
		_, ok := h.admit(now)
		require.True(t, ok, "request %d of %d", i+1, n)
	}
}

// newQuotaHost returns the state of a host whose first answer, at start,
// said limit requests per window, remaining left, until quotaWindowEnd.
func newQuotaHost(start time.Time, a answer) *hostState {
	var hs hosts
	h := hs.getOrAdd(hostKey{scheme: "https", host: "api.example.test"}, start)
	s := readSignals(a.header, false, start)
	h.answered(false, &s, time.Time{}, start)
	return h
}

func TestAQuotaLoweredMidWindowStaysLoweredWhenOlderAnswersAreReadAfter(t *testing.T) {
	// The server allows 50 per window, then lowers it to 15 while 20 of
	// this client's requests are in flight: the first answer read is a 429
	// that says so, the 19 others were sent by the server before it
	// lowered its quota, and are read after. The next window has 15.
	end := quotaWindowEnd
	start := end.Add(-2 * time.Second)
	h := newQuotaHost(start, github(200, 50, 49, end))
	admitN(t, h, start.Add(100*time.Millisecond), 20)

	read(h, end.Add(-900*time.Millisecond), github(http.StatusTooManyRequests, 15, 0, end))
	for i := range 19 {
		read(h, end.Add(-800*time.Millisecond), github(200, 50, 30-i, end))
	}
	assert.Equal(t, 15, admitAll(t, h, end.Add(10*time.Millisecond)),
		"the next window: 15 at once, the quota the server announced last, although older answers read after it said 50")
}

func TestAnAnswerOfAnEndedWindowReadLateSaysNothingOfTheNextOne(t *testing.T) {
	// The window's answers are read before its end, but one: sent by the
	// server before it lowered its quota from 50 to 15, it is read after
	// the window ended, when the quota is full again. It says 30 are left
	// of 50, of a window that is over: the new window has 15.
	end := quotaWindowEnd
	start := end.Add(-2 * time.Second)
	h := newQuotaHost(start, github(200, 15, 14, end))
	require.Equal(t, 14, admitAll(t, h, start.Add(100*time.Millisecond)))
	for range 13 {
		read(h, start.Add(200*time.Millisecond), github(200, 15, 0, end))
	}
	read(h, end.Add(10*time.Millisecond), github(200, 50, 30, end)) // sent long ago, read only now
	assert.Equal(t, 15, admitAll(t, h, end.Add(20*time.Millisecond)), "the new window has the 15 the server announced")
}

func TestAnOlderAnswerThatLooksNewerDoesNotReopenTheWindow(t *testing.T) {
	// The draft's reset is relative: t=1 sent 0.999 s before the window's
	// end, t=2 sent 1.001 s before it (rounded up). Read 9 ms late, the
	// older answer seems to announce a window that ends a second after the
	// current one: a newer window, with 26 left of 50. It is the current
	// window, in which the server lowered its quota to 15 and refused this
	// client's requests. The next window, which starts at the end, must
	// not get more than 15 of them.
	end := quotaWindowEnd
	start := end.Add(-2 * time.Second)
	h := newQuotaHost(start, draft(200, 50, 49, start, end))
	require.Equal(t, 49, admitAll(t, h, start.Add(100*time.Millisecond)))

	lowered := end.Add(-999 * time.Millisecond)
	read(h, lowered, draft(http.StatusTooManyRequests, 15, 0, lowered, end))
	earlier := end.Add(-1001 * time.Millisecond)
	for range 48 {
		read(h, end.Add(-990*time.Millisecond), draft(200, 50, 26, earlier, end))
	}
	sent := 0
	for now := end; now.Before(end.Add(2 * time.Second)); now = now.Add(10 * time.Millisecond) {
		sent += admitAll(t, h, now) // none is answered: a server far away
	}
	assert.LessOrEqual(t, sent, 15, "requests sent in the window after the one in which the quota was lowered to 15")
	assert.Positive(t, sent, "the next window is used")
}

func TestARaisedQuotaIsUsedFromTheWindowAfterTheOneThatAnnouncedIt(t *testing.T) {
	// A quota is lowered at once, whatever the order answers are read in,
	// and raised once a window that announced only the higher one ends.
	end := quotaWindowEnd
	start := end.Add(-2 * time.Second)
	h := newQuotaHost(start, github(200, 15, 14, end))
	require.Equal(t, 14, admitAll(t, h, start))
	for range 14 {
		read(h, start.Add(100*time.Millisecond), github(200, 15, 0, end))
	}
	next := end.Add(2 * time.Second)
	require.Equal(t, 15, admitAll(t, h, end), "the window after: 15, as announced")
	for i := range 15 {
		read(h, end.Add(100*time.Millisecond), github(200, 50, 49-i, next)) // raised to 50
	}
	assert.Equal(t, 50, admitAll(t, h, next), "the window after that: the 50 announced")
}

func TestAFirstAnswerReadAfterItsWindowEndedStillTeachesTheQuota(t *testing.T) {
	// A slow server: the first answer, sent before the window's end, is
	// read after it. What was left of that window is stale; the quota,
	// 10 a window, is not: the window under way gets 10 at once.
	end := quotaWindowEnd
	var hs hosts
	h := hs.getOrAdd(hostKey{scheme: "https", host: "api.example.test"}, end)
	read(h, end.Add(50*time.Millisecond), github(200, 10, 9, end))
	assert.Equal(t, 10, admitAll(t, h, end.Add(60*time.Millisecond)))
}
