package blackbox_test

// What is retried and what never is: invalid ports, HTTP/2 stream resets
// for GET and POST, GOAWAY.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countingRT counts the attempts that reach the base.
type countingRT struct {
	next http.RoundTripper
	n    atomic.Int32
}

func (c *countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

func TestInvalidPortsAreNotRetried(t *testing.T) {
	for _, u := range []string{
		"http://127.0.0.1:99999/", "http://127.0.0.1:65536/", "http://[::1]:99999/", "http://localhost:99999/",
		"https://127.0.0.1:99999/", "http://127.0.0.1:4294967297/",
	} {
		t.Run(u, func(t *testing.T) {
			base := cleanhttp.DefaultPooledTransport()
			defer base.CloseIdleConnections()
			c := &countingRT{next: base}
			rt := retryhttp.New(c, retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: 200 * time.Millisecond, Jitter: retryhttp.NoJitter}))
			_, err := (&http.Client{Transport: rt}).Get(u)
			require.Error(t, err)
			// One attempt reached the base: no retry, hence no wait (the
			// elapsed time, under 150 ms, said the same on idle machines).
			assert.Equal(t, int32(1), c.n.Load(), "%v", err)
			var re *retryhttp.Error
			if errors.As(err, &re) {
				assert.Equal(t, 1, re.Attempts)
			}
		})
	}
}

func TestClosedPortIsRetriedEvenForPOST(t *testing.T) {
	base := cleanhttp.DefaultPooledTransport()
	defer base.CloseIdleConnections()
	c := &countingRT{next: base}
	rt := retryhttp.New(c, retryhttp.WithPolicy(testkit.Fast), retryhttp.WithBudget(nil))
	cb := testkit.NewCountingBody([]byte("x"))
	_, err := rt.RoundTrip(testkit.NewReq(t, http.MethodPost, "http://127.0.0.1:1/", cb))
	require.Error(t, err)
	assert.Equal(t, int32(3), c.n.Load())
	testkit.RequireClosedOnce(t, cb)
}

func TestHTTP2StreamResetsGETRetriedPOSTNever(t *testing.T) {
	for _, code := range []uint32{0x0, 0x2, 0x8} {
		for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodPost} {
			for _, early := range []bool{false, true} {
				for _, withGetBody := range []bool{false, true} {
					if method == http.MethodGet && withGetBody {
						continue
					}
					name := fmt.Sprintf("code %#x/%s/early=%v/GetBody=%v", code, method, early, withGetBody)
					t.Run(name, func(t *testing.T) {
						srv := testkit.NewH2Server(t, testkit.FirstThen(1, testkit.H2Action{Kind: testkit.H2Reset, Code: code, Early: early}))
						rt := testkit.NewRT(t, srv.Client)
						payload := bytes.Repeat([]byte("y"), 5000)
						var rd io.Reader
						if method != http.MethodGet && withGetBody {
							rd = bytes.NewReader(payload)
						}
						ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
						defer cancel()
						req, err := http.NewRequestWithContext(ctx, method, srv.URL, rd)
						require.NoError(t, err)
						var cb *testkit.CountingBody
						if method != http.MethodGet && !withGetBody {
							cb = testkit.NewCountingBody(payload)
							req.Body = cb
							req.ContentLength = int64(len(payload))
						}
						res, err := rt.RoundTrip(req)
						heads, _, _ := srv.Stats()
						if method == http.MethodPost {
							assert.Equal(t, 1, heads, "a POST is never sent again")
							assert.Error(t, err)
						} else {
							require.NoError(t, err, "a %s reset with %#x is retried", method, code)
							res.Body.Close()
							assert.Equal(t, 200, res.StatusCode)
							assert.Equal(t, 2, heads)
						}
						if cb != nil {
							testkit.RequireClosedOnce(t, cb)
						}
					})
				}
			}
		}
	}
}

func TestHTTP2GETCutByGoAwayAndCloseIsRetriedLikeHTTP1(t *testing.T) {
	// The server says with GOAWAY that it will still process the GET's
	// stream (last-stream-id >= the stream), then closes the connection
	// without answering: a server that crashed in its graceful shutdown.
	// Over HTTP/1 the same server behaviour (the connection closed before
	// the response) is "EOF before the response" and is retried, and over
	// HTTP/2 a close without GOAWAY is retried too; with the GOAWAY
	// net/http reports a GoAwayError, which retryhttp classifies as
	// permanent, so an idempotent GET fails on the first attempt.
	for _, tc := range []struct {
		name   string
		action testkit.H2Action
	}{
		{"close without GOAWAY", testkit.H2Action{Kind: testkit.H2Close}},
		{"GOAWAY NO_ERROR last=stream, close", testkit.H2Action{Kind: testkit.H2GoAway, Code: 0, LastStream: func(s uint32) uint32 { return s }}},
		{"GOAWAY INTERNAL_ERROR last=stream, close", testkit.H2Action{Kind: testkit.H2GoAway, Code: 2, LastStream: func(s uint32) uint32 { return s }}},
		{"GOAWAY NO_ERROR last=2^31-1, close", testkit.H2Action{Kind: testkit.H2GoAway, Code: 0, LastStream: func(uint32) uint32 { return 1<<31 - 1 }}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testkit.NewH2Server(t, testkit.FirstThen(1, tc.action))
			rt := testkit.NewRT(t, srv.Client)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			res, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, srv.URL, nil).WithContext(ctx))
			heads, _, _ := srv.Stats()
			require.NoError(t, err, "a GET whose connection closed before the response is retried (attempts reaching the server: %d)", heads)
			res.Body.Close()
			assert.Equal(t, 200, res.StatusCode)
		})
	}
}

func TestHTTP2RespondThenResetIsAResponse(t *testing.T) {
	// 200 headers, then RST_STREAM INTERNAL_ERROR in the body: the
	// response is the caller's (its body read fails), never retried.
	srv := testkit.NewH2Server(t, func(int) testkit.H2Action {
		return testkit.H2Action{Kind: testkit.H2RespondThenReset, Status: 200, Code: 2}
	})
	rt := testkit.NewRT(t, srv.Client)
	res, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, srv.URL, nil))
	require.NoError(t, err)
	_, rerr := io.ReadAll(res.Body)
	res.Body.Close()
	assert.Error(t, rerr)
	heads, _, _ := srv.Stats()
	assert.Equal(t, 1, heads)
}
