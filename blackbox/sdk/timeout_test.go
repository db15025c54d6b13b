package sdk_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The acceptance test: a hung first attempt with AttemptTimeout 500ms is
// retried, the request succeeds within the caller's deadline (20 s, a
// guard: the attempt timeout, not the deadline, must end the hung
// attempt), and no goroutine is left behind.
func TestHungFirstAttemptIsRetriedWithinTheDeadline(t *testing.T) {
	for _, proto := range []string{"h1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			time.Sleep(50 * time.Millisecond)
			before := testkit.SettleGoroutines(0, 200*time.Millisecond)
			func() {
				var n atomic.Int32
				release := make(chan struct{})
				srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if n.Add(1) == 1 {
						select { // hang
						case <-release:
						case <-r.Context().Done():
						}
						return
					}
					_, _ = io.WriteString(w, "ok")
				}))
				var base *http.Transport
				if proto == "h2" {
					srv.EnableHTTP2 = true
					srv.StartTLS()
					base = srv.Client().Transport.(*http.Transport).Clone()
				} else {
					srv.Start()
					base = cleanhttp.DefaultPooledTransport()
				}
				defer srv.Close()
				defer close(release)
				defer base.CloseIdleConnections()
				rec := &recorder{}
				const timeout = 500 * time.Millisecond // the retry's headers come far within it
				rt := retryhttp.New(base, retryhttp.WithPolicy(retryhttp.Policy{AttemptTimeout: timeout}),
					retryhttp.WithObserver(rec.observe))
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
				resp, err := rt.RoundTrip(req)
				require.NoError(t, err)
				b, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				resp.Body.Close()
				assert.Equal(t, "ok", string(b))
				as := rec.all()
				require.Len(t, as, 2)
				assert.True(t, as[0].Retry)
				assert.Equal(t, "timeout", as[0].Reason)
				assert.ErrorIs(t, as[0].Err, retryhttp.ErrAttemptTimeout)
				assert.NotErrorIs(t, as[0].Err, context.DeadlineExceeded, "the attempt timeout ended it, not the caller's deadline")
				assert.GreaterOrEqual(t, as[0].Duration, timeout)
				if proto == "h2" {
					assert.Equal(t, 2, resp.ProtoMajor)
				}
			}()
			after := testkit.SettleGoroutines(before, 2*time.Second)
			assert.LessOrEqual(t, after, before, testkit.GoroutineDump())
		})
	}
}

// The timeout ends with the headers: a slow body (HTTP/1 and HTTP/2) is
// read whole, long after AttemptTimeout. The connection is warm (a cold
// TLS handshake on a busy machine may take longer than the timeout), and
// the headers come at once, far within its 250 ms; the body takes 480 ms.
func TestAttemptTimeoutNeverCutsASlowBody(t *testing.T) {
	for _, proto := range []string{"h1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/warm" {
					return
				}
				w.WriteHeader(200)
				w.(http.Flusher).Flush()
				for i := range 8 {
					time.Sleep(60 * time.Millisecond)
					fmt.Fprintf(w, "chunk%d;", i)
					w.(http.Flusher).Flush()
				}
			}))
			var base *http.Transport
			if proto == "h2" {
				srv.EnableHTTP2 = true
				srv.StartTLS()
				base = srv.Client().Transport.(*http.Transport).Clone()
			} else {
				srv.Start()
				base = cleanhttp.DefaultPooledTransport()
			}
			t.Cleanup(srv.Close)
			t.Cleanup(base.CloseIdleConnections)
			warm, _ := http.NewRequest(http.MethodGet, srv.URL+"/warm", nil)
			wres, err := base.RoundTrip(warm)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, wres.Body)
			wres.Body.Close()
			for _, opts := range [][]retryhttp.Option{
				nil,
				{retryhttp.WithObserver(func(retryhttp.Attempt) {}), retryhttp.WithClassifier(always(retryhttp.UseDefault))},
				// A classifier that peeks at the first bytes (the timer is
				// already stopped, the body must still be whole).
				{retryhttp.WithClassifier(func(r *http.Request, resp *http.Response, err error) retryhttp.Decision {
					if resp != nil {
						_, _ = retryhttp.PeekBody(resp, 3)
					}
					return retryhttp.UseDefault
				})},
			} {
				rt := retryhttp.New(base, append(opts, retryhttp.WithPolicy(retryhttp.Policy{AttemptTimeout: 250 * time.Millisecond}))...)
				req, _ := http.NewRequestWithContext(ctxTimeout(t, 20*time.Second), http.MethodGet, srv.URL, nil)
				resp, err := rt.RoundTrip(req)
				require.NoError(t, err)
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err)
				assert.Equal(t, "chunk0;chunk1;chunk2;chunk3;chunk4;chunk5;chunk6;chunk7;", string(b))
			}
		})
	}
}

// A 101 Switching Protocols body stays an io.ReadWriteCloser, and is not
// cut when AttemptTimeout passes while the connection is in use.
func TestAttemptTimeoutKeeps101BodiesWritableAndAlive(t *testing.T) {
	s := testkit.NewH1Server(t, func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		// echo lines
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return false
			}
			if _, err := io.WriteString(c, "echo:"+line); err != nil {
				return false
			}
		}
	})
	// The 101 comes at once, far within the 250 ms timeout; each exchange
	// on the upgraded connection follows a pause longer than it.
	const timeout = 250 * time.Millisecond
	for _, opts := range [][]retryhttp.Option{
		nil,
		{retryhttp.WithObserver(func(retryhttp.Attempt) {})},
	} {
		rt := testkit.NewRT(t, nil, append(opts, retryhttp.WithPolicy(retryhttp.Policy{AttemptTimeout: timeout}))...)
		req := testkit.NewReq(t, http.MethodGet, s.URL, nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "echo")
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err)
		require.Equal(t, 101, resp.StatusCode)
		rwc, ok := resp.Body.(io.ReadWriteCloser)
		require.True(t, ok, "the 101 body %T is not an io.ReadWriteCloser", resp.Body)
		br := bufio.NewReader(rwc)
		for i := range 3 {
			time.Sleep(timeout + 50*time.Millisecond) // past AttemptTimeout each time
			_, err := fmt.Fprintf(rwc, "hello %d\n", i)
			require.NoError(t, err)
			line, err := br.ReadString('\n')
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprintf("echo:hello %d\n", i), line)
		}
		require.NoError(t, rwc.Close())
	}
}

// The earlier of AttemptTimeout and the context's deadline bounds an attempt.
func TestTheEarlierOfAttemptTimeoutAndTheDeadlineBounds(t *testing.T) {
	hang := testkit.NewH1Server(t, func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) bool {
		time.Sleep(3 * time.Second)
		return false
	})
	// Which of the two ended the attempt is in the error: the deadline's
	// context.DeadlineExceeded, or ErrAttemptTimeout (the elapsed time, a
	// few hundred ms, was checked too, and failed on busy machines).
	t.Run("deadline first", func(t *testing.T) {
		rt := testkit.NewRT(t, nil, retryhttp.WithPolicy(retryhttp.Policy{AttemptTimeout: 2 * time.Second}))
		req := testkit.NewReq(t, http.MethodGet, hang.URL, nil).WithContext(ctxTimeout(t, 150*time.Millisecond))
		_, err := rt.RoundTrip(req)
		require.Error(t, err)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.NotErrorIs(t, err, retryhttp.ErrAttemptTimeout)
	})
	t.Run("AttemptTimeout first", func(t *testing.T) {
		rec := &recorder{}
		rt := testkit.NewRT(t, nil, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 2, AttemptTimeout: 100 * time.Millisecond, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}),
			retryhttp.WithObserver(rec.observe))
		req := testkit.NewReq(t, http.MethodGet, hang.URL, nil).WithContext(ctxTimeout(t, 20*time.Second))
		start := time.Now()
		_, err := rt.RoundTrip(req)
		took := time.Since(start)
		require.Error(t, err)
		assert.ErrorIs(t, err, retryhttp.ErrAttemptTimeout)
		assert.NotErrorIs(t, err, context.DeadlineExceeded)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		assert.True(t, ne.Timeout())
		var re *retryhttp.Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 2, re.Attempts)
		assert.Equal(t, retryhttp.ReasonExhausted, re.Reason)
		assert.GreaterOrEqual(t, took, 200*time.Millisecond, "two attempts of 100 ms at least")
		assert.Equal(t, retryhttp.ReasonExhausted, rec.last(t).Reason)
	})
}

// A POST is sent again after its attempt timed out only if its connection
// was never made.
func TestPOSTAfterATimeoutIsResentOnlyIfNeverConnected(t *testing.T) {
	t.Run("server saw it", func(t *testing.T) {
		for _, withBody := range []string{"none", "GetBody", "stream"} {
			s := testkit.NewH1Server(t, func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) bool {
				_, _ = io.Copy(io.Discard, r.Body)
				time.Sleep(time.Second)
				return false
			})
			rec := &recorder{}
			rt := testkit.NewRT(t, nil, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, AttemptTimeout: 100 * time.Millisecond, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}),
				retryhttp.WithClassifier(always(retryhttp.Retry)), retryhttp.WithObserver(rec.observe))
			var req *http.Request
			switch withBody {
			case "none":
				req = testkit.NewReq(t, http.MethodPost, s.URL, nil)
			case "GetBody":
				req, _ = http.NewRequest(http.MethodPost, s.URL, strings.NewReader("pay"))
			case "stream":
				req = testkit.NewReq(t, http.MethodPost, s.URL, testkit.NewCountingBody([]byte("pay")))
			}
			_, err := rt.RoundTrip(req)
			require.Error(t, err)
			assert.ErrorIs(t, err, retryhttp.ErrAttemptTimeout)
			assert.Equal(t, int32(1), s.Requests.Load(), withBody)
			assert.Equal(t, retryhttp.ReasonMethod, rec.last(t).Reason, withBody)
		}
	})
	t.Run("HTTP/2 server saw it", func(t *testing.T) {
		s := testkit.NewH2Server(t, testkit.FirstThen(10, testkit.H2Action{Kind: testkit.H2Silent}))
		rt := testkit.NewRT(t, s.Client, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, AttemptTimeout: 100 * time.Millisecond, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}),
			retryhttp.WithClassifier(always(retryhttp.Retry)))
		req, _ := http.NewRequest(http.MethodPost, s.URL, strings.NewReader("pay"))
		_, err := rt.RoundTrip(req)
		require.ErrorIs(t, err, retryhttp.ErrAttemptTimeout)
		heads, _, _ := s.Stats()
		assert.Equal(t, 1, heads)
	})
	t.Run("never connected", func(t *testing.T) {
		srv, n := statusServer(t)
		var dials atomic.Int32
		base := cleanhttp.DefaultPooledTransport()
		t.Cleanup(base.CloseIdleConnections)
		d := &net.Dialer{}
		base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials.Add(1) == 1 {
				<-ctx.Done() // a dial that hangs
				return nil, ctx.Err()
			}
			return d.DialContext(ctx, network, addr)
		}
		rt := testkit.NewRT(t, base, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, AttemptTimeout: 150 * time.Millisecond, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
		body := testkit.NewCountingBody([]byte("pay"))
		req := testkit.NewReq(t, http.MethodPost, srv.URL, body).WithContext(ctxTimeout(t, 2*time.Second))
		resp, err := rt.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, 1, n.get())
		testkit.RequireClosedOnce(t, body)
	})
}

// A base RoundTripper that is not net/http's (an HTTP/3 client, an
// in-process transport, a custom protocol) reports no httptrace events. A
// POST that such a base delivered, and whose response then took longer than
// AttemptTimeout, was seen by the server: it must not be sent again.
func TestPOSTTimeoutThroughABaseWithoutHTTPTraceIsNotResent(t *testing.T) {
	var delivered atomic.Int32
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		delivered.Add(1) // the server has the request now
		select {
		case <-time.After(time.Second): // and takes its time to answer
			return testkit.Resp(200, "created"), nil
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	})
	rt := testkit.NewRT(t, base, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, AttemptTimeout: 100 * time.Millisecond, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	req := testkit.NewReq(t, http.MethodPost, "http://payments.invalid/charge", nil)
	_, err := rt.RoundTrip(req)
	require.Error(t, err)
	assert.Equal(t, int32(1), delivered.Load(), "a POST the base delivered was sent again after an attempt timeout: %v", err)
}

// A negative AttemptTimeout is a *PolicyError naming the field, from
// Validate, from every RoundTrip, and per request.
func TestNegativeAttemptTimeoutIsAPolicyError(t *testing.T) {
	p := retryhttp.Policy{AttemptTimeout: -time.Second}
	var pe *retryhttp.PolicyError
	require.ErrorAs(t, p.Validate(), &pe)
	assert.Equal(t, "AttemptTimeout", pe.Field)

	var calls atomic.Int32
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) { calls.Add(1); return testkit.Resp(200, ""), nil })
	body := testkit.NewCountingBody([]byte("x"))
	_, err := retryhttp.New(base, retryhttp.WithPolicy(p)).RoundTrip(testkit.NewReq(t, http.MethodPut, "http://x.invalid/", body))
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "AttemptTimeout", pe.Field)
	assert.Equal(t, int32(1), body.Closes.Load())

	req := testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil)
	req = req.WithContext(retryhttp.ContextWithPolicy(req.Context(), p))
	_, err = retryhttp.New(base).RoundTrip(req)
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "AttemptTimeout", pe.Field)
	assert.Equal(t, int32(0), calls.Load())
}

// The attempt's resources are released when its body is closed, or when the
// Transport discards it; not before, while the caller reads.
func TestAttemptContextIsReleasedWithTheBody(t *testing.T) {
	var mu sync.Mutex
	var ctxs []context.Context
	codes := []int{503, 200}
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		defer mu.Unlock()
		ctxs = append(ctxs, r.Context())
		return testkit.Resp(codes[len(ctxs)-1], "body"), nil
	})
	rt := testkit.NewRT(t, base, retryhttp.WithPolicy(retryhttp.Policy{AttemptTimeout: 50 * time.Millisecond, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	resp, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil))
	require.NoError(t, err)
	require.Len(t, ctxs, 2)
	assert.Error(t, ctxs[0].Err(), "the discarded attempt's context is still live")
	time.Sleep(120 * time.Millisecond)
	assert.NoError(t, ctxs[1].Err(), "the returned response's context was canceled before its body was closed")
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Error(t, ctxs[1].Err(), "the returned response's context lives on after its body was closed")
}

// Many requests with AttemptTimeout, timeouts, retries and bodies closed or
// discarded, under a parent context that is not one of the standard
// library's (so that every derived context costs a goroutine until it is
// canceled): nothing is left behind.
func TestAttemptTimeoutLeavesNoGoroutine(t *testing.T) {
	time.Sleep(50 * time.Millisecond)
	before := testkit.SettleGoroutines(0, 200*time.Millisecond)
	func() {
		var n atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch n.Add(1) % 4 {
			case 1:
				select {
				case <-time.After(300 * time.Millisecond):
				case <-r.Context().Done():
				}
				return
			case 2:
				w.WriteHeader(503)
				_, _ = io.WriteString(w, strings.Repeat("z", 10000))
				return
			}
			_, _ = io.WriteString(w, "ok")
		}))
		defer srv.Close()
		base := cleanhttp.DefaultPooledTransport()
		defer base.CloseIdleConnections()
		rt := retryhttp.New(base, retryhttp.WithBudget(nil), retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 5, AttemptTimeout: 80 * time.Millisecond, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}),
			retryhttp.WithClassifier(always(retryhttp.UseDefault)), retryhttp.WithObserver(func(retryhttp.Attempt) {}))
		parent, cancelParent := context.WithCancel(context.Background())
		defer cancelParent()
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := customCtx{parent}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
				resp, err := rt.RoundTrip(req)
				if err != nil {
					return
				}
				if i%2 == 0 {
					_, _ = io.ReadAll(resp.Body)
				}
				resp.Body.Close()
			}()
		}
		wg.Wait()
	}()
	runtime.GC()
	after := testkit.SettleGoroutines(before, 3*time.Second)
	assert.LessOrEqual(t, after, before, testkit.GoroutineDump())
}

// customCtx hides the standard library's context type, as a tracing or
// framework context does.
type customCtx struct{ context.Context }

func (c customCtx) Done() <-chan struct{} { return c.Context.Done() }

// errors.Is(err, ErrAttemptTimeout) holds through an http.Client too.
func TestAttemptTimeoutThroughAClient(t *testing.T) {
	hang := testkit.NewH1Server(t, func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) bool {
		time.Sleep(time.Second)
		return false
	})
	client := &http.Client{Transport: testkit.NewRT(t, nil, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 1, AttemptTimeout: 100 * time.Millisecond}))}
	_, err := client.Get(hang.URL)
	require.Error(t, err)
	assert.True(t, errors.Is(err, retryhttp.ErrAttemptTimeout), "%v", err)
}
