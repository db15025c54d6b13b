package retryhttp

import (
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hangFirst answers the first attempt only when released or when the
// client goes away, and every other attempt at once.
func hangFirst(t *testing.T) *upstream {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
}

func waitForGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	assert.LessOrEqual(t, runtime.NumGoroutine(), before, "goroutines left behind")
}

func TestAttemptTimeoutRetriesAHungAttempt(t *testing.T) {
	before := runtime.NumGoroutine()
	up := hangFirst(t)
	base := cleanhttp.DefaultPooledTransport()
	var seen []Attempt
	tr := New(base, WithPolicy(Policy{AttemptTimeout: 200 * time.Millisecond, BaseDelay: time.Millisecond}),
		WithObserver(func(a Attempt) { seen = append(seen, a) }))
	// The caller's deadline only guards against a hang: the attempt
	// timeout, not the deadline, must end the hung attempt (the first
	// attempt's error says which).
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx))
	require.NoError(t, err)
	assert.Equal(t, "ok", readAll(t, resp))
	require.Len(t, seen, 2)
	assert.True(t, seen[0].Retry)
	assert.Equal(t, "timeout", seen[0].Reason)
	assert.ErrorIs(t, seen[0].Err, ErrAttemptTimeout)
	assert.NotErrorIs(t, seen[0].Err, context.DeadlineExceeded, "the attempt timeout ended it, not the caller's deadline")
	var netErr net.Error
	require.ErrorAs(t, seen[0].Err, &netErr)
	assert.True(t, netErr.Timeout())
	assert.GreaterOrEqual(t, seen[0].Duration, 200*time.Millisecond)
	base.CloseIdleConnections()
	up.Close()
	waitForGoroutines(t, before)
}

func TestAttemptTimeoutNeverCutsABodyBeingRead(t *testing.T) {
	// Headers at once (far within the 500 ms attempt timeout, whatever
	// the machine), then the body slowly, for 750 ms: the attempt's bound
	// is over once the headers are in.
	up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		for i := range 5 {
			_, _ = io.WriteString(w, strings.Repeat(string(rune('a'+i)), 10))
			http.NewResponseController(w).Flush()
			time.Sleep(150 * time.Millisecond)
		}
	})
	tr, _ := newTestTransport(t, WithPolicy(Policy{AttemptTimeout: 500 * time.Millisecond}))
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
	require.NoError(t, err)
	body := readAll(t, resp)
	assert.Len(t, body, 50, "750 ms of body after a 500 ms attempt timeout")
	assert.Equal(t, int32(1), up.attempts.Load())
}

func TestAttemptTimeoutOfAPOST(t *testing.T) {
	// The server saw it: not sent again, and the error says why.
	up := hangFirst(t)
	tr, _ := newTestTransport(t, WithPolicy(Policy{AttemptTimeout: 100 * time.Millisecond}))
	_, err := tr.RoundTrip(mustRequest(t, http.MethodPost, up.URL, strings.NewReader("order")))
	require.ErrorIs(t, err, ErrAttemptTimeout)
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, ReasonMethod, rerr.Reason)
	assert.Equal(t, int32(1), up.attempts.Load())

	// The connection was never made (a dial that hangs): sent again.
	ok := newUpstream(t, statuses(201))
	var dials atomic.Int32
	unblock := make(chan struct{})
	t.Cleanup(func() { close(unblock) })
	base := cleanhttp.DefaultPooledTransport()
	t.Cleanup(base.CloseIdleConnections)
	base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) == 1 {
			select { // a SYN that is never answered
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-unblock:
				return nil, net.ErrClosed
			}
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	// The second attempt's dial and headers must come within the attempt
	// timeout: 500 ms, far more than loopback takes on a busy machine.
	tr2, _ := newTestTransport(t, WithPolicy(Policy{AttemptTimeout: 500 * time.Millisecond}))
	tr2.base = base
	resp, err := tr2.RoundTrip(mustRequest(t, http.MethodPost, ok.URL, strings.NewReader("order")))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	assert.Equal(t, int32(1), ok.attempts.Load())
}

func TestCallersDeadlineBeforeTheAttemptTimeout(t *testing.T) {
	up := hangFirst(t)
	tr, _ := newTestTransport(t, WithPolicy(Policy{AttemptTimeout: time.Minute}))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NotErrorIs(t, err, ErrAttemptTimeout)
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, ReasonDeadline, rerr.Reason)
}

func TestAttemptTimeoutLeavesNothingBehind(t *testing.T) {
	// Many requests with a timeout that never fires, their bodies read and
	// closed: no goroutine, timer or context outlives them.
	before := runtime.NumGoroutine()
	up := newUpstream(t, statuses(503, 200))
	base := cleanhttp.DefaultPooledTransport()
	tr := New(base, WithPolicy(Policy{AttemptTimeout: time.Minute, BaseDelay: time.Microsecond}))
	for range 50 {
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
		require.NoError(t, err)
		readAll(t, resp)
	}
	base.CloseIdleConnections()
	up.Close()
	waitForGoroutines(t, before)
}

func TestNegativeAttemptTimeoutIsInvalid(t *testing.T) {
	err := Policy{AttemptTimeout: -time.Second}.Validate()
	var perr *PolicyError
	require.ErrorAs(t, err, &perr)
	assert.Equal(t, "AttemptTimeout", perr.Field)
}
