package sdk_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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

// snapshot is what a caller can see of its request.
type snapshot struct {
	header  string
	url     string
	urlPtr  *url.URL
	host    string
	body    io.ReadCloser
	getBody string
	ctx     context.Context
	method  string
}

func snap(r *http.Request) snapshot {
	var h bytes.Buffer
	_ = r.Header.Write(&h)
	return snapshot{header: h.String(), url: r.URL.String(), urlPtr: r.URL, host: r.Host, body: r.Body,
		getBody: fmt.Sprintf("%p", r.GetBody), ctx: r.Context(), method: r.Method}
}

// WithBeforeRetry runs after the wait, on a copy: the caller's request is
// never changed; the changes are what the next attempt sends, and carry to
// later attempts.
func TestBeforeRetryChangesOnlyTheCopy(t *testing.T) {
	for _, kind := range []string{"no body", "GetBody", "stream", "timeout"} {
		t.Run(kind, func(t *testing.T) {
			var mu sync.Mutex
			var got []string
			var hosts []string
			n := 0
			base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				mu.Lock()
				defer mu.Unlock()
				n++
				if r.Body != nil {
					b, _ := io.ReadAll(r.Body)
					r.Body.Close()
					assert.Equal(t, map[bool]string{true: "payload", false: ""}[kind != "no body" && kind != "timeout"], string(b))
				}
				got = append(got, r.Header.Get("Authorization")+"|"+r.URL.String()+"|"+r.Header.Get("X-Keep"))
				hosts = append(hosts, r.Host)
				if n < 3 {
					return testkit.Resp(503, ""), nil
				}
				return testkit.Resp(200, ""), nil
			})
			var reported []time.Time
			var waits []time.Duration
			var hookAt []time.Time
			policy := retryhttp.Policy{MaxAttempts: 3, BaseDelay: 40 * time.Millisecond, MaxDelay: 40 * time.Millisecond, Jitter: retryhttp.NoJitter}
			if kind == "timeout" {
				policy.AttemptTimeout = time.Second
			}
			rt := testkit.NewRT(t, base, retryhttp.WithPolicy(policy),
				retryhttp.WithObserver(func(a retryhttp.Attempt) {
					reported = append(reported, time.Now())
					waits = append(waits, a.Wait)
				}),
				retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
					hookAt = append(hookAt, time.Now())
					next.Header.Set("Authorization", fmt.Sprintf("Bearer t%d", prev.Number+1))
					if prev.Number == 1 {
						next.Header.Set("X-Keep", "set-on-2")
						next.Header.Add("Accept", "changed")
						next.URL.Host = "failover.invalid"
						next.URL.Path = "/other"
						next.URL.RawQuery = "q=1"
						next.Host = ""
					}
					return nil
				}))
			ctx := context.WithValue(context.Background(), struct{}{}, "v")
			var req *http.Request
			switch kind {
			case "no body", "timeout":
				req, _ = http.NewRequestWithContext(ctx, http.MethodGet, "http://primary.invalid/p?x=y", nil)
			case "GetBody":
				req, _ = http.NewRequestWithContext(ctx, http.MethodPut, "http://primary.invalid/p?x=y", strings.NewReader("payload"))
			case "stream":
				req, _ = http.NewRequestWithContext(ctx, http.MethodPut, "http://primary.invalid/p?x=y", nil)
				req.Body = io.NopCloser(strings.NewReader("payload"))
			}
			req.Header.Set("Authorization", "Bearer t1")
			req.Header["Accept"] = []string{"a"}
			req.Host = "primary.invalid"
			before := snap(req)
			resp, err := rt.RoundTrip(req)
			require.NoError(t, err)
			resp.Body.Close()
			after := snap(req)
			assert.Equal(t, before, after, "the caller's request changed")
			assert.Equal(t, []string{"a"}, req.Header["Accept"])
			assert.Equal(t, []string{
				"Bearer t1|http://primary.invalid/p?x=y|",
				"Bearer t2|http://failover.invalid/other?q=1|set-on-2",
				"Bearer t3|http://failover.invalid/other?q=1|set-on-2",
			}, got)
			assert.Equal(t, []string{"primary.invalid", "", ""}, hosts)
			require.Len(t, hookAt, 2)
			for i := range hookAt {
				assert.GreaterOrEqual(t, hookAt[i].Sub(reported[i]), waits[i], "the hook ran before the wait ended")
			}
		})
	}
}

// A caller's request built by hand with a nil Header (net/http accepts it
// as an empty one): a hook that refreshes a token with next.Header.Set must
// work, as on any other request.
func TestBeforeRetryOnARequestWithANilHeader(t *testing.T) {
	n := 0
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		n++
		if n == 1 {
			return testkit.Resp(401, ""), nil
		}
		if r.Header.Get("Authorization") != "Bearer fresh" {
			return testkit.Resp(401, ""), nil
		}
		return testkit.Resp(200, ""), nil
	})
	rt := testkit.NewRT(t, base,
		retryhttp.WithClassifier(func(r *http.Request, resp *http.Response, err error) retryhttp.Decision {
			if resp != nil && resp.StatusCode == 401 && retryhttp.AttemptFromContext(r.Context()) == 1 {
				return retryhttp.Retry
			}
			return retryhttp.UseDefault
		}),
		retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
			next.Header.Set("Authorization", "Bearer fresh")
			return nil
		}))
	u, _ := url.Parse("http://api.invalid/")
	req := &http.Request{Method: http.MethodGet, URL: u} // Header: nil
	var resp *http.Response
	var err error
	var panicked any
	func() {
		defer func() { panicked = recover() }()
		resp, err = rt.RoundTrip(req)
	}()
	require.Nil(t, panicked, "RoundTrip panicked: the hook got a nil next.Header")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
}

// An error from the hook stops the retries: errors.Is finds it, no Attempt
// follows the Retry: true report, the retry is not charged to the budget,
// the body made for the unsent retry is closed, the caller's body is
// closed exactly once, the last response is closed.
func TestBeforeRetryErrorStops(t *testing.T) {
	hookErr := errors.New("token refresh failed")
	t.Run("GetBody", func(t *testing.T) {
		var gets, closes atomic.Int32
		base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			_, _ = io.Copy(io.Discard, r.Body)
			r.Body.Close()
			return testkit.Resp(503, ""), nil
		})
		budget, err := retryhttp.NewBudget(retryhttp.BudgetConfig{Ratio: 1e-9, MinPerSecond: 0.001}) // holds one retry
		require.NoError(t, err)
		rec := &recorder{}
		rt := testkit.NewRT(t, base, retryhttp.WithBudget(budget), retryhttp.WithObserver(rec.observe),
			retryhttp.WithBeforeRetry(func(*http.Request, retryhttp.Attempt) error { return hookErr }))
		for i := range 3 { // each would spend the one retry if the hook's failures were charged
			req, _ := http.NewRequest(http.MethodPut, "http://x.invalid/", nil)
			caller := testkit.NewCountingBody([]byte("payload"))
			req.Body = caller
			req.GetBody = func() (io.ReadCloser, error) {
				gets.Add(1)
				return &closeTracker{Reader: strings.NewReader("payload"), n: &closes}, nil
			}
			resp, err := rt.RoundTrip(req)
			require.Nil(t, resp)
			require.ErrorIs(t, err, hookErr, "round %d", i)
			var re *retryhttp.Error
			require.ErrorAs(t, err, &re)
			assert.Equal(t, retryhttp.ReasonHook, re.Reason)
			assert.Equal(t, 1, re.Attempts)
			testkit.RequireClosedOnce(t, caller)
			assert.True(t, rec.last(t).Retry)
		}
		assert.Equal(t, gets.Load(), closes.Load(), "bodies made for retries that were not sent were left open")
		assert.InDelta(t, 1.0, budget.Available(), 0.01, "the hook's failures were charged to the budget")
	})
	t.Run("stream", func(t *testing.T) {
		var bodies []io.ReadCloser
		var respBodies []*closeTracker
		var respCloses atomic.Int32
		base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			_, _ = io.Copy(io.Discard, r.Body)
			bodies = append(bodies, r.Body)
			rb := &closeTracker{Reader: strings.NewReader("busy"), n: &respCloses}
			respBodies = append(respBodies, rb)
			rs := testkit.Resp(503, "")
			rs.Body = rb
			return rs, nil
		})
		rt := testkit.NewRT(t, base, retryhttp.WithBeforeRetry(func(*http.Request, retryhttp.Attempt) error { return hookErr }))
		caller := testkit.NewCountingBody([]byte("payload"))
		_, err := rt.RoundTrip(testkit.NewReq(t, http.MethodPut, "http://x.invalid/", caller))
		require.ErrorIs(t, err, hookErr)
		testkit.RequireClosedOnce(t, caller)
		assert.Equal(t, int32(1), respCloses.Load(), "the last response was not closed")
	})
}

type closeTracker struct {
	io.Reader
	n *atomic.Int32
}

func (c *closeTracker) Close() error { c.n.Add(1); return nil }

// The acceptance recipe over loopback: 401, then a refreshed token succeeds
// on one retry, the caller's request untouched.
func TestTokenRefreshOn401(t *testing.T) {
	var n atomic.Int32
	var refreshes atomic.Int32
	s := testkit.NewH1Server(t, func(i int, c *net.TCPConn, br *bufio.Reader, r *http.Request) bool {
		n.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Header.Get("Authorization") != "Bearer new" {
			testkit.WriteResponse(c, 401, "", "expired")
			return true
		}
		testkit.WriteResponse(c, 200, "", "hello")
		return true
	})
	rt := testkit.NewRT(t, nil,
		retryhttp.WithClassifier(func(r *http.Request, resp *http.Response, err error) retryhttp.Decision {
			if resp != nil && resp.StatusCode == 401 && retryhttp.AttemptFromContext(r.Context()) == 1 {
				return retryhttp.Retry
			}
			return retryhttp.UseDefault
		}),
		retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
			if prev.Response != nil && prev.Response.StatusCode == 401 {
				refreshes.Add(1)
				next.Header.Set("Authorization", "Bearer new")
			}
			return nil
		}))
	req, _ := http.NewRequest(http.MethodPut, s.URL, strings.NewReader("data"))
	req.Header.Set("Authorization", "Bearer old")
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "hello", string(b))
	assert.Equal(t, int32(2), n.Load())
	assert.Equal(t, int32(1), refreshes.Load())
	assert.Equal(t, "Bearer old", req.Header.Get("Authorization"))
}

var _ = syscall.ECONNRESET
