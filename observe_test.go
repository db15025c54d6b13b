package retryhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestObserversSeeEveryAttempt(t *testing.T) {
	up := newUpstream(t, statuses(503, 502, 200))
	var first, second []Attempt
	tr, clock := newTestTransport(t,
		WithObserver(func(a Attempt) { first = append(first, a) }),
		WithObserver(nil),
		WithObserver(func(a Attempt) {
			require.Len(t, first, len(second)+1, "observers run in the order given")
			second = append(second, a)
		}))
	tr.base = slowBase{tr.base, clock, 7 * time.Millisecond} // each attempt takes 7 ms of the Transport's clock
	req := mustRequest(t, http.MethodGet, up.URL, nil)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	readAll(t, resp)
	require.Len(t, first, 3)
	assert.Equal(t, first, second)
	waits := clock.recorded()
	for i, a := range first {
		assert.Equal(t, i+1, a.Number)
		assert.Equal(t, []int{503, 502, 200}[i], a.Response.StatusCode)
		assert.NoError(t, a.Err)
		assert.Equal(t, 7*time.Millisecond, a.Duration, "measured with the Transport's clock")
		assert.Equal(t, i < 2, a.Retry)
		assert.Equal(t, []string{"503", "502", ""}[i], a.Reason)
		if i < 2 {
			assert.Equal(t, waits[i], a.Wait)
		}
		assert.Equal(t, i+1, AttemptFromContext(a.Request.Context()))
	}
	assert.Same(t, req, first[0].Request)
}

func TestEveryGiveUpSaysWhy(t *testing.T) {
	closed := "http://" + closedAddr(t) + "/"
	busy := newUpstream(t, statuses(503))
	long := newUpstream(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	tlsUp := newTLSUpstream(t)
	tests := []struct {
		name   string
		opts   []Option
		req    func() *http.Request
		reason string
		inErr  string // in the *Error's message, when there is no response
	}{
		{"exhausted", nil, func() *http.Request { return mustRequest(t, http.MethodGet, closed, nil) }, ReasonExhausted, "after 3 attempts"},
		{"method", nil, func() *http.Request {
			return mustRequest(t, http.MethodPost, busy.URL, strings.NewReader("x"))
		}, ReasonMethod, ""},
		{"body", []Option{WithReplayBuffer(4)}, func() *http.Request {
			return mustRequest(t, http.MethodPut, busy.URL, onlyReader{strings.NewReader("0123456789")})
		}, ReasonBody, ""},
		{"retry_after", nil, func() *http.Request { return mustRequest(t, http.MethodGet, long.URL, nil) }, ReasonRetryAfter, ""},
		{"budget", []Option{WithBudget(spentBudget(t))}, func() *http.Request { return mustRequest(t, http.MethodGet, busy.URL, nil) }, ReasonBudget, ""},
		{"permanent", nil, func() *http.Request { return mustRequest(t, http.MethodGet, tlsUp.URL, nil) }, ReasonPermanent, "certificate"},
		{"budget without a response", []Option{WithBudget(spentBudget(t))}, func() *http.Request { return mustRequest(t, http.MethodGet, closed, nil) }, ReasonBudget, "retry budget is spent"},
		{"canceled", nil, func() *http.Request {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return mustRequest(t, http.MethodGet, busy.URL, nil).WithContext(ctx)
		}, ReasonCanceled, "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var last Attempt
			var log bytes.Buffer
			opts := append([]Option{
				WithObserver(func(a Attempt) { last = a }),
				WithLogger(slog.New(slog.NewJSONHandler(&log, nil))),
			}, tt.opts...)
			tr, _ := newTestTransport(t, opts...)
			resp, err := tr.RoundTrip(tt.req())
			if resp != nil {
				readAll(t, resp)
			}
			assert.Equal(t, tt.reason, last.Reason, "the last Attempt says why")
			assert.False(t, last.Retry)
			var rec map[string]any
			lines := strings.Split(strings.TrimSpace(log.String()), "\n")
			require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &rec))
			assert.Equal(t, "retryhttp: giving up", rec["msg"])
			assert.Equal(t, tt.reason, rec["reason"], "one log record says why")
			assert.NotEmpty(t, rec["why"])
			if resp == nil {
				var rerr *Error
				require.ErrorAs(t, err, &rerr)
				assert.Equal(t, tt.reason, rerr.Reason)
				if tt.inErr != "" {
					assert.Contains(t, err.Error(), tt.inErr)
				}
			}
		})
	}
}

// spentBudget returns a budget with nothing left to spend.
func spentBudget(t *testing.T) *Budget {
	b, err := NewBudget(BudgetConfig{MinPerSecond: 1e-9, Ratio: 1e-9})
	require.NoError(t, err)
	for {
		if _, ok := b.spend(time.Now()); !ok {
			return b
		}
	}
}

func TestBodyGiveUpSaysWhatToDo(t *testing.T) {
	// A 1 MiB upload wrapped by an SDK (no GetBody) that meets a 503: the
	// log and the error say it passed the replay buffer, and what to do.
	up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	var log bytes.Buffer
	tr, _ := newTestTransport(t, WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	payload := bytes.Repeat([]byte("s3"), 1<<19)
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodPut, up.URL, onlyReader{bytes.NewReader(payload)}))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Contains(t, log.String(), "reason=body")
	assert.Contains(t, log.String(), "replay buffer of 65536 bytes")
	assert.Contains(t, log.String(), "GetBody")
	assert.Contains(t, log.String(), "WithReplayBuffer")

	// Without a response (the server read it all, then reset the
	// connection), the *Error says the same.
	resetter := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		require.NoError(t, err)
		reset(conn.(*net.TCPConn))
	})
	_, err = tr.RoundTrip(mustRequest(t, http.MethodPut, resetter.URL, onlyReader{bytes.NewReader(payload)}))
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, ReasonBody, rerr.Reason)
	assert.Contains(t, err.Error(), "replay buffer of 65536 bytes")
	assert.Contains(t, err.Error(), "give the request a GetBody, or raise WithReplayBuffer")
	assert.Equal(t, int32(1), resetter.attempts.Load())
}

func TestNoAttemptIsReportedAfterACanceledWait(t *testing.T) {
	up := newUpstream(t, statuses(503))
	var seen []Attempt
	var log bytes.Buffer
	tr, _ := newTestTransport(t, WithObserver(func(a Attempt) { seen = append(seen, a) }),
		WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	ctx, cancel := context.WithCancel(context.Background())
	tr.sleep = func(ctx context.Context, _ time.Duration) error { cancel(); return ctx.Err() }
	_, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx))
	require.ErrorIs(t, err, context.Canceled)
	require.Len(t, seen, 1)
	assert.True(t, seen[0].Retry, "the attempt was reported with a retry to follow")
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, ReasonCanceled, rerr.Reason)
	assert.True(t, rerr.Waiting)
	assert.Contains(t, log.String(), "giving up")
	assert.Contains(t, log.String(), "reason=canceled")
}

func TestBeforeRetryRefreshesAToken(t *testing.T) {
	// The first attempt's token has expired: 401. A Classifier makes the
	// 401 retryable and the hook puts a fresh token on the retry.
	up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer fresh" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	retry401 := func(req *http.Request, resp *http.Response, err error) Decision {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized && AttemptFromContext(req.Context()) == 1 {
			return Retry
		}
		return UseDefault
	}
	var hookSaw []int
	tr, clock := newTestTransport(t, WithClassifier(retry401),
		WithBeforeRetry(func(next *http.Request, prev Attempt) error {
			hookSaw = append(hookSaw, AttemptFromContext(next.Context()), prev.Response.StatusCode)
			next.Header.Set("Authorization", "Bearer fresh")
			return nil
		}))
	req := mustRequest(t, http.MethodPost, up.URL, strings.NewReader("grant_type=client_credentials"))
	req = req.WithContext(ContextWithIdempotent(req.Context()))
	req.Header.Set("Authorization", "Bearer stale")
	headerBefore := req.Header.Clone()
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, int32(2), up.attempts.Load(), "one retry")
	assert.Equal(t, []int{2, 401}, hookSaw)
	assert.Len(t, clock.recorded(), 1, "the hook runs after the wait")
	assert.Equal(t, headerBefore, req.Header, "the caller's request is untouched")
}

func TestBeforeRetryFailsOverToAnotherHost(t *testing.T) {
	primary := newUpstream(t, statuses(503))
	secondary := newUpstream(t, statuses(200))
	tr, _ := newTestTransport(t, WithBeforeRetry(func(next *http.Request, prev Attempt) error {
		u, _ := http.NewRequest(http.MethodGet, secondary.URL, nil)
		next.URL.Host, next.Host = u.URL.Host, ""
		return nil
	}))
	req := mustRequest(t, http.MethodGet, primary.URL+"/items", nil)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, int32(1), primary.attempts.Load())
	assert.Equal(t, int32(1), secondary.attempts.Load())
	assert.Equal(t, primary.URL+"/items", req.URL.String(), "the caller's URL is untouched")
}

func TestBeforeRetryErrorStopsTheRetries(t *testing.T) {
	up := newUpstream(t, statuses(503, 200))
	errNoToken := errors.New("token endpoint down")
	var seen []Attempt
	b := &Budget{}
	tr, _ := newTestTransport(t, WithBudget(b),
		WithObserver(func(a Attempt) { seen = append(seen, a) }),
		WithBeforeRetry(func(*http.Request, Attempt) error { return errNoToken }))
	clock := withStoppedClock(tr)
	b.once.Do(func() { b.init(BudgetConfig{Ratio: 0.2, MinPerSecond: 3, Window: 10 * time.Second}, clock.now()) })
	before := b.available(clock.now())
	body := &closeTracker{Reader: strings.NewReader("abc")}
	req := mustRequest(t, http.MethodPut, up.URL, onlyReader{body})
	req.Body = body
	resp, err := tr.RoundTrip(req)
	assert.Nil(t, resp)
	require.ErrorIs(t, err, errNoToken)
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, ReasonHook, rerr.Reason)
	assert.Equal(t, int32(1), up.attempts.Load())
	assert.Len(t, seen, 1, "no further Attempt is reported")
	assert.Equal(t, before+0.2, b.available(clock.now()), "the retry not sent is not charged")
	assert.Equal(t, int32(1), body.closes.Load())
}

func TestContextWithIdempotentAllowsRetriesOfAPOST(t *testing.T) {
	up := newUpstream(t, statuses(503, 200))
	tr, _ := newTestTransport(t)
	req := mustRequest(t, http.MethodPost, up.URL, strings.NewReader("grant_type=refresh_token"))
	req = req.WithContext(ContextWithIdempotent(req.Context()))
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, int32(2), up.attempts.Load())
	want := sha([]byte("grant_type=refresh_token"))
	assert.Equal(t, [][32]byte{want, want}, up.bodyHashes())
}

func TestAttemptNumbersAllocateNothingOnTheFirstAttempt(t *testing.T) {
	var numbers []int
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		numbers = append(numbers, AttemptFromContext(req.Context()))
		code := 503
		if len(numbers) == 3 {
			code = 200
		}
		return &http.Response{StatusCode: code, Body: http.NoBody, Header: http.Header{}}, nil
	})
	tr, _ := newTestTransport(t)
	tr.base = base
	req := mustRequest(t, http.MethodGet, "http://example.invalid/", nil)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, []int{1, 2, 3}, numbers)
	assert.Equal(t, 1, AttemptFromContext(context.Background()))

	ok := New(staticRT{&http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}})
	assert.Zero(t, allocsPerRun(t, 100, func() { _, _ = ok.RoundTrip(req) }), "the happy path allocates nothing")
	seam := New(staticRT{&http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}},
		WithObserver(func(Attempt) {}), WithClassifier(func(*http.Request, *http.Response, error) Decision { return UseDefault }))
	assert.LessOrEqual(t, allocsPerRun(t, 100, func() { _, _ = seam.RoundTrip(req) }), 1.0, "an observer and a classifier: at most one")
}
