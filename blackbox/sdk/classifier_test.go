package sdk_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A Classifier that always says Retry cannot make a POST go twice once the
// server may have seen it, whatever went wrong: a 503, a 200, a reset after
// the request was read, an HTTP/2 stream reset, a GOAWAY that covered it.
func TestAlwaysRetryNeverResendsAPOSTTheServerSaw(t *testing.T) {
	h1cases := map[string]func(c *net.TCPConn, br *bufio.Reader, r *http.Request){
		"503": func(c *net.TCPConn, br *bufio.Reader, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			testkit.WriteResponse(c, 503, "", "no")
		},
		"200": func(c *net.TCPConn, br *bufio.Reader, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			testkit.WriteResponse(c, 200, "", "ok")
		},
		"reset after the body": func(c *net.TCPConn, br *bufio.Reader, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			testkit.Reset(c)
		},
		"close before the body": func(c *net.TCPConn, br *bufio.Reader, r *http.Request) {
			_ = c.Close()
		},
		"reset mid-header": func(c *net.TCPConn, br *bufio.Reader, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Len"))
			testkit.Reset(c)
		},
	}
	for name, behave := range h1cases {
		for _, withBody := range []string{"none", "GetBody", "stream"} {
			t.Run("h1/"+name+"/"+withBody, func(t *testing.T) {
				s := testkit.NewH1Server(t, func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) bool {
					behave(c, br, r)
					return false
				})
				rt := testkit.NewRT(t, nil, retryhttp.WithClassifier(always(retryhttp.Retry)),
					retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}))
				var req *http.Request
				switch withBody {
				case "none":
					req = testkit.NewReq(t, http.MethodPost, s.URL, nil)
				case "GetBody":
					var err error
					req, err = http.NewRequest(http.MethodPost, s.URL, strings.NewReader("payload"))
					require.NoError(t, err)
				case "stream":
					req = testkit.NewReq(t, http.MethodPost, s.URL, testkit.NewCountingBody([]byte("payload")))
				}
				resp, err := rt.RoundTrip(req)
				if resp != nil {
					resp.Body.Close()
				}
				assert.Equal(t, int32(1), s.Requests.Load(), "a POST the server saw was sent again (err=%v)", err)
			})
		}
	}
	// HTTP/2: the first two streams are reset with each code. net/http
	// resends a POST that has a GetBody by itself after REFUSED_STREAM and
	// PROTOCOL_ERROR; retryhttp must add nothing on top of bare net/http,
	// but for a POST without GetBody whose streams were refused: the server
	// did not process them (RFC 9113 §8.7), and retryhttp sends it again
	// until a stream is not refused.
	for _, code := range []uint32{0x0, 0x1, 0x2, 0x7, 0x8} {
		for _, withBody := range []string{"none", "GetBody", "stream"} {
			t.Run(fmt.Sprintf("h2/reset code %d/%s", code, withBody), func(t *testing.T) {
				count := func(rt http.RoundTripper, s *testkit.H2Server) int {
					var req *http.Request
					switch withBody {
					case "none":
						req = testkit.NewReq(t, http.MethodPost, s.URL, nil)
					case "GetBody":
						req, _ = http.NewRequest(http.MethodPost, s.URL, strings.NewReader("payload"))
					case "stream":
						req = testkit.NewReq(t, http.MethodPost, s.URL, testkit.NewCountingBody([]byte("payload")))
					}
					req = req.WithContext(ctxTimeout(t, 5*time.Second))
					resp, _ := rt.RoundTrip(req)
					if resp != nil {
						resp.Body.Close()
					}
					heads, _, _ := s.Stats()
					return heads
				}
				bare := testkit.NewH2Server(t, testkit.FirstThen(2, testkit.H2Action{Kind: testkit.H2Reset, Code: code}))
				want := count(bare.Client, bare)
				s := testkit.NewH2Server(t, testkit.FirstThen(2, testkit.H2Action{Kind: testkit.H2Reset, Code: code}))
				got := count(testkit.NewRT(t, s.Client, retryhttp.WithClassifier(always(retryhttp.Retry))), s)
				if code == 0x7 && withBody == "stream" {
					want = 3 // two refused, then one processed
				}
				assert.Equal(t, want, got, "streams the server saw: bare net/http %d, through retryhttp with an always-Retry Classifier %d", want, got)
			})
		}
	}
}

// Retry does not replay a body past the replay buffer, and the give-up
// names the buffer and what to do.
func TestAlwaysRetryDoesNotReplayABodyPastTheBuffer(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 200<<10)
	s := testkit.NewH1Server(t, func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) bool {
		_, _ = io.Copy(io.Discard, r.Body)
		testkit.Reset(c)
		return false
	})
	rec := &recorder{}
	logger, logs := newLogger()
	rt := testkit.NewRT(t, nil, retryhttp.WithClassifier(always(retryhttp.Retry)), retryhttp.WithObserver(rec.observe),
		retryhttp.WithLogger(logger))
	body := testkit.NewCountingBody(big)
	resp, err := rt.RoundTrip(testkit.NewReq(t, http.MethodPut, s.URL, body))
	require.Nil(t, resp)
	require.Error(t, err)
	assert.Equal(t, int32(1), s.Requests.Load())
	var re *retryhttp.Error
	require.ErrorAs(t, err, &re)
	assert.Equal(t, retryhttp.ReasonBody, re.Reason)
	assert.Contains(t, err.Error(), "passed the replay buffer of 65536 bytes")
	assert.Contains(t, err.Error(), "GetBody")
	assert.Contains(t, err.Error(), "WithReplayBuffer")
	assert.Equal(t, retryhttp.ReasonBody, rec.last(t).Reason)
	assert.False(t, rec.last(t).Retry)
	assert.Contains(t, logs.String(), "passed the replay buffer of 65536 bytes")
	testkit.RequireClosedOnce(t, body)

	// The same with a response: the 503 comes back, and says why in the log
	// and the Attempt.
	s2 := testkit.NewH1Server(t, func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) bool {
		_, _ = io.Copy(io.Discard, r.Body)
		testkit.WriteResponse(c, 503, "", "busy")
		return true
	})
	rec2 := &recorder{}
	logger2, logs2 := newLogger()
	rt2 := testkit.NewRT(t, nil, retryhttp.WithObserver(rec2.observe), retryhttp.WithLogger(logger2))
	body2 := testkit.NewCountingBody(big)
	resp, err = rt2.RoundTrip(testkit.NewReq(t, http.MethodPut, s2.URL, body2))
	require.NoError(t, err)
	assert.Equal(t, 503, resp.StatusCode)
	resp.Body.Close()
	assert.Equal(t, int32(1), s2.Requests.Load())
	assert.Equal(t, retryhttp.ReasonBody, rec2.last(t).Reason)
	assert.Contains(t, logs2.String(), "passed the replay buffer of 65536 bytes")
	assert.Contains(t, logs2.String(), "WithReplayBuffer")
	testkit.RequireClosedOnce(t, body2)
}

// MaxAttempts, the deadline, MaxRetryAfter and the budget still bound a
// Classifier's Retry; a Retry on a 2xx works.
func TestAlwaysRetryStaysWithinThePolicy(t *testing.T) {
	t.Run("MaxAttempts on a 200", func(t *testing.T) {
		s, n := statusServer(t)
		rec := &recorder{}
		rt := testkit.NewRT(t, nil, retryhttp.WithClassifier(always(retryhttp.Retry)), retryhttp.WithObserver(rec.observe),
			retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
		resp, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, s.URL, nil))
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, "ok", string(b))
		assert.Equal(t, 4, n.get())
		as := rec.all()
		require.Len(t, as, 4)
		for i, a := range as[:3] {
			assert.True(t, a.Retry, i)
			assert.Equal(t, "200", a.Reason, i)
		}
		assert.Equal(t, retryhttp.ReasonExhausted, as[3].Reason)
	})
	t.Run("deadline", func(t *testing.T) {
		s, n := statusServer(t)
		rec := &recorder{}
		rt := testkit.NewRT(t, nil, retryhttp.WithClassifier(always(retryhttp.Retry)), retryhttp.WithObserver(rec.observe),
			retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 4, BaseDelay: 30 * time.Second, MaxDelay: 30 * time.Second, Jitter: retryhttp.NoJitter}))
		// A wait of 30 s against a deadline of 5 s: not started (one
		// attempt, Reason deadline, and no Retry reported).
		req := testkit.NewReq(t, http.MethodGet, s.URL, nil).WithContext(ctxTimeout(t, 5*time.Second))
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 1, n.get())
		assert.False(t, rec.last(t).Retry, "no wait was started")
		assert.Equal(t, retryhttp.ReasonDeadline, rec.last(t).Reason)
	})
	t.Run("MaxRetryAfter", func(t *testing.T) {
		s := testkit.NewH1Server(t, func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) bool {
			testkit.WriteResponse(c, 403, "Retry-After: 120\r\n", "slow down")
			return true
		})
		rec := &recorder{}
		rt := testkit.NewRT(t, nil, retryhttp.WithClassifier(always(retryhttp.Retry)), retryhttp.WithObserver(rec.observe))
		resp, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, s.URL, nil))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 403, resp.StatusCode)
		assert.False(t, rec.last(t).Retry, "returned at once, no wait")
		assert.Equal(t, int32(1), s.Requests.Load())
		assert.Equal(t, retryhttp.ReasonRetryAfter, rec.last(t).Reason)
	})
	t.Run("budget", func(t *testing.T) {
		b, err := retryhttp.NewBudget(retryhttp.BudgetConfig{Ratio: 1e-9, MinPerSecond: 0.001})
		require.NoError(t, err)
		s, n := statusServer(t)
		rec := &recorder{}
		rt := testkit.NewRT(t, nil, retryhttp.WithClassifier(always(retryhttp.Retry)), retryhttp.WithObserver(rec.observe),
			retryhttp.WithBudget(b), retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 10, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
		resp, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, s.URL, nil))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 2, n.get(), "one retry from a budget that holds one")
		assert.Equal(t, retryhttp.ReasonBudget, rec.last(t).Reason)
	})
}

// The reason label of a retry the Classifier asked for is bounded: the
// status (100-599), "other" outside it, "error" for an error.
func TestClassifierRetryReasonsAreBoundedLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := retryhttp.NewMetrics(reg)
	require.NoError(t, err)
	codes := []int{200, 409, 999, -5, 0, 1 << 20}
	var mu sync.Mutex
	i := 0
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		defer mu.Unlock()
		i++
		if i%2 == 0 {
			return testkit.Resp(200, "done"), nil
		}
		if i == 1 {
			return nil, errors.New("some error the Transport never retries")
		}
		return testkit.Resp(codes[(i/2-1)%len(codes)], "x"), nil
	})
	rt := testkit.NewRT(t, base, retryhttp.WithMetrics(m), retryhttp.WithClassifier(func(r *http.Request, resp *http.Response, err error) retryhttp.Decision {
		if resp != nil && resp.StatusCode == 200 && resp.Body != nil {
			b, _ := retryhttp.PeekBody(resp, 16)
			if string(b) == "done" {
				return retryhttp.DoNotRetry
			}
		}
		return retryhttp.Retry
	}))
	for range len(codes) + 1 {
		resp, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, "http://example.invalid/", nil))
		require.NoError(t, err)
		resp.Body.Close()
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var labels []string
	for _, mf := range mfs {
		if mf.GetName() != "retryhttp_retries_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "reason" {
					labels = append(labels, l.GetValue())
				}
			}
		}
	}
	assert.ElementsMatch(t, []string{"error", "200", "409", "other"}, labels)
}

// DoNotRetry returns at once; its Reason is "classifier" for a failure and
// empty for a success or a final status.
func TestDoNotRetry(t *testing.T) {
	for _, tc := range []struct {
		code   int
		reason string
	}{{503, retryhttp.ReasonClassifier}, {200, ""}, {404, ""}, {429, retryhttp.ReasonClassifier}} {
		s, n := statusServer(t, tc.code, tc.code, tc.code)
		rec := &recorder{}
		rt := testkit.NewRT(t, nil, retryhttp.WithClassifier(always(retryhttp.DoNotRetry)), retryhttp.WithObserver(rec.observe))
		resp, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, s.URL, nil))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, tc.code, resp.StatusCode)
		assert.Equal(t, 1, n.get())
		assert.Equal(t, tc.reason, rec.last(t).Reason, "status %d", tc.code)
	}
	// An error.
	s := testkit.NewH1Server(t, func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) bool {
		testkit.Reset(c)
		return false
	})
	rt := testkit.NewRT(t, nil, retryhttp.WithClassifier(always(retryhttp.DoNotRetry)))
	_, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, s.URL, nil))
	var re *retryhttp.Error
	require.ErrorAs(t, err, &re)
	assert.Equal(t, retryhttp.ReasonClassifier, re.Reason)
	assert.Equal(t, 1, re.Attempts)
	assert.Equal(t, int32(1), s.Requests.Load())
}

// A panic in a Classifier comes out of RoundTrip with its value.
func TestClassifierPanicPropagates(t *testing.T) {
	s, _ := statusServer(t)
	type boom struct{ v int }
	rt := testkit.NewRT(t, nil, retryhttp.WithClassifier(func(*http.Request, *http.Response, error) retryhttp.Decision {
		panic(boom{42})
	}))
	var got any
	func() {
		defer func() { got = recover() }()
		resp, _ := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, s.URL, nil))
		if resp != nil {
			resp.Body.Close()
		}
	}()
	assert.Equal(t, boom{42}, got)
}

// The Classifier receives the request the base received for that attempt,
// with its attempt number, with and without an AttemptTimeout.
func TestClassifierSeesTheRequestAsSent(t *testing.T) {
	for _, timeout := range []time.Duration{0, time.Second} {
		var mu sync.Mutex
		var sent, seen []*http.Request
		base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			defer mu.Unlock()
			sent = append(sent, r)
			if len(sent) < 3 {
				return testkit.Resp(503, ""), nil
			}
			return testkit.Resp(200, ""), nil
		})
		var nums []int
		rt := testkit.NewRT(t, base, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond, AttemptTimeout: timeout}),
			retryhttp.WithClassifier(func(r *http.Request, resp *http.Response, err error) retryhttp.Decision {
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, r)
				nums = append(nums, retryhttp.AttemptFromContext(r.Context()))
				return retryhttp.UseDefault
			}),
			retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
				next.Header.Set("X-Attempt", "changed")
				return nil
			}))
		req, _ := http.NewRequest(http.MethodPut, "http://example.invalid/", strings.NewReader("body"))
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Len(t, seen, 3)
		for i := range seen {
			assert.Same(t, sent[i], seen[i], "attempt %d, timeout %v", i+1, timeout)
		}
		assert.Equal(t, []int{1, 2, 3}, nums)
		assert.Equal(t, "changed", seen[2].Header.Get("X-Attempt"))
	}
}

// DefaultClassifier is "the Transport's own rules as a Classifier, to
// start from and change one answer": installing it alone must change
// nothing, the Reason of a give-up included.
func TestDefaultClassifierAloneChangesNothing(t *testing.T) {
	// A TLS server the client does not trust: a permanent error.
	s := testkit.NewH2Server(t, testkit.FirstThen(0, testkit.H2Action{}))
	untrusted := &http.Transport{TLSClientConfig: &tls.Config{}}
	t.Cleanup(untrusted.CloseIdleConnections)

	reasons := map[string]string{}
	for name, opts := range map[string][]retryhttp.Option{
		"no classifier":     nil,
		"DefaultClassifier": {retryhttp.WithClassifier(retryhttp.DefaultClassifier)},
	} {
		rec := &recorder{}
		rt := testkit.NewRT(t, untrusted, append(opts, retryhttp.WithObserver(rec.observe))...)
		_, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, s.URL, nil))
		require.Error(t, err)
		var re *retryhttp.Error
		require.ErrorAs(t, err, &re)
		reasons[name] = re.Reason + " / " + rec.last(t).Reason
	}
	assert.Equal(t, reasons["no classifier"], reasons["DefaultClassifier"],
		"WithClassifier(DefaultClassifier) reports a different give-up Reason than the Transport's own rules")
}
