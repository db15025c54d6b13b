package retryhttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRetryAfterIsHonored(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		value     string
		wantMin   time.Duration // the wait is at least this
		wantMax   time.Duration // and at most this
		wantTries int
	}{
		{"seconds", "7", 7 * time.Second, 7*time.Second + 700*time.Millisecond, 2},
		{"zero seconds", "0", 0, DefaultBaseDelay, 2},
		{"IMF-fixdate", now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, 33 * time.Second, 2},
		{"RFC 850 date", now.Add(10 * time.Second).Format("Monday, 02-Jan-06 15:04:05 GMT"), 10 * time.Second, 11 * time.Second, 2},
		{"asctime date", now.Add(20 * time.Second).Format(time.ANSIC), 20 * time.Second, 22 * time.Second, 2},
		{"date in the past", now.Add(-time.Hour).Format(http.TimeFormat), 0, DefaultBaseDelay, 2},
		{"garbage falls back to backoff", "soon", 0, DefaultBaseDelay, 2},
		{"negative falls back to backoff", "-5", 0, DefaultBaseDelay, 2},
		{"at MaxRetryAfter is honored", "60", time.Minute, time.Minute + 6*time.Second, 2},
		{"past MaxRetryAfter returns at once", "61", 0, 0, 1},
		{"a huge number returns at once", "99999999999999999999999", 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					w.Header().Set("Retry-After", tt.value)
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			tr, clock := newTestTransport(t)
			clock.t = now
			resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
			require.NoError(t, err)
			readAll(t, resp)
			assert.Equal(t, tt.wantTries, int(up.attempts.Load()))
			waits := clock.recorded()
			if tt.wantTries == 1 {
				assert.Empty(t, waits)
				assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
				assert.Equal(t, tt.value, resp.Header.Get("Retry-After"))
				return
			}
			require.Len(t, waits, 1)
			assert.GreaterOrEqual(t, waits[0], tt.wantMin)
			assert.LessOrEqual(t, waits[0], tt.wantMax)
		})
	}
}

func TestRetryAfterSpreadsClientsToldTheSameInstant(t *testing.T) {
	// A hundred clients told "Retry-After: 10" must not all come back in the
	// same millisecond.
	seen := map[time.Duration]bool{}
	for range 100 {
		w := retryAfterWait(10*time.Second, DefaultBaseDelay, nil)
		require.GreaterOrEqual(t, w, 10*time.Second)
		require.LessOrEqual(t, w, 11*time.Second)
		seen[w.Truncate(time.Millisecond)] = true
	}
	assert.Greater(t, len(seen), 50)
}

func TestBackoffWaitsFollowThePolicy(t *testing.T) {
	up := newUpstream(t, statuses(503))
	tr, clock := newTestTransport(t, WithPolicy(Policy{MaxAttempts: 6, BaseDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond, Jitter: NoJitter}),
		WithBudget(nil)) // a quiet client's budget holds two retries
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
	require.NoError(t, err)
	readAll(t, resp)
	ms := time.Millisecond
	assert.Equal(t, []time.Duration{10 * ms, 20 * ms, 40 * ms, 50 * ms, 50 * ms}, clock.recorded())
}

func TestNoWaitStartsThatCannotEndBeforeTheDeadline(t *testing.T) {
	// A wait of 30 s against a deadline 10 s away: the attempt before it
	// has all of those 10 s to come back, however busy the machine.
	up := newUpstream(t, statuses(503, 200))
	tr, clock := newTestTransport(t, WithPolicy(Policy{BaseDelay: 30 * time.Second, MaxDelay: 30 * time.Second, Jitter: NoJitter}))
	tr.now = time.Now // the deadline is on the real clock
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx))
	require.NoError(t, err, "the last response comes back at once")
	readAll(t, resp)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, int32(1), up.attempts.Load())
	assert.Empty(t, clock.recorded())

	// The same holds for a Retry-After longer than what is left.
	up2 := newUpstream(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	resp, err = tr.RoundTrip(mustRequest(t, http.MethodGet, up2.URL, nil).WithContext(ctx2))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, int32(1), up2.attempts.Load())
	assert.Empty(t, clock.recorded())
}

func TestCancelDuringWaitReturnsPromptly(t *testing.T) {
	up := newUpstream(t, statuses(503))
	tr := New(nil, WithPolicy(Policy{BaseDelay: time.Minute, MaxDelay: time.Minute, Jitter: NoJitter}))
	t.Cleanup(tr.CloseIdleConnections)
	// The wait is the real one, told apart only by the moment it starts:
	// the caller cancels 20 ms after that (the cancel was a fixed 20 ms
	// after the server's answer, which a busy machine could read later).
	waiting := make(chan struct{})
	tr.sleep = func(ctx context.Context, d time.Duration) error {
		close(waiting)
		return sleep(ctx, d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var waited atomic.Bool
	go func() {
		<-waiting
		time.Sleep(20 * time.Millisecond)
		waited.Store(true)
		cancel()
	}()
	start := time.Now()
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx))
	elapsed := time.Since(start)
	assert.Nil(t, resp)
	require.ErrorIs(t, err, context.Canceled)
	assert.True(t, waited.Load())
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.True(t, rerr.Waiting)
	assert.Equal(t, 1, rerr.Attempts)
	// A minute's wait was cut short: it returned right after the cancel (the
	// bound is loose only because the machine may be busy).
	assert.Less(t, elapsed, 5*time.Second)
}

func TestCancelWithCauseStillReportsCanceled(t *testing.T) {
	cause := errors.New("shutting down")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	err := sleep(ctx, time.Hour)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, cause)
	assert.NoError(t, sleep(context.Background(), 0))
	assert.NoError(t, sleep(context.Background(), time.Millisecond))
}

func TestCanceledContextStopsRetries(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	up := newUpstream(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		cancel() // the caller gives up while the server answers
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	tr, clock := newTestTransport(t)
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx))
	if err == nil {
		readAll(t, resp)
	}
	assert.Equal(t, int32(1), up.attempts.Load())
	assert.Empty(t, clock.recorded())
}

func TestCancelDuringWaitClosesEveryBody(t *testing.T) {
	// The body for the next attempt is made before the wait; when the wait
	// is canceled it is never sent, and must still be closed.
	up := newUpstream(t, statuses(http.StatusServiceUnavailable))
	cancelingTransport := func() (*Transport, context.Context) {
		tr, _ := newTestTransport(t)
		ctx, cancel := context.WithCancel(context.Background())
		tr.sleep = func(ctx context.Context, _ time.Duration) error { cancel(); return ctx.Err() }
		return tr, ctx
	}

	tr, ctx := cancelingTransport()
	streamed := &closeTracker{Reader: strings.NewReader("abc")}
	req := mustRequest(t, http.MethodPut, up.URL, onlyReader{streamed}).WithContext(ctx)
	req.Body = streamed
	_, err := tr.RoundTrip(req)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, int32(1), streamed.closes.Load(), "a body without GetBody is closed once")

	tr, ctx = cancelingTransport()
	var copies []*closeTracker
	req = mustRequest(t, http.MethodPut, up.URL, strings.NewReader("abc")).WithContext(ctx)
	req.GetBody = func() (io.ReadCloser, error) {
		c := &closeTracker{Reader: strings.NewReader("abc")}
		copies = append(copies, c)
		return c, nil
	}
	_, err = tr.RoundTrip(req)
	require.ErrorIs(t, err, context.Canceled)
	require.Len(t, copies, 1)
	assert.Equal(t, int32(1), copies[0].closes.Load(), "the copy GetBody made for the retry is closed")
}
