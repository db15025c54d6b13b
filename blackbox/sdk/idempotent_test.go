package sdk_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ContextWithIdempotent: a POST is retried like a PUT, after a reset the
// server saw, after a 503, and after an attempt timeout, with the same
// body bytes; without it, never.
func TestContextWithIdempotent(t *testing.T) {
	payload := bytes.Repeat([]byte("tok"), 1000)
	for _, marked := range []bool{true, false} {
		for _, fault := range []string{"reset", "503", "timeout"} {
			var mu sync.Mutex
			var bodies [][]byte
			s := testkit.NewH1Server(t, func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) bool {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				bodies = append(bodies, b)
				mu.Unlock()
				if n == 1 {
					switch fault {
					case "reset":
						testkit.Reset(c)
						return false
					case "503":
						testkit.WriteResponse(c, 503, "", "")
						return true
					case "timeout":
						time.Sleep(400 * time.Millisecond)
						return false
					}
				}
				testkit.WriteResponse(c, 200, "", "token")
				return true
			})
			rt := testkit.NewRT(t, nil, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond, AttemptTimeout: 200 * time.Millisecond}))
			ctx := ctxTimeout(t, 3*time.Second)
			if marked {
				ctx = retryhttp.ContextWithIdempotent(ctx)
			}
			body := testkit.NewCountingBody(payload)
			req := testkit.NewReq(t, http.MethodPost, s.URL, body).WithContext(ctx)
			resp, err := rt.RoundTrip(req)
			if resp != nil {
				resp.Body.Close()
			}
			testkit.RequireClosedOnce(t, body)
			mu.Lock()
			got := len(bodies)
			for _, b := range bodies {
				assert.True(t, bytes.Equal(payload, b), "%s: a different body was sent", fault)
			}
			mu.Unlock()
			if marked {
				require.NoError(t, err, fault)
				assert.Equal(t, 200, resp.StatusCode, fault)
				assert.Equal(t, 2, got, fault)
			} else {
				assert.Equal(t, 1, got, "%s: an unmarked POST was sent again", fault)
			}
		}
	}
}

// With ContextWithIdempotent a POST gets a GetBody in the base (so net/http
// resends a refused HTTP/2 stream by itself), as a PUT does.
func TestContextWithIdempotentGivesTheBaseAGetBody(t *testing.T) {
	var withGetBody atomic.Bool
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		withGetBody.Store(r.GetBody != nil)
		_, _ = io.Copy(io.Discard, r.Body)
		return testkit.Resp(200, ""), nil
	})
	rt := testkit.NewRT(t, base)
	req := testkit.NewReq(t, http.MethodPost, "http://x.invalid/", io.NopCloser(strings.NewReader("grant_type=client_credentials")))
	req = req.WithContext(retryhttp.ContextWithIdempotent(req.Context()))
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.True(t, withGetBody.Load())
}
