package attempt_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// h1h2 starts h over HTTP/1 and over HTTP/2 (TLS), and returns both with
// a base for each.
func h1h2(t *testing.T, h http.Handler) []struct {
	name string
	url  string
	rt   http.RoundTripper
} {
	h1 := httptest.NewServer(h)
	t.Cleanup(h1.Close)
	h2 := httptest.NewUnstartedServer(h)
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)
	b1 := &http.Transport{}
	t.Cleanup(b1.CloseIdleConnections)
	b2 := h2.Client().Transport.(*http.Transport)
	t.Cleanup(b2.CloseIdleConnections)
	return []struct {
		name string
		url  string
		rt   http.RoundTripper
	}{{"h1", h1.URL, b1}, {"h2", h2.URL, b2}}
}

// A body that stalls (no bytes for AttemptTimeout) ends the attempt with
// ErrAttemptTimeout, over HTTP/1 and HTTP/2; so does a server that has the
// whole body and never answers. Neither hangs.
func TestAttemptTimeoutEndsStallsAndSilentServers(t *testing.T) {
	// The handler takes the body, then waits for the client to go.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	})
	for _, c := range h1h2(t, h) {
		for _, stall := range []bool{true, false} {
			name := c.name + " silent server"
			if stall {
				name = c.name + " stalled body"
			}
			t.Run(name, func(t *testing.T) {
				tr := retryhttp.New(c.rt, retryhttp.WithPolicy(retryhttp.Policy{AttemptTimeout: 300 * time.Millisecond, MaxAttempts: 1}))
				pr, pw := io.Pipe()
				defer pw.Close()
				go pw.Write([]byte("some bytes")) // then nothing, until the test ends
				var body io.Reader = pr
				if !stall {
					body = strings.NewReader("whole")
				}
				resp, err := roundTrip(t, tr, mustReq(t, http.MethodPost, c.url, body))
				if resp != nil {
					resp.Body.Close()
				}
				assert.ErrorIs(t, err, retryhttp.ErrAttemptTimeout)
			})
		}
	}
}

// stuckBody yields a few bytes, then blocks in Read until block is
// closed; Close does not unblock it.
type stuckBody struct {
	sent   bool
	closes atomic.Int32
	block  chan struct{}
}

func (s *stuckBody) Read(p []byte) (int, error) {
	if !s.sent {
		s.sent = true
		return copy(p, "start"), nil
	}
	<-s.block
	return 0, io.EOF
}

func (s *stuckBody) Close() error { s.closes.Add(1); return nil }

// Policy.AttemptTimeout's doc: the context's deadline bounds everything
// but a body whose Read blocks and whose Close does not end that Read:
// over HTTP/1 net/http waits for the Read before RoundTrip returns, with
// or without retryhttp. Neither the attempt timeout nor the deadline ends
// RoundTrip while Read blocks; once Read returns, RoundTrip does, with the
// deadline's error, and the body is closed.
func TestADeadlineWaitsForABodyWhoseCloseCannotEndItsRead(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	for _, c := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"bare net/http", &http.Transport{}},
		{"retryhttp PUT", retryhttp.New(&http.Transport{}, retryhttp.WithPolicy(retryhttp.Policy{AttemptTimeout: 100 * time.Millisecond, MaxAttempts: 2, BaseDelay: time.Millisecond}))},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := &stuckBody{block: make(chan struct{})}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			req := mustReq(t, http.MethodPut, srv.URL, nil).WithContext(ctx)
			req.Body = b
			req.ContentLength = -1
			done := make(chan error, 1)
			go func() {
				resp, err := c.rt.RoundTrip(req)
				if resp != nil {
					resp.Body.Close()
				}
				done <- err
			}()
			<-ctx.Done()
			select {
			case err := <-done:
				t.Fatalf("returned while Read was blocked: %v", err)
			case <-time.After(time.Second): // past the deadline, RoundTrip still waits
			}
			close(b.block) // Read returns at last
			select {
			case err := <-done:
				require.ErrorIs(t, err, context.DeadlineExceeded)
			case <-time.After(guard):
				t.Fatal("RoundTrip still blocked after Read returned")
			}
			requireClosedOnce(t, &b.closes, "the body")
		})
	}
}

// A response that trickles (a byte every 100 ms, 1.2 s in all) after
// prompt headers is never cut by a 1 s attempt timeout, over HTTP/1 and
// HTTP/2: the timeout ends at the headers.
func TestAttemptTimeoutNeverCutsATricklingResponse(t *testing.T) {
	const timeout = time.Second
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(200)
		for range 12 {
			w.Write([]byte("."))
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	})
	for _, c := range h1h2(t, h) {
		t.Run(c.name, func(t *testing.T) {
			tr := retryhttp.New(c.rt, retryhttp.WithPolicy(retryhttp.Policy{AttemptTimeout: timeout, MaxAttempts: 1}))
			resp, err := roundTrip(t, tr, mustReq(t, http.MethodPut, c.url, strings.NewReader("x")))
			require.NoError(t, err)
			start := time.Now()
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			assert.Equal(t, strings.Repeat(".", 12), string(b))
			require.Greater(t, time.Since(start), timeout, "the body took longer than the attempt timeout")
		})
	}
}

// Expect: 100-continue to a server that answers 100 late (100 ms) and then
// takes the body at once: with AttemptTimeout 1 s the attempt succeeds; a
// server that never answers is cut by the timeout.
func TestAttemptTimeoutWithExpectContinue(t *testing.T) {
	over := make(chan struct{})
	defer close(over)
	srv := testkit.NewH1Server(t, func(n int, c *net.TCPConn, _ *bufio.Reader, r *http.Request) bool {
		if r.Header.Get("Expect") != "100-continue" {
			return false
		}
		if n == 2 {
			<-over // never answers
			return false
		}
		time.Sleep(100 * time.Millisecond)
		io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
		io.Copy(io.Discard, r.Body)
		testkit.WriteResponse(c, http.StatusOK, "Connection: close\r\n", "ok")
		return false
	})
	base := &http.Transport{ExpectContinueTimeout: 5 * time.Second}
	defer base.CloseIdleConnections()
	tr := retryhttp.New(base, retryhttp.WithPolicy(retryhttp.Policy{AttemptTimeout: time.Second, MaxAttempts: 1}))
	req := mustReq(t, http.MethodPut, srv.URL, strings.NewReader("hello"))
	req.Header.Set("Expect", "100-continue")
	resp, err := roundTrip(t, tr, req)
	require.NoError(t, err)
	resp.Body.Close()

	req = mustReq(t, http.MethodPut, srv.URL, strings.NewReader("hello"))
	req.Header.Set("Expect", "100-continue")
	_, err = roundTrip(t, tr, req)
	assert.ErrorIs(t, err, retryhttp.ErrAttemptTimeout)
}

// No goroutine is left behind by attempts that time out (a stalled body,
// or a silent server), once the server is gone and idle connections are
// closed.
func TestAttemptTimeoutLeavesNoGoroutines(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(guard):
		}
	}))
	base := &http.Transport{}
	before := runtime.NumGoroutine()
	tr := retryhttp.New(base, retryhttp.WithPolicy(retryhttp.Policy{AttemptTimeout: 100 * time.Millisecond, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond, MaxAttempts: 2}))
	for range 5 {
		pr, pw := io.Pipe()
		go pw.Write([]byte("abc"))
		_, err := roundTrip(t, tr, mustReq(t, http.MethodPut, srv.URL, pr))
		require.True(t, errors.Is(err, retryhttp.ErrAttemptTimeout), "%v", err)
		pw.Close()
		_, err = roundTrip(t, tr, mustReq(t, http.MethodPut, srv.URL, strings.NewReader("abc")))
		require.True(t, errors.Is(err, retryhttp.ErrAttemptTimeout), "%v", err)
	}
	srv.CloseClientConnections()
	srv.Close()
	base.CloseIdleConnections()
	if now := testkit.SettleGoroutines(before, guard); now > before {
		t.Errorf("goroutines before %d, after %d:\n%s", before, now, testkit.GoroutineDump())
	}
}
