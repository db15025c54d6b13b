package blackbox_test

// Goroutines and connections do not leak: after a mix of faults, retries,
// cancellations and stalled bodies, and CloseIdleConnections, the process
// is back to its goroutine count.

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
)

func TestNoGoroutineOrConnectionLeaks(t *testing.T) {
	time.Sleep(100 * time.Millisecond)
	before := testkit.SettleGoroutines(0, 200*time.Millisecond)

	func() {
		// HTTP/1: a server that mistreats every other request in turn.
		var mu sync.Mutex
		i := 0
		behaviours := make([]func(c *net.TCPConn, br *bufio.Reader, r *http.Request), 0, len(h1Behaviours))
		for _, b := range h1Behaviours {
			behaviours = append(behaviours, b)
		}
		h1 := testkit.NewH1Server(t, func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) bool {
			if n%2 == 1 {
				mu.Lock()
				b := behaviours[i%len(behaviours)]
				i++
				mu.Unlock()
				b(c, br, r)
				return false
			}
			_, _ = io.Copy(io.Discard, r.Body)
			testkit.WriteResponse(c, 200, "", "ok")
			return true
		})
		// A real server with HTTP/2 and handlers that abort.
		var n atomic.Int32
		h2real := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			switch n.Add(1) % 4 {
			case 1:
				panic(http.ErrAbortHandler)
			case 2:
				w.WriteHeader(503)
				_, _ = w.Write(bytes.Repeat([]byte("z"), 100<<10))
				return
			}
			_, _ = io.WriteString(w, "ok")
		}))
		h2real.EnableHTTP2 = true
		h2real.Config.ErrorLog = nil
		h2real.StartTLS()
		defer h2real.Close()
		h2raw := testkit.NewH2Server(t, func(n int) testkit.H2Action {
			switch n % 4 {
			case 1:
				return testkit.H2Action{Kind: testkit.H2Reset, Code: 2}
			case 2:
				return testkit.H2Action{Kind: testkit.H2Reset, Code: 7}
			}
			return testkit.H2Action{Kind: testkit.H2Respond, Status: 200}
		})

		h1base := cleanhttp.DefaultPooledTransport()
		h2base := h2real.Client().Transport.(*http.Transport)
		rts := []struct {
			rt  *retryhttp.Transport
			url string
		}{
			{testkit.NewRT(t, h1base), h1.URL},
			{testkit.NewRT(t, h2base), h2real.URL},
			{testkit.NewRT(t, h2raw.Client), h2raw.URL},
		}
		var wg sync.WaitGroup
		for k := range 60 {
			for _, x := range rts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					defer cancel()
					if k%7 == 0 {
						ctx, cancel = context.WithTimeout(ctx, time.Duration(k%5)*time.Millisecond)
						defer cancel()
					}
					method := []string{http.MethodGet, http.MethodPut, http.MethodPost}[k%3]
					var body io.ReadCloser
					if method != http.MethodGet {
						body = testkit.NewCountingBody(bytes.Repeat([]byte("b"), 1000*(k%80)))
					}
					req := testkit.NewReq(t, method, x.url, body).WithContext(ctx)
					res, err := x.rt.RoundTrip(req)
					if err == nil {
						if k%2 == 0 {
							_, _ = io.Copy(io.Discard, res.Body)
						}
						res.Body.Close()
					}
				}()
			}
		}
		wg.Wait()
		for _, x := range rts {
			x.rt.CloseIdleConnections()
		}
		h2real.CloseClientConnections()
	}()
	// The servers above are closed by t.Cleanup at the end of the test;
	// what matters here is the client side: wait, then compare against
	// the baseline plus the servers' own goroutines still alive.
	after := testkit.SettleGoroutines(before+6, 3*time.Second)
	if after > before+6 {
		t.Logf("%s", testkit.GoroutineDump())
	}
	assert.LessOrEqual(t, after, before+6, "goroutines: %d before, %d after", before, after)
	runtime.GC()
}
