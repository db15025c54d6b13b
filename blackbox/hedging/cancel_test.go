package hedging_test

// Cancellation and cleanup around a race: the caller's cancel ends a body
// whether or not a hedge was sent, a body read to EOF and never closed
// leaves no goroutine, and a cancel around the win leaves nothing behind.

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Hedging on, no hedge sent (the first copy answered at once): canceling the
// caller's context after RoundTrip returned still ends the body.
func TestCallerCancelEndsABodyWhenNoHedgeWasSent(t *testing.T) {
	for _, proto := range []string{"h1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			u := newUpstream(t, proto == "h2", func(id string, k int, w http.ResponseWriter, r *http.Request) {
				trickle(w, r)
			})
			rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: time.Minute}) // never due
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, id := get(t, ctx, u.url)
			res, err := rt.RoundTrip(req)
			require.NoError(t, err)
			defer res.Body.Close()
			_, err = io.ReadFull(res.Body, make([]byte, 3))
			require.NoError(t, err)
			cancel()
			done := make(chan error, 1)
			go func() { _, err := io.Copy(io.Discard, res.Body); done <- err }()
			select {
			case err := <-done:
				assert.Error(t, err)
			case <-time.After(10 * time.Second): // a guard: it ends at once
				res.Body.Close()
				t.Fatal("canceling the caller's context did not end the body")
			}
			assert.Equal(t, 1, u.copies(id))
		})
	}
}

// A caller that reads the winner's body to EOF and never closes it (a bug,
// but one net/http forgives: the connection goes back to the pool at EOF)
// must not leave goroutines behind.
func TestBodyReadToEOFWithoutCloseLeavesNoGoroutine(t *testing.T) {
	checkGoroutines(t)
	u := newUpstream(t, false, func(id string, k int, w http.ResponseWriter, r *http.Request) {
		n, _ := atoi(id)
		if n%2 == 0 && k == 1 && hang(r, time.Minute) {
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: 5 * time.Millisecond})
	for i := 0; i < 100; i++ {
		req, _ := get(t, nil, u.url)
		res, err := rt.RoundTrip(req)
		require.NoError(t, err)
		_, err = io.ReadAll(res.Body) // never closed
		require.NoError(t, err)
	}
	require.True(t, waitFor(2*time.Second, func() bool { return u.handlersRunning.Load() == 0 }))
}

// The caller's context canceled at random moments around the moment a copy
// wins: RoundTrip returns a response with a nil error or an error with no
// response, a returned body reads to its end or fails with the context's
// error, and nothing is left behind.
func TestCancelAroundTheWinStress(t *testing.T) {
	for _, proto := range []string{"h1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			checkGoroutines(t)
			u := newUpstream(t, proto == "h2", func(id string, k int, w http.ResponseWriter, r *http.Request) {
				n, _ := atoi(id)
				if k == 1 && hang(r, time.Duration(5+n%20)*time.Millisecond) {
					return
				}
				w.WriteHeader(200)
				for i := 0; i < 20; i++ {
					if _, err := w.Write(make([]byte, 1024)); err != nil {
						return
					}
					w.(http.Flusher).Flush()
				}
			})
			rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: 5 * time.Millisecond})
			for i := 0; i < 150; i++ {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(time.Duration(2+i%15)*time.Millisecond, cancel)
				req, _ := get(t, ctx, u.url)
				res, err := rt.RoundTrip(req)
				if err != nil {
					require.Nil(t, res)
					require.ErrorIs(t, err, context.Canceled)
					cancel()
					continue
				}
				require.NotNil(t, res)
				n, err := io.Copy(io.Discard, res.Body)
				if err != nil {
					require.ErrorIs(t, err, context.Canceled, "after %d bytes", n)
				} else {
					require.Equal(t, int64(20*1024), n)
				}
				res.Body.Close()
				cancel()
			}
			require.True(t, waitFor(2*time.Second, func() bool { return u.handlersRunning.Load() == 0 }))
			rt.CloseIdleConnections()
		})
	}
}
