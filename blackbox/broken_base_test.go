package blackbox_test

// No panics for nil bodies, a zero Transport, weird status codes and huge
// Retry-After values; discarding a response is bounded in time.

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWeirdStatusCodesDoNotPanic(t *testing.T) {
	for _, code := range []int{0, -1, math.MinInt, math.MaxInt, 1, 99, 100, 101, 103, 199, 600, 999, 1000, 4294967296 + 503} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			var n atomic.Int32
			base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				n.Add(1)
				return &http.Response{StatusCode: code}, nil // no Header, no Body
			})
			m, err := retryhttp.NewMetrics(nil)
			require.NoError(t, err)
			rt := testkit.NewRT(t, base, retryhttp.WithMetrics(m))
			res, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil))
			require.NoError(t, err)
			assert.Equal(t, code, res.StatusCode)
			assert.Equal(t, int32(1), n.Load(), "a status outside the retried ones is final")
			require.NotNil(t, res.Body)
			b, err := io.ReadAll(res.Body)
			assert.NoError(t, err)
			assert.Empty(t, b)
		})
	}
}

func TestNilHeaderOnRetriedResponse(t *testing.T) {
	// A 503 or 429 without a Header map (a mock's &http.Response{StatusCode: 503}).
	for _, code := range []int{503, 429} {
		var n atomic.Int32
		base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			if n.Add(1) == 1 {
				return &http.Response{StatusCode: code}, nil
			}
			return &http.Response{StatusCode: 200}, nil
		})
		res, err := testkit.NewRT(t, base).RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil))
		require.NoError(t, err)
		assert.Equal(t, 200, res.StatusCode)
	}
}

func TestZeroTransportIsUsable(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(503)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	var tr retryhttp.Transport
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: &tr}).Get(srv.URL)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, 200, res.StatusCode)
	// A zero Transport's CloseIdleConnections before any request.
	var tr2 retryhttp.Transport
	tr2.CloseIdleConnections()
	var tr3 retryhttp.Transport
	_, err = tr3.RoundTrip(nil)
	assert.Error(t, err)
}

func TestHugeRetryAfterValues(t *testing.T) {
	for _, v := range []string{
		"99999999999999999999999999999999", "9223372036854775807", "9223372036", "86400",
		"Fri, 31 Dec 9999 23:59:59 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "-1", "1e9", " 61 ", "\t0\t", "0x10",
		"Thu, 01 Jan 1970 00:00:00 GMT",
	} {
		t.Run(v, func(t *testing.T) {
			var n atomic.Int32
			base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				if n.Add(1) == 1 {
					res := testkit.Resp(429, "")
					res.Header.Set("Retry-After", v)
					return res, nil
				}
				return testkit.Resp(200, ""), nil
			})
			// What the Transport decided, as its observer saw it: a
			// Retry-After past MaxRetryAfter is returned at once (Reason
			// retry_after, not the caller's deadline); a malformed or past
			// one is retried after the backoff, never after a huge wait.
			var seen []retryhttp.Attempt
			rt := testkit.NewRT(t, base, retryhttp.WithObserver(func(a retryhttp.Attempt) { seen = append(seen, a) }))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // a guard
			defer cancel()
			res, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil).WithContext(ctx))
			require.NoError(t, err)
			t.Logf("%q: status %d after %d attempts", v, res.StatusCode, n.Load())
			for _, a := range seen {
				assert.LessOrEqual(t, a.Held, testkit.Fast.MaxDelay, "attempt %d held", a.Number)
				switch {
				case a.Retry:
					assert.LessOrEqual(t, a.Wait, testkit.Fast.MaxDelay, "attempt %d: the wait before the retry", a.Number)
				case a.Response != nil && a.Response.StatusCode == 429:
					assert.Equal(t, retryhttp.ReasonRetryAfter, a.Reason, "a Retry-After past MaxRetryAfter returns at once")
				}
			}
		})
	}
}

func TestHugeMaxRetryAfterWithDeadline(t *testing.T) {
	// MaxRetryAfter near MaxInt64 and a server asking for "forever": the
	// wait cannot end before the deadline, so it must not be started.
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		res := testkit.Resp(503, "")
		res.Header.Set("Retry-After", "99999999999999999999")
		return res, nil
	})
	var seen []retryhttp.Attempt
	rt := retryhttp.New(base, retryhttp.WithPolicy(retryhttp.Policy{MaxRetryAfter: math.MaxInt64}), retryhttp.WithBudget(nil),
		retryhttp.WithObserver(func(a retryhttp.Attempt) { seen = append(seen, a) }))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil).WithContext(ctx))
	require.NoError(t, err)
	assert.Equal(t, 503, res.StatusCode)
	// Decided before any wait: not retried, because of the deadline (a
	// wait started and cut by the deadline would say Retry, or canceled).
	require.Len(t, seen, 1)
	assert.False(t, seen[0].Retry, "no wait was started")
	assert.Equal(t, retryhttp.ReasonDeadline, seen[0].Reason)
}

// stallBody never ends a Read on its own; Close ends it.
type stallBody struct {
	closed chan struct{}
	closes atomic.Int32
}

func (s *stallBody) Read(p []byte) (int, error) {
	<-s.closed
	return 0, errors.New("closed")
}

func (s *stallBody) Close() error {
	if s.closes.Add(1) == 1 {
		close(s.closed)
	}
	return nil
}

func TestDrainingAStalledDiscardedResponseIsBounded(t *testing.T) {
	var n atomic.Int32
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		if n.Add(1) < 3 {
			res := testkit.Resp(503, "")
			res.Body = &stallBody{closed: make(chan struct{})}
			return res, nil
		}
		return testkit.Resp(200, "ok"), nil
	})
	// The bodies stall forever unless closed: a drain that were not cut
	// would hang until the guard's deadline and fail the retry.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	res, err := testkit.NewRT(t, base).RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil).WithContext(ctx))
	require.NoError(t, err)
	assert.Equal(t, 200, res.StatusCode)
	// Two stalled bodies cost about 2×100 ms; the bound only guards
	// against a hang.
	assert.Less(t, time.Since(start), 10*time.Second)
}

// deafBody ignores Close while a Read is in progress: its Read ends only
// when the request's context ends.
type deafBody struct{ ctx context.Context }

func (d deafBody) Read(p []byte) (int, error) { <-d.ctx.Done(); return 0, d.ctx.Err() }
func (d deafBody) Close() error               { return nil }

func TestDrainIsBoundedEvenWhenCloseDoesNotInterruptRead(t *testing.T) {
	// "Discarded responses are drained (up to 64 KiB, for at most 100 ms)."
	// A base's body whose Close does not interrupt a Read in progress (an
	// io.Reader over a channel, a third-party client's stream) stalls the
	// drain until the request's context ends: RoundTrip hangs instead of
	// retrying after 100 ms.
	var n atomic.Int32
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		if n.Add(1) == 1 {
			res := testkit.Resp(503, "")
			res.Body = deafBody{ctx: r.Context()}
			return res, nil
		}
		return testkit.Resp(200, "ok"), nil
	})
	// An unbounded drain would end only at the caller's deadline, 20 s
	// away, and the retry would fail; a bounded one takes about 100 ms.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	res, err := testkit.NewRT(t, base).RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil).WithContext(ctx))
	elapsed := time.Since(start)
	if err == nil {
		res.Body.Close()
	}
	require.NoError(t, err, "the drain of a discarded response is bounded")
	assert.Less(t, elapsed, 10*time.Second, "the drain of a discarded response is bounded (took %v)", elapsed)
}

func TestDrainOfATricklingHTTP1BodyIsBounded(t *testing.T) {
	// A real server that sends the 503's body one byte every 20 ms, and
	// keeps the connection: the retry must come after ~100 ms, not after
	// the whole body (20 s: the bound below tells them apart with room for
	// any machine).
	srv := testkit.NewH1Server(t, func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) bool {
		if n == 1 {
			_, _ = io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 1000\r\n\r\n")
			for i := 0; i < 1000; i++ {
				if _, err := c.Write([]byte("x")); err != nil {
					return false
				}
				time.Sleep(20 * time.Millisecond)
			}
			return false
		}
		testkit.WriteResponse(c, 200, "", "ok")
		return true
	})
	start := time.Now()
	res, err := testkit.NewRT(t, nil).RoundTrip(testkit.NewReq(t, http.MethodGet, srv.URL, nil))
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, 200, res.StatusCode)
	assert.Less(t, time.Since(start), 10*time.Second)
}

// panicCloser panics when closed.
type panicCloser struct{ io.Reader }

func (panicCloser) Close() error { panic("close panicked") }

func TestPanickingResponseCloseOnTheRetryPath(t *testing.T) {
	// A base whose discarded response body panics in Close. Bare
	// net/http never calls Close on a response it returns; retryhttp does
	// for the responses it discards. The panic must at least reach the
	// caller's goroutine (where it can be recovered), and never a goroutine
	// of retryhttp's own (which would crash the process).
	var n atomic.Int32
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		if n.Add(1) == 1 {
			res := testkit.Resp(503, "")
			res.Body = panicCloser{Reader: io.LimitReader(neverEnding{}, 10)}
			return res, nil
		}
		return testkit.Resp(200, "ok"), nil
	})
	var recovered any
	func() {
		defer func() { recovered = recover() }()
		res, err := testkit.NewRT(t, base).RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil))
		if err == nil {
			res.Body.Close()
		}
	}()
	t.Logf("recovered in the caller's goroutine: %v", recovered)
}

type neverEnding struct{}

func (neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'n'
	}
	return len(p), nil
}

func TestBaseReturningBothResponseAndErrorAndNeither(t *testing.T) {
	var closed atomic.Int32
	both := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		res := testkit.Resp(200, "")
		res.Body = closeCounter{&closed}
		return res, errReset
	})
	res, err := testkit.NewRT(t, both).RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil))
	assert.Nil(t, res)
	assert.Error(t, err)
	assert.Equal(t, int32(3), closed.Load(), "each of the 3 attempts' responses closed")

	neither := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) { return nil, nil })
	res, err = testkit.NewRT(t, neither).RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil))
	assert.Nil(t, res)
	assert.Error(t, err)
}

type closeCounter struct{ n *atomic.Int32 }

func (c closeCounter) Read([]byte) (int, error) { return 0, io.EOF }
func (c closeCounter) Close() error             { c.n.Add(1); return nil }

// slowPanicBody's Read takes 300 ms; its Close panics.
type slowPanicBody struct{ done atomic.Bool }

func (b *slowPanicBody) Read(p []byte) (int, error) {
	if b.done.Swap(true) {
		return 0, io.EOF
	}
	time.Sleep(300 * time.Millisecond)
	return 0, io.EOF
}
func (*slowPanicBody) Close() error { panic("close panicked") }

func TestPanickingCloseOfAStalledDiscardedBodyCrashesTheProcess(t *testing.T) {
	// When a discarded body stalls past 100 ms, retryhttp closes it from a
	// time.AfterFunc goroutine. A Close that panics there cannot be
	// recovered by anyone: the whole process dies, where bare net/http
	// would have had the caller call Close (and could recover). Run in a
	// child process.
	if os.Getenv("REVIEW10_CHILD") == "1" {
		var n atomic.Int32
		base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			if n.Add(1) == 1 {
				res := testkit.Resp(503, "")
				res.Body = &slowPanicBody{}
				return res, nil
			}
			return testkit.Resp(200, "ok"), nil
		})
		func() {
			defer func() { _ = recover() }() // the caller protects itself
			res, err := testkit.NewRT(t, base).RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil))
			if err == nil {
				res.Body.Close()
			}
		}()
		time.Sleep(500 * time.Millisecond)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPanickingCloseOfAStalledDiscardedBodyCrashesTheProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "REVIEW10_CHILD=1")
	out, err := cmd.CombinedOutput()
	assert.NoError(t, err, "the child process crashed:\n%s", firstLines(string(out), 12))
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
