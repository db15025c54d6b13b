package hedging_test

// Odd answers from the base during a race: strange statuses, (resp, err)
// both set, (nil, nil), a nil Body, bodyless statuses, 101 upgrades, and
// bodies that must each be closed exactly once.

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// raceBase sends copy 1 (attempt 1, whenever it reaches the base) to first
// and every later copy to hedge. Both get the copy's context.
func raceBase(first, hedge func(ctx context.Context, n int) (*http.Response, error)) (http.RoundTripper, *atomic.Int32) {
	var n atomic.Int32
	return testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		n.Add(1)
		k := retryhttp.AttemptFromContext(r.Context())
		if k == 1 {
			return first(r.Context(), k)
		}
		return hedge(r.Context(), k)
	}), &n
}

// afterTheHedge wraps hedge so that first, given the returned func, answers
// 200 "first" only once the first hedge has returned its answer to the
// Transport and the Transport has had time to act on it (processed): unless
// that answer won and the first copy was canceled.
func afterTheHedge(hedge func(ctx context.Context, n int) (*http.Response, error)) (first, wrapped func(ctx context.Context, n int) (*http.Response, error)) {
	back := make(chan struct{})
	var once sync.Once
	wrapped = func(ctx context.Context, n int) (*http.Response, error) {
		defer once.Do(func() { close(back) })
		return hedge(ctx, n)
	}
	first = func(ctx context.Context, n int) (*http.Response, error) {
		select {
		case <-back:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return okAfter(processed)(ctx, n)
	}
	return first, wrapped
}

// after waits d, or returns the context's error.
func after(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// okAfter answers 200 "first" after d unless canceled.
func okAfter(d time.Duration) func(ctx context.Context, n int) (*http.Response, error) {
	return func(ctx context.Context, n int) (*http.Response, error) {
		if err := after(ctx, d); err != nil {
			return nil, err
		}
		return testkit.Resp(200, "first"), nil
	}
}

func resetErr() error {
	return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
}

func TestOddAnswersOfAHedge(t *testing.T) {
	type tc struct {
		name   string
		hedge  func(ctx context.Context, n int) (*http.Response, error)
		check  func(t *testing.T, res *http.Response, err error, rec []seen)
		closes *trackedBody
	}
	bothBody := &trackedBody{Reader: strings.NewReader("both")}
	cases := []tc{
		{name: "status 999 is final and wins",
			hedge: func(ctx context.Context, n int) (*http.Response, error) { return testkit.Resp(999, "odd"), nil },
			check: func(t *testing.T, res *http.Response, err error, rec []seen) {
				require.NoError(t, err)
				assert.Equal(t, 999, res.StatusCode)
			}},
		{name: "status 0",
			hedge: func(ctx context.Context, n int) (*http.Response, error) { return testkit.Resp(0, "zero"), nil },
			check: func(t *testing.T, res *http.Response, err error, rec []seen) {
				if err == nil {
					require.NotNil(t, res)
					t.Logf("status 0 returned as a response: %d", res.StatusCode)
				} else {
					require.Nil(t, res)
					t.Logf("status 0: error %v", err)
				}
			}},
		{name: "response and retryable error: response closed, error kept, first copy still wins",
			closes: bothBody,
			hedge: func(ctx context.Context, n int) (*http.Response, error) {
				if n > 2 { // a hedge that failed makes room for another: this one hangs until canceled
					<-ctx.Done()
					return nil, ctx.Err()
				}
				r := testkit.Resp(200, "")
				r.Body = bothBody
				return r, resetErr()
			},
			check: func(t *testing.T, res *http.Response, err error, rec []seen) {
				require.NoError(t, err)
				b, _ := io.ReadAll(res.Body)
				assert.Equal(t, "first", string(b))
			}},
		{name: "nil response and nil error",
			hedge: func(ctx context.Context, n int) (*http.Response, error) { return nil, nil },
			check: func(t *testing.T, res *http.Response, err error, rec []seen) {
				if err != nil {
					require.Nil(t, res)
					t.Logf("(nil, nil) from the hedge ended the request: %v; attempts %+v", err, rec)
					return
				}
				b, _ := io.ReadAll(res.Body)
				assert.Equal(t, "first", string(b))
			}},
		{name: "nil Body is an empty body",
			hedge: func(ctx context.Context, n int) (*http.Response, error) {
				r := testkit.Resp(200, "")
				r.Body = nil
				return r, nil
			},
			check: func(t *testing.T, res *http.Response, err error, rec []seen) {
				require.NoError(t, err)
				require.NotNil(t, res.Body)
				b, err := io.ReadAll(res.Body)
				assert.NoError(t, err)
				assert.Empty(t, b)
			}},
		{name: "204 with NoBody",
			hedge: func(ctx context.Context, n int) (*http.Response, error) {
				r := testkit.Resp(204, "")
				r.Body = http.NoBody
				return r, nil
			},
			check: func(t *testing.T, res *http.Response, err error, rec []seen) {
				require.NoError(t, err)
				assert.Equal(t, 204, res.StatusCode)
				b, err := io.ReadAll(res.Body)
				assert.NoError(t, err)
				assert.Empty(t, b)
			}},
		{name: "1xx as a final response",
			hedge: func(ctx context.Context, n int) (*http.Response, error) { return testkit.Resp(103, ""), nil },
			check: func(t *testing.T, res *http.Response, err error, rec []seen) {
				if err == nil {
					t.Logf("103 returned as the response")
					return
				}
				t.Logf("103: %v", err)
			}},
		{name: "a permanent error of the hedge while the first copy would succeed",
			hedge: func(ctx context.Context, n int) (*http.Response, error) {
				return nil, errors.New("boom: not retryable")
			},
			check: func(t *testing.T, res *http.Response, err error, rec []seen) {
				if err != nil {
					t.Logf("the hedge's permanent error decided the request: %v", err)
					return
				}
				b, _ := io.ReadAll(res.Body)
				assert.Equal(t, "first", string(b))
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base, _ := raceBase(afterTheHedge(c.hedge))
			rec := &recorder{}
			rt := hedgeRT(t, base, retryhttp.Hedging{Delay: 10 * time.Millisecond}, retryhttp.WithObserver(rec.observe))
			req, _ := get(t, guarded(t), "http://example.invalid/")
			res, err := rt.RoundTrip(req)
			if err != nil {
				assert.Nil(t, res, "a response means err == nil")
			} else {
				require.NotNil(t, res, "(nil, nil) from RoundTrip")
				require.NotNil(t, res.Body)
			}
			c.check(t, res, err, rec.snapshot())
			if res != nil {
				res.Body.Close()
			}
			if c.closes != nil {
				assert.True(t, waitFor(time.Second, func() bool { return c.closes.closes.Load() >= 1 }), "body never closed")
				time.Sleep(20 * time.Millisecond)
				assert.Equal(t, int32(1), c.closes.closes.Load(), "body closed more than once")
			}
		})
	}
}

// Both copies answer 200 at about the same time, many times: every
// response body is closed exactly once (the loser's by the Transport, the
// winner's by the caller), and the caller gets one of them intact.
func TestEveryResponseBodyClosedExactlyOnce(t *testing.T) {
	for i := 0; i < 60; i++ {
		var mu sync.Mutex
		var bodies []*trackedBody
		hedgeIn := make(chan struct{})
		var once sync.Once
		// The first copy answers as soon as the hedge is in, the hedge at
		// once; both ignore their context: both answer.
		mk := func(text string) func(ctx context.Context, n int) (*http.Response, error) {
			return func(ctx context.Context, n int) (*http.Response, error) {
				if text == "first" {
					<-hedgeIn
				} else {
					once.Do(func() { close(hedgeIn) })
				}
				r := testkit.Resp(200, "")
				b := &trackedBody{Reader: strings.NewReader(text)}
				mu.Lock()
				bodies = append(bodies, b)
				mu.Unlock()
				r.Body = b
				return r, nil
			}
		}
		base, _ := raceBase(mk("first"), mk("hedge"))
		rt := hedgeRT(t, base, retryhttp.Hedging{Delay: 10 * time.Millisecond})
		req, _ := get(t, nil, "http://example.invalid/")
		res, err := rt.RoundTrip(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(res.Body)
		require.Contains(t, []string{"first", "hedge"}, string(b))
		res.Body.Close()
		require.True(t, waitFor(time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			if len(bodies) != 2 {
				return false
			}
			for _, b := range bodies {
				if b.closes.Load() == 0 {
					return false
				}
			}
			return true
		}), "a response body was never closed")
		mu.Lock()
		for _, b := range bodies {
			require.Equal(t, int32(1), b.closes.Load(), "a body closed more than once")
		}
		mu.Unlock()
	}
}

// 101 Switching Protocols from a real server: the winner's Body must stay an
// io.ReadWriteCloser (net/http's contract for upgrades), whether a hedge won,
// the first copy won after a hedge, or no hedge was sent at all.
func TestUpgradeResponseStaysWritable(t *testing.T) {
	type tc struct {
		name   string
		slowK  int // the copy that never answers (0: none)
		delayK int // the copy that answers once the second has arrived
	}
	for _, c := range []tc{{"no hedge sent", 0, 0}, {"hedge wins", 1, 0}, {"first wins after a hedge", 2, 1}} {
		t.Run(c.name, func(t *testing.T) {
			secondIn := make(chan struct{})
			s := testkit.NewH1Server(t, func(n int, conn *net.TCPConn, br *bufio.Reader, r *http.Request) bool {
				if n == 2 {
					close(secondIn)
				}
				if n == c.slowK {
					_, _ = br.ReadByte() // until the client goes away
					return false
				}
				if n == c.delayK {
					<-secondIn // answers once the hedge is in
				}
				_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
				line, err := br.ReadString('\n')
				if err == nil {
					_, _ = io.WriteString(conn, "echo: "+line)
				}
				return false
			})
			rt := hedgeRT(t, nil, retryhttp.Hedging{Delay: 10 * time.Millisecond})
			req, _ := get(t, nil, s.URL)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "echo")
			res, err := rt.RoundTrip(req)
			require.NoError(t, err)
			defer res.Body.Close()
			require.Equal(t, 101, res.StatusCode)
			rwc, ok := res.Body.(io.ReadWriteCloser)
			require.True(t, ok, "the 101 response's Body is a %T, not an io.ReadWriteCloser", res.Body)
			_, err = io.WriteString(rwc, "hello\n")
			require.NoError(t, err)
			line, err := bufio.NewReader(rwc).ReadString('\n')
			require.NoError(t, err)
			assert.Equal(t, "echo: hello\n", line)
		})
	}
}

// Each copy of a hedged attempt has a Header map of its own (the first
// copy the caller's, a hedge a clone): a base that writes req.Header (which
// the RoundTripper contract forbids, but some middlewares do) does not
// write one map from two goroutines at once.
func TestCopiesDoNotShareAHeaderMap(t *testing.T) {
	var mu sync.Mutex
	maps := map[uintptr]int{}
	hedgeIn := make(chan struct{})
	base, _ := raceBase(func(ctx context.Context, n int) (*http.Response, error) {
		if err := await(ctx, hedgeIn); err != nil {
			return nil, err
		}
		return testkit.Resp(200, "first"), nil
	}, func(ctx context.Context, n int) (*http.Response, error) {
		close(hedgeIn)
		<-ctx.Done() // the first copy wins
		return nil, ctx.Err()
	})
	rt := hedgeRT(t, testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		maps[reflect.ValueOf(r.Header).Pointer()]++
		mu.Unlock()
		return base.RoundTrip(r)
	}), retryhttp.Hedging{Delay: 5 * time.Millisecond})
	req, _ := get(t, guarded(t), "http://example.invalid/")
	res, err := rt.RoundTrip(req)
	require.NoError(t, err)
	res.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, maps, 2, "two copies, two Header maps")
	for p, n := range maps {
		assert.Equal(t, 1, n, "Header map %x went to %d copies", p, n)
	}
}
