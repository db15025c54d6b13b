package attempt_test

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/require"
)

// stallBody yields a few bytes, then blocks until closed.
type stallBody struct {
	once   sync.Once
	sent   atomic.Bool
	closed chan struct{}
	closes atomic.Int32
}

func newStallBody() *stallBody { return &stallBody{closed: make(chan struct{})} }

func (s *stallBody) Read(p []byte) (int, error) {
	if !s.sent.Swap(true) {
		return copy(p, "head"), nil
	}
	<-s.closed
	return 0, io.ErrClosedPipe
}

func (s *stallBody) Close() error {
	s.closes.Add(1)
	s.once.Do(func() { close(s.closed) })
	return nil
}

// A PUT whose body (and every GetBody copy) stalls: each attempt is cut
// by the attempt timeout and retried through GetBody, the request ends
// with ErrAttemptTimeout, and every body, the caller's first, is closed
// exactly once; over HTTP/1 and HTTP/2.
func TestStalledBodiesWithGetBodyClosedOnce(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	for _, c := range h1h2(t, h) {
		t.Run(c.name, func(t *testing.T) {
			first := newStallBody()
			var mu sync.Mutex
			var copies []*stallBody
			req := mustReq(t, http.MethodPut, c.url, nil)
			req.Body, req.ContentLength = first, 1000
			req.GetBody = func() (io.ReadCloser, error) {
				b := newStallBody()
				mu.Lock()
				copies = append(copies, b)
				mu.Unlock()
				return b, nil
			}
			tr := retryhttp.New(c.rt, retryhttp.WithPolicy(retryhttp.Policy{AttemptTimeout: 200 * time.Millisecond, MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}))
			_, err := roundTrip(t, tr, req)
			require.ErrorIs(t, err, retryhttp.ErrAttemptTimeout)
			requireClosedOnce(t, &first.closes, "the caller's body")
			mu.Lock()
			defer mu.Unlock()
			require.GreaterOrEqual(t, len(copies), 2, "a copy for each retry")
			for _, b := range copies {
				requireClosedOnce(t, &b.closes, "a GetBody copy")
			}
		})
	}
}
