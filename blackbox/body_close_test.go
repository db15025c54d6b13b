package blackbox_test

// The caller's request body is closed exactly once on every path, whatever
// the base does with it (reads it or not, closes it or not, now or after
// RoundTrip returned, calls GetBody any number of times).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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

var errReset = &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}

// baseBehaviour is what a misbehaving base does with attempt n's request.
type baseBehaviour func(n int, r *http.Request) (*http.Response, error)

// answers returns the n-th of the given outcomes: a status, or an error
// when the status is 0.
func answer(n int, codes ...int) (*http.Response, error) {
	c := codes[min(n, len(codes))-1]
	if c == 0 {
		return nil, errReset
	}
	return testkit.Resp(c, "body"), nil
}

var baseBehaviours = map[string]baseBehaviour{
	"reads and closes": func(n int, r *http.Request) (*http.Response, error) {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		return answer(n, 503, 200)
	},
	"closes without reading": func(n int, r *http.Request) (*http.Response, error) {
		r.Body.Close()
		return answer(n, 503, 503, 503)
	},
	"reads part, no close, reset error (then reads whole and closes)": func(n int, r *http.Request) (*http.Response, error) {
		if n == 1 {
			_, _ = io.CopyN(io.Discard, r.Body, 10)
			return nil, errReset
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		return answer(n, 200)
	},
	"closes after returning": func(n int, r *http.Request) (*http.Response, error) {
		go func() { time.Sleep(20 * time.Millisecond); r.Body.Close() }()
		return answer(n, 503, 200)
	},
	"reads and closes after returning": func(n int, r *http.Request) (*http.Response, error) {
		go func() {
			time.Sleep(10 * time.Millisecond)
			_, _ = io.Copy(io.Discard, r.Body)
			r.Body.Close()
		}()
		return answer(n, 503, 200)
	},
	"reads and closes after returning, every attempt an error": func(n int, r *http.Request) (*http.Response, error) {
		go func() {
			time.Sleep(10 * time.Millisecond)
			_, _ = io.Copy(io.Discard, r.Body)
			r.Body.Close()
		}()
		return answer(n, 0, 0, 0)
	},
	"GetBody twice, reads both copies, then sends the body": func(n int, r *http.Request) (*http.Response, error) {
		for range 2 {
			if r.GetBody != nil {
				c, err := r.GetBody()
				if err == nil {
					_, _ = io.Copy(io.Discard, c)
					c.Close()
				}
			}
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		return answer(n, 503, 200)
	},
	"GetBody, reads a prefix of the copy and closes it, then sends the body": func(n int, r *http.Request) (*http.Response, error) {
		if r.GetBody != nil {
			c, err := r.GetBody()
			if err == nil {
				_, _ = io.CopyN(io.Discard, c, 512)
				c.Close()
			}
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		return answer(n, 503, 200)
	},
	"closes the body, then sends a GetBody copy": func(n int, r *http.Request) (*http.Response, error) {
		r.Body.Close()
		if r.GetBody != nil {
			c, err := r.GetBody()
			if err == nil {
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}
		}
		return answer(n, 503, 200)
	},
	"response and error": func(n int, r *http.Request) (*http.Response, error) {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		res, _ := answer(n, 503)
		return res, errReset
	},
	"nil response, nil error": func(n int, r *http.Request) (*http.Response, error) {
		r.Body.Close()
		return nil, nil
	},
	"nil response body": func(n int, r *http.Request) (*http.Response, error) {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		res, err := answer(n, 503, 200)
		res.Body = nil
		return res, err
	},
}

func TestBodyIsClosedOnceWhateverTheBaseDoes(t *testing.T) {
	payload := bytes.Repeat([]byte("p"), 5000)
	for name, behave := range baseBehaviours {
		for _, method := range []string{http.MethodPut, http.MethodPost} {
			for _, withGetBody := range []bool{false, true} {
				if withGetBody && strings.HasPrefix(name, "reads part, no close") {
					continue // the base never closes the caller's own body: as through bare net/http
				}
				t.Run(name+"/"+method+map[bool]string{true: "/GetBody", false: ""}[withGetBody], func(t *testing.T) {
					var n atomic.Int32
					base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
						return behave(int(n.Add(1)), r)
					})
					rt := testkit.NewRT(t, base)
					cb := testkit.NewCountingBody(payload)
					req := testkit.NewReq(t, method, "http://example.invalid/", cb)
					if withGetBody {
						req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(payload)), nil }
					}
					res, err := rt.RoundTrip(req)
					if err == nil {
						_, _ = io.Copy(io.Discard, res.Body)
						res.Body.Close()
					}
					testkit.RequireClosedOnce(t, cb)
				})
			}
		}
	}
}

func TestBodyClosedTwiceByTheBaseReachesTheCallerOnce(t *testing.T) {
	// Through the replay buffer, a base that closes its body twice (a
	// contract violation, but a harmless one) must not close the caller's
	// body twice.
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		r.Body.Close()
		return testkit.Resp(503, ""), nil
	})
	cb := testkit.NewCountingBody([]byte("x"))
	res, err := testkit.NewRT(t, base).RoundTrip(testkit.NewReq(t, http.MethodPut, "http://x.invalid/", cb))
	require.NoError(t, err)
	res.Body.Close()
	testkit.RequireClosedOnce(t, cb)
}

func TestDroppedGetBodyCopyLeavesTheCallersBodyOpen(t *testing.T) {
	// A middleware base calls the GetBody that retryhttp synthesized for an
	// idempotent request (say, to check that the body can be replayed, or
	// to hand it to a goroutine that is then not needed) and drops the
	// copy unread. It then sends req.Body whole and closes it, as the
	// RoundTripper contract asks, and gets a 200. The caller's body is
	// never closed: the dropped copy counts as an open view for ever.
	// README: "The caller's body is closed exactly once on every path."
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.GetBody != nil {
			_, _ = r.GetBody() // dropped
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		return testkit.Resp(200, "ok"), nil
	})
	cb := testkit.NewCountingBody([]byte("payload"))
	res, err := testkit.NewRT(t, base).RoundTrip(testkit.NewReq(t, http.MethodPut, "http://x.invalid/", cb))
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	testkit.RequireClosedOnce(t, cb)
}

func TestBodyIsClosedOnceOnEarlyExits(t *testing.T) {
	payload := []byte("hello")
	never := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Error("the base must not be called")
		return nil, errors.New("unreachable")
	})
	t.Run("invalid Transport policy", func(t *testing.T) {
		rt := retryhttp.New(never, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: -1}))
		cb := testkit.NewCountingBody(payload)
		_, err := rt.RoundTrip(testkit.NewReq(t, http.MethodPut, "http://x.invalid/", cb))
		require.Error(t, err)
		testkit.RequireClosedOnce(t, cb)
	})
	t.Run("negative replay buffer", func(t *testing.T) {
		rt := retryhttp.New(never, retryhttp.WithReplayBuffer(-1))
		cb := testkit.NewCountingBody(payload)
		_, err := rt.RoundTrip(testkit.NewReq(t, http.MethodPut, "http://x.invalid/", cb))
		require.Error(t, err)
		testkit.RequireClosedOnce(t, cb)
	})
	t.Run("invalid per-request policy", func(t *testing.T) {
		rt := retryhttp.New(never)
		cb := testkit.NewCountingBody(payload)
		ctx := retryhttp.ContextWithPolicy(context.Background(), retryhttp.Policy{BaseDelay: -1})
		_, err := rt.RoundTrip(testkit.NewReq(t, http.MethodPut, "http://x.invalid/", cb).WithContext(ctx))
		require.Error(t, err)
		testkit.RequireClosedOnce(t, cb)
	})
	t.Run("merged per-request policy MaxDelay below BaseDelay", func(t *testing.T) {
		rt := retryhttp.New(never, retryhttp.WithPolicy(retryhttp.Policy{MaxDelay: time.Second}))
		cb := testkit.NewCountingBody(payload)
		ctx := retryhttp.ContextWithPolicy(context.Background(), retryhttp.Policy{BaseDelay: 2 * time.Second})
		_, err := rt.RoundTrip(testkit.NewReq(t, http.MethodPut, "http://x.invalid/", cb).WithContext(ctx))
		var pe *retryhttp.PolicyError
		require.ErrorAs(t, err, &pe)
		testkit.RequireClosedOnce(t, cb)
	})
	t.Run("nil URL", func(t *testing.T) {
		rt := retryhttp.New(never)
		cb := testkit.NewCountingBody(payload)
		req := testkit.NewReq(t, http.MethodPut, "http://x.invalid/", cb)
		req.URL = nil
		_, err := rt.RoundTrip(req)
		require.Error(t, err)
		testkit.RequireClosedOnce(t, cb)
	})
	t.Run("context canceled during the wait", func(t *testing.T) {
		base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			_, _ = io.Copy(io.Discard, r.Body)
			r.Body.Close()
			return testkit.Resp(503, ""), nil
		})
		rt := retryhttp.New(base, retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Second, Jitter: retryhttp.NoJitter}))
		for _, withGetBody := range []bool{false, true} {
			cb := testkit.NewCountingBody(payload)
			ctx, cancel := context.WithCancel(context.Background())
			req := testkit.NewReq(t, http.MethodPut, "http://x.invalid/", cb).WithContext(ctx)
			var copies []*testkit.CountingBody
			var mu sync.Mutex
			if withGetBody {
				req.GetBody = func() (io.ReadCloser, error) {
					c := testkit.NewCountingBody(payload)
					mu.Lock()
					copies = append(copies, c)
					mu.Unlock()
					return c, nil
				}
			}
			time.AfterFunc(50*time.Millisecond, cancel)
			_, err := rt.RoundTrip(req)
			require.ErrorIs(t, err, context.Canceled)
			testkit.RequireClosedOnce(t, cb)
			mu.Lock()
			for _, c := range copies {
				testkit.RequireClosedOnce(t, c) // the copy made for the retry never sent
			}
			mu.Unlock()
		}
	})
	t.Run("GetBody fails on the retry", func(t *testing.T) {
		base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			_, _ = io.Copy(io.Discard, r.Body)
			r.Body.Close()
			return testkit.Resp(503, ""), nil
		})
		rt := testkit.NewRT(t, base)
		cb := testkit.NewCountingBody(payload)
		req := testkit.NewReq(t, http.MethodPut, "http://x.invalid/", cb)
		req.GetBody = func() (io.ReadCloser, error) { return nil, errors.New("no more") }
		res, err := rt.RoundTrip(req)
		require.NoError(t, err)
		assert.Equal(t, 503, res.StatusCode)
		testkit.RequireClosedOnce(t, cb)
	})
	t.Run("body past the replay buffer", func(t *testing.T) {
		base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			_, _ = io.Copy(io.Discard, r.Body)
			r.Body.Close()
			return testkit.Resp(503, ""), nil
		})
		rt := testkit.NewRT(t, base, retryhttp.WithReplayBuffer(100))
		cb := testkit.NewCountingBody(bytes.Repeat([]byte("z"), 1000))
		res, err := rt.RoundTrip(testkit.NewReq(t, http.MethodPut, "http://x.invalid/", cb))
		require.NoError(t, err)
		assert.Equal(t, 503, res.StatusCode)
		testkit.RequireClosedOnce(t, cb)
	})
}

func TestBodyIsClosedOnceAndReplayedOverRealHTTP1Faults(t *testing.T) {
	// A PUT (retried) against each HTTP/1 misbehaviour on its first
	// attempt, then a server that answers 200 after reading the body whole.
	payload := bytes.Repeat([]byte("put-body "), 5000)
	want := sha256.Sum256(payload)
	for name, misbehave := range h1Behaviours {
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			var got [][32]byte
			srv := testkit.NewH1Server(t, func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) bool {
				if n == 1 {
					misbehave(c, br, r)
					return false
				}
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				got = append(got, sha256.Sum256(b))
				mu.Unlock()
				testkit.WriteResponse(c, 200, "", "ok")
				return true
			})
			rt := testkit.NewRT(t, nil)
			cb := testkit.NewCountingBody(payload)
			req := testkit.NewReq(t, http.MethodPut, srv.URL, cb)
			req.ContentLength = int64(len(payload))
			res, err := rt.RoundTrip(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
			testkit.RequireClosedOnce(t, cb)
			mu.Lock()
			for _, h := range got {
				assert.Equal(t, want, h, "every retry carries the original body")
			}
			mu.Unlock()
			t.Logf("err=%v requests=%d", err, srv.Requests.Load())
		})
	}
}

func TestExpectContinueRejectedBodyIsClosedOnce(t *testing.T) {
	// Expect: 100-continue: the server answers 503 twice without asking
	// for the body (net/http then never sends it), then reads it.
	payload := bytes.Repeat([]byte("e"), 30000)
	var n atomic.Int32
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) < 3 {
			w.WriteHeader(503)
			return
		}
		b, _ := io.ReadAll(r.Body)
		got.Store(b)
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	base := srv.Client().Transport.(*http.Transport)
	base.ExpectContinueTimeout = 5 * time.Second
	for _, withGetBody := range []bool{false, true} {
		n.Store(0)
		cb := testkit.NewCountingBody(payload)
		req := testkit.NewReq(t, http.MethodPut, srv.URL, cb)
		req.ContentLength = int64(len(payload))
		if withGetBody {
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(payload)), nil }
		}
		req.Header.Set("Expect", "100-continue")
		res, err := testkit.NewRT(t, base).RoundTrip(req)
		require.NoError(t, err)
		res.Body.Close()
		assert.Equal(t, 200, res.StatusCode)
		assert.Equal(t, payload, got.Load())
		testkit.RequireClosedOnce(t, cb)
	}
}
