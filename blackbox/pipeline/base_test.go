package pipeline_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/require"
)

// TestABrokenBaseIsHeldToTheContract runs bases that break the
// RoundTripper contract, through a Transport that observes and counts
// and through a bare one (whose happy path skips the pipeline's layers).
func TestABrokenBaseIsHeldToTheContract(t *testing.T) {
	type bad struct {
		name string
		base func(leaked *[]*respBody) baseFunc
		// what the caller gets
		code       int // 0: an error
		attempts   int
		statusZero bool
	}
	cases := []bad{
		{name: "nil response and nil error", base: func(*[]*respBody) baseFunc {
			return func(r *http.Request) (*http.Response, error) { consume(r); return nil, nil }
		}, attempts: 1},
		{name: "response and error", base: func(l *[]*respBody) baseFunc {
			return func(r *http.Request) (*http.Response, error) {
				consume(r)
				resp, b := response(r, 200, "both")
				*l = append(*l, b)
				return resp, io.ErrUnexpectedEOF // a reset: retried
			}
		}, attempts: 3},
		{name: "nil Body", base: func(*[]*respBody) baseFunc {
			return func(r *http.Request) (*http.Response, error) {
				consume(r)
				resp, _ := response(r, 200, "")
				resp.Body = nil
				return resp, nil
			}
		}, code: 200, attempts: 1},
		{name: "nil Body on a 503", base: func(*[]*respBody) baseFunc {
			return func(r *http.Request) (*http.Response, error) {
				consume(r)
				resp, _ := response(r, 503, "")
				resp.Body = nil
				return resp, nil
			}
		}, code: 503, attempts: 3},
		{name: "status 0", base: func(*[]*respBody) baseFunc {
			return func(r *http.Request) (*http.Response, error) {
				consume(r)
				resp, _ := response(r, 0, "zero")
				return resp, nil
			}
		}, code: 0, attempts: 1, statusZero: true},
		{name: "status 999", base: func(*[]*respBody) baseFunc {
			return func(r *http.Request) (*http.Response, error) {
				consume(r)
				resp, _ := response(r, 999, "odd")
				return resp, nil
			}
		}, code: 999, attempts: 1},
		{name: "status -1", base: func(*[]*respBody) baseFunc {
			return func(r *http.Request) (*http.Response, error) {
				consume(r)
				resp, _ := response(r, -1, "negative")
				return resp, nil
			}
		}, code: -1, attempts: 1},
		{name: "another request in the response", base: func(*[]*respBody) baseFunc {
			return func(r *http.Request) (*http.Response, error) {
				consume(r)
				other, _ := http.NewRequest(http.MethodDelete, "http://elsewhere.test/", nil)
				code := 503
				if retryhttp.AttemptFromContext(r.Context()) == 3 {
					code = 200
				}
				resp, _ := response(other, code, "mine")
				return resp, nil
			}
		}, code: 200, attempts: 3},
	}
	for _, c := range cases {
		for _, bare := range []bool{false, true} {
			name := c.name
			if bare {
				name += " (bare)"
			}
			t.Run(name, func(t *testing.T) {
				var leaked []*respBody
				var calls atomic.Int32
				inner := c.base(&leaked)
				base := baseFunc(func(r *http.Request) (*http.Response, error) {
					calls.Add(1)
					return inner(r)
				})
				var rg *rig
				var rt http.RoundTripper
				if bare {
					rt = retryhttp.New(base, retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil))
				} else {
					rg = newRig(t, base)
					rt = rg.rt
				}
				req, b := bodyReq(t, context.Background(), "http://broken.test/x")
				s := snap(req)
				resp, err := rt.RoundTrip(req)
				requireContract(t, resp, err)
				s.requireUnchanged(t, req)
				requireClosedOnce(t, b)
				require.Equal(t, c.attempts, int(calls.Load()))
				for i, l := range leaked {
					require.Equal(t, int32(1), l.closes.Load(), "the response that came with an error, attempt %d, must be closed", i+1)
				}
				if c.code == 0 && !c.statusZero {
					require.Error(t, err)
					var re *retryhttp.Error
					require.ErrorAs(t, err, &re)
					require.Equal(t, c.attempts, re.Attempts)
				} else {
					require.NoError(t, err)
					require.Equal(t, c.code, resp.StatusCode)
					require.True(t, resp.Request == req, "resp.Request must be the caller's request")
					_, _ = io.Copy(io.Discard, resp.Body)
					require.NoError(t, resp.Body.Close())
				}
				if rg == nil {
					return
				}
				rg.requireAgreeZero(t, 1, c.statusZero)
				e := rg.request(t)
				require.Equal(t, c.attempts, e.Attempt)
				codes := rg.rec.of(retryhttp.EventAttempt)
				require.Len(t, codes, c.attempts)
				last := codes[len(codes)-1]
				if err == nil {
					require.Equal(t, c.code, last.Code, "Event.Code is the status as the base returned it")
				} else {
					require.Zero(t, last.Code)
				}
				at := rg.obs.all()
				require.Len(t, at, c.attempts, dumpAttempts(at))
				for _, a := range at {
					require.True(t, (a.Response == nil) != (a.Err == nil), "an Attempt has a Response or an Err: %s", dumpAttempts(at))
				}
			})
		}
	}
}

// TestAClassifierMayRetryAnOddStatus: a Classifier asks to retry status
// 999 and 0: the retries are counted with reason "other", and observers
// see that Reason.
func TestAClassifierMayRetryAnOddStatus(t *testing.T) {
	for _, code := range []int{999, 0} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			var calls atomic.Int32
			rg := newRig(t, baseFunc(func(r *http.Request) (*http.Response, error) {
				consume(r)
				c := code
				if calls.Add(1) == 2 {
					c = 200
				}
				resp, _ := response(r, c, "x")
				return resp, nil
			}), retryhttp.WithClassifier(func(_ *http.Request, resp *http.Response, _ error) retryhttp.Decision {
				if resp != nil && resp.StatusCode == code {
					return retryhttp.Retry
				}
				return retryhttp.UseDefault
			}))
			resp, err := rg.rt.RoundTrip(getReq(t, context.Background()))
			require.NoError(t, err)
			require.Equal(t, 200, resp.StatusCode)
			resp.Body.Close()
			rg.requireAgreeZero(t, 1, code == 0)
			retries := rg.rec.of(retryhttp.EventRetry)
			require.Len(t, retries, 1)
			require.Equal(t, "other", retries[0].Reason)
			at := rg.obs.all()
			require.Len(t, at, 2)
			require.True(t, at[0].Retry)
			require.Equal(t, "other", at[0].Reason)
		})
	}
}
