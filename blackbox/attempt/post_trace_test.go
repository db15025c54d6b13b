package attempt_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A POST that the server may have processed is never sent again, even
// when a base calls a finished request's trace hooks later: here a GET's
// base pre-connects to a standby host that is down, in the background,
// with the GET's context (as net/http's own dials do), which calls GetConn
// and never GotConn while the POST that follows is in flight. The POST's
// attempt then times out, with no evidence that it was not sent: it is not
// retried, and reaches the server once.
func TestAFinishedRequestsTraceCannotMakeAPOSTLookUnsent(t *testing.T) {
	var (
		mu        sync.Mutex
		posts     int
		arrived   chan struct{} // closed when the round's POST reaches the server
		stale     chan struct{} // closed when the GET's trace was called, late
		exercised int           // rounds where that happened while the POST was in flight
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			return
		}
		mu.Lock()
		posts++
		first := posts == 1
		arr, st := arrived, stale
		mu.Unlock()
		if first {
			close(arr)
		}
		select { // processes it, and never answers
		case <-st:
			select {
			case <-r.Context().Done():
			default:
				mu.Lock()
				exercised++
				mu.Unlock()
			}
		case <-r.Context().Done():
		}
		<-r.Context().Done()
	}))
	defer srv.Close()
	inner := &http.Transport{}
	defer inner.CloseIdleConnections()
	standby := &http.Transport{}
	defer standby.CloseIdleConnections()
	var bg sync.WaitGroup
	defer bg.Wait()
	base := rtFunc(func(r *http.Request) (*http.Response, error) {
		if r.Method == http.MethodGet {
			// Pre-connect to the standby in the background, with the
			// request's values (its trace among them), once the POST is
			// in flight.
			ctx := context.WithoutCancel(r.Context())
			mu.Lock()
			arr, st := arrived, stale
			mu.Unlock()
			bg.Add(1)
			go func() {
				defer bg.Done()
				defer close(st)
				select {
				case <-arr:
				case <-time.After(guard):
					return
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodHead, "http://127.0.0.1:1/", nil)
				if resp, err := standby.RoundTrip(req); err == nil {
					resp.Body.Close()
				}
			}()
		}
		// This base keeps its own tracing apart: it reports no connections.
		ctx, cancel := context.WithCancel(context.Background())
		stop := context.AfterFunc(r.Context(), cancel)
		defer stop()
		resp, err := inner.RoundTrip(r.WithContext(ctx))
		if err != nil {
			cancel()
		}
		return resp, err
	})
	m, err := retryhttp.NewMetrics(nil) // metrics on: attempts are watched
	require.NoError(t, err)
	tr := retryhttp.New(base, retryhttp.WithMetrics(m),
		retryhttp.WithPolicy(retryhttp.Policy{AttemptTimeout: 500 * time.Millisecond, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond, MaxAttempts: 2}))
	for round := range 6 {
		mu.Lock()
		posts, arrived, stale = 0, make(chan struct{}), make(chan struct{})
		mu.Unlock()
		resp, err := roundTrip(t, tr, mustReq(t, http.MethodGet, srv.URL, nil))
		require.NoError(t, err)
		resp.Body.Close()
		_, err = roundTrip(t, tr, mustReq(t, http.MethodPost, srv.URL, nil)) // no body, no key: not idempotent
		require.ErrorIs(t, err, retryhttp.ErrAttemptTimeout)
		mu.Lock()
		n := posts
		mu.Unlock()
		require.Equal(t, 1, n, "round %d: a POST the server may have processed is never sent again", round)
	}
	mu.Lock()
	defer mu.Unlock()
	assert.Positive(t, exercised, "the GET's trace was called while a POST was in flight")
}
