package hedging_test

// Written after reading the implementation, to pin down what the black-box
// tests hinted at: a losing copy's 429 is not read for the host's quota; a
// Classifier is called more than once per attempt, outside RoundTrip's
// goroutine; a copy that failed on its own is reported as lost.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// README (Throttling): a 429 with Retry-After holds its host, and "every
// response is read for this, whatever its request's Policy". A hedge's 429
// that did not decide its request (the first copy then won with a 200) is a
// response too: the host must be held.
func TestALosingCopys429HoldsTheHost(t *testing.T) {
	// The first copy answers once the Transport has read the hedge's 429:
	// a Classifier with no opinion says when (a hedge's response is
	// classified after its host has learned from it).
	hedgeRead := make(chan struct{})
	var once sync.Once
	probe := retryhttp.WithClassifier(func(req *http.Request, res *http.Response, err error) retryhttp.Decision {
		if retryhttp.AttemptFromContext(req.Context()) == 2 {
			once.Do(func() { close(hedgeRead) })
		}
		return retryhttp.UseDefault
	})
	u := newUpstream(t, false, func(id string, k int, w http.ResponseWriter, r *http.Request) {
		if id == "A" && k == 1 {
			if !until(r, hedgeRead) {
				return
			}
			_, _ = io.WriteString(w, "first")
			return
		}
		if id == "A" {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		_, _ = io.WriteString(w, "other")
	})
	rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: 10 * time.Millisecond}, probe)
	req, _ := get(t, guarded(t), u.url)
	req.Header.Set(idHeader, "A")
	res, err := rt.RoundTrip(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, "first", string(body))
	require.Equal(t, 2, u.copies("A"), "the hedge got its 429")

	// The server said: no more requests for 30 s. A request that cannot
	// wait that long must not be sent.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reqB, _ := get(t, ctx, u.url)
	reqB.Header.Set(idHeader, "B")
	res, err = rt.RoundTrip(reqB)
	if err == nil {
		res.Body.Close()
	}
	assert.ErrorIs(t, err, retryhttp.ErrThrottled, "the host was not held after a hedge's 429 with Retry-After: 30")
	assert.Zero(t, u.copies("B"), "a request was sent into a host that answered 429 Retry-After: 30")
}

func goid() int {
	var buf [64]byte
	n := runtime.Stack(buf[:], false)
	b := bytes.TrimPrefix(buf[:n], []byte("goroutine "))
	i := bytes.IndexByte(b, ' ')
	id, _ := strconv.Atoi(string(b[:i]))
	return id
}

// Classifier's godoc: "called at most once per attempt, in the goroutine of
// RoundTrip, or for the response of a hedge in the hedge's own goroutine".
func TestClassifierOncePerCopy(t *testing.T) {
	var mu sync.Mutex
	calls := map[int]int{}
	goroutines := map[int]bool{}
	b := &countingBase{f: func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
		if k == 1 {
			return hangForever(ctx, k, r) // until the hedge wins
		}
		return testkit.Resp(200, "ok"), nil
	}}
	rt := hedgeRT(t, b, retryhttp.Hedging{Delay: 10 * time.Millisecond},
		retryhttp.WithClassifier(func(req *http.Request, res *http.Response, err error) retryhttp.Decision {
			mu.Lock()
			calls[retryhttp.AttemptFromContext(req.Context())]++
			goroutines[goid()] = true
			mu.Unlock()
			return retryhttp.UseDefault
		}))
	req, _ := get(t, guarded(t), "http://example.invalid/")
	me := goid()
	res, err := rt.RoundTrip(req)
	require.NoError(t, err)
	res.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("classifier calls per attempt %v; goroutines %v (RoundTrip's %d)", calls, goroutines, me)
	for n, c := range calls {
		assert.Equal(t, 1, c, "attempt %d classified %d times", n, c)
	}
	// Reviewed: the Classifier of a hedge's response runs in the hedge's
	// goroutine, so that a winning hedge can cancel a first copy that
	// blocks RoundTrip's; the Classifier's doc says so, and a panic there
	// still comes out of RoundTrip (TestClassifierPanicOnAHedgePropagatesOutOfRoundTrip).
	// The first copy, canceled when the hedge won, is not classified.
	assert.Equal(t, map[int]int{2: 1}, calls)
	assert.NotContains(t, goroutines, me, "the hedge's response is classified in the hedge's goroutine")
}

// Attempt.Hedge's godoc: a copy "canceled because another copy won has Err
// ErrHedgeLost". A copy that failed on its own before any copy won (a reset,
// an attempt timeout) was not canceled: observers should see its error.
func TestACopyThatFailedOnItsOwnIsNotReportedAsLost(t *testing.T) {
	// "reset": the hedge fails at once; the first copy answers once the
	// Transport has had that failure for a while. "attempt timeout": the
	// first copy hangs until its AttemptTimeout (1 s) ends it; the hedge,
	// sent at 500 ms, answers a while after that, within its own bound
	// (until 1.5 s).
	const timeout, delay = 4 * processed, 2 * processed
	for _, how := range []string{"reset", "attempt timeout"} {
		t.Run(how, func(t *testing.T) {
			b := &countingBase{}
			b.f = func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
				switch {
				case how == "reset" && k == 2:
					return nil, resetErr()
				case how == "attempt timeout" && k == 1:
					return hangForever(ctx, k, r) // cut by its AttemptTimeout
				case how == "attempt timeout" && k == 2:
					if err := await(ctx, b.returned(1)); err != nil {
						return nil, err
					}
					if err := after(ctx, processed/2); err != nil {
						return nil, err
					}
					return testkit.Resp(200, "hedge"), nil
				}
				if err := await(ctx, b.returned(2)); err != nil {
					return nil, err
				}
				if err := after(ctx, processed); err != nil {
					return nil, err
				}
				return testkit.Resp(200, "first"), nil
			}
			rec := &recorder{}
			pol := retryhttp.Policy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}
			hedging := retryhttp.Hedging{Delay: 10 * time.Millisecond}
			if how == "attempt timeout" {
				pol.AttemptTimeout = timeout
				hedging.Delay = delay
			}
			rt := hedgeRT(t, b, hedging, retryhttp.WithObserver(rec.observe), retryhttp.WithPolicy(pol))
			req, _ := get(t, guarded(t), "http://example.invalid/")
			res, err := rt.RoundTrip(req)
			require.NoError(t, err)
			res.Body.Close()
			got := rec.snapshot()
			require.Len(t, got, 2)
			for _, s := range got {
				if s.Err == nil {
					continue
				}
				switch how {
				case "reset":
					assert.True(t, errors.Is(s.Err, syscall.ECONNRESET), "the hedge failed with a reset before the first copy won; observers saw %v", s.Err)
				case "attempt timeout":
					assert.ErrorIs(t, s.Err, retryhttp.ErrAttemptTimeout, "the first copy timed out before the hedge won; observers saw %v", s.Err)
				}
			}
		})
	}
}

// Hedging.MaxHedges: "how many extra copies may be in flight at once ...
// Each further hedge follows one Delay after the previous copy." With
// MaxHedges 1, once the hedge has failed (a fast 503) no extra copy is in
// flight, and MaxAttempts 3 leaves room: a further hedge may follow while the
// first copy hangs. Without one, the request waits for the hung first copy
// until its deadline.
func TestAFailedHedgeMakesRoomForAnother(t *testing.T) {
	b := &countingBase{f: func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
		switch k {
		case 1:
			return hangForever(ctx, k, r)
		case 2:
			return testkit.Resp(503, "busy"), nil
		}
		return testkit.Resp(200, "third"), nil
	}}
	rec := &recorder{}
	rt := hedgeRT(t, b, retryhttp.Hedging{Delay: 10 * time.Millisecond, MaxHedges: 1}, retryhttp.WithObserver(rec.observe),
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	req, _ := get(t, guarded(t), "http://example.invalid/")
	res, err := rt.RoundTrip(req)
	if err == nil {
		res.Body.Close()
	}
	t.Logf("copies %d; attempts %+v", len(b.arrivals()), rec.snapshot())
	require.NoError(t, err, "no further hedge after the first hedge failed: the request waited for the hung first copy until the guard's deadline")
	assert.Equal(t, 200, res.StatusCode)
}

// README (Throttling, announced quotas): the Transport "counts the requests
// it has in flight to that host against what the last response said was
// left, and holds the next ones when nothing is left". One request was left;
// the first copy of A takes it: A's hedge must not be sent. The control shows
// that a second request (B) in A's place is held.
func TestAHedgeIsCountedAgainstAnAnnouncedQuota(t *testing.T) {
	for _, control := range []bool{true, false} {
		name := "hedge"
		if control {
			name = "control: a concurrent request is held"
		}
		t.Run(name, func(t *testing.T) {
			reset := strconv.FormatInt(time.Now().Add(30*time.Second).Unix(), 10)
			u := newUpstream(t, false, func(id string, k int, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-RateLimit-Limit", "2")
				w.Header().Set("X-RateLimit-Reset", reset)
				switch id {
				case "W":
					w.Header().Set("X-RateLimit-Remaining", "1")
				default:
					w.Header().Set("X-RateLimit-Remaining", "0")
					if id == "A" && k == 1 && hang(r, 80*time.Millisecond) {
						return
					}
				}
				_, _ = io.WriteString(w, id)
			})
			rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: 10 * time.Millisecond})
			req, _ := get(t, nil, u.url)
			req.Header.Set(idHeader, "W")
			res, err := rt.RoundTrip(req)
			require.NoError(t, err)
			res.Body.Close()
			ctxA := context.Background()
			if control {
				ctxA = retryhttp.ContextWithoutRetries(ctxA) // not hedged
			}
			req, _ = get(t, ctxA, u.url)
			req.Header.Set(idHeader, "A")
			done := make(chan struct{})
			go func() {
				defer close(done)
				res, err := rt.RoundTrip(req)
				if assert.NoError(t, err) {
					res.Body.Close()
				}
			}()
			require.True(t, waitFor(time.Second, func() bool { return u.copies("A") == 1 }))
			if control {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				reqB, _ := get(t, ctx, u.url)
				reqB.Header.Set(idHeader, "B")
				_, err := rt.RoundTrip(reqB)
				assert.ErrorIs(t, err, retryhttp.ErrThrottled)
				assert.Zero(t, u.copies("B"))
			}
			<-done
			assert.Equal(t, 1, u.copies("A"), "a hedge was sent beyond the quota the server announced (1 left)")
		})
	}
}

// SDK authors' README: "A panic in a Classifier propagates out of
// RoundTrip." With hedging, a hedge's response is classified in the hedge's
// own goroutine: a panic there cannot reach the caller's recover and kills
// the process. Run in a child process so that the crash does not take this
// test binary down.
func TestClassifierPanicOnAHedgePropagatesOutOfRoundTrip(t *testing.T) {
	if os.Getenv("HEDGING_PANIC_CHILD") == "1" {
		b := &countingBase{f: func(ctx context.Context, k int, r *http.Request) (*http.Response, error) {
			if k == 1 {
				return hangForever(ctx, k, r) // until the panic cancels every copy
			}
			return testkit.Resp(418, "hedge"), nil
		}}
		rt := hedgeRT(t, b, retryhttp.Hedging{Delay: 10 * time.Millisecond},
			retryhttp.WithClassifier(func(req *http.Request, res *http.Response, err error) retryhttp.Decision {
				if res != nil && res.StatusCode == 418 {
					panic("classifier panic")
				}
				return retryhttp.UseDefault
			}))
		req, _ := get(t, guarded(t), "http://example.invalid/")
		func() {
			defer func() {
				if v := recover(); v != nil {
					fmt.Println("RECOVERED:", v)
				}
			}()
			res, err := rt.RoundTrip(req)
			if err == nil {
				res.Body.Close()
			}
			fmt.Println("RETURNED without a panic")
		}()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestClassifierPanicOnAHedgePropagatesOutOfRoundTrip$", "-test.count=1")
	cmd.Env = append(os.Environ(), "HEDGING_PANIC_CHILD=1")
	out, err := cmd.CombinedOutput()
	text := string(out)
	if i := strings.Index(text, "goroutine "); i > 0 && len(text) > i+600 {
		text = text[:i+600] + "..."
	}
	require.NoError(t, err, "the child process crashed:\n%s", text)
	assert.Contains(t, string(out), "RECOVERED: classifier panic")
}
