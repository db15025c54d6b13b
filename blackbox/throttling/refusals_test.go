package throttling_test

// Held or refused: a deadline after the hold's end is held, not refused,
// and a refused request closes each of its bodies exactly once.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDeadlineAfterTIsHeldNotRefused: the contract refuses a request
// whose deadline falls before T. One whose deadline falls 300 ms after T
// can be held and sent; the client's own jitter (here up to 200 ms, cut to
// half the room before the deadline) must not make it refused.
func TestDeadlineAfterTIsHeldNotRefused(t *testing.T) {
	up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(429)
			return
		}
		w.WriteHeader(200)
	})
	tr := realTransport(t)
	resp, err := tr.RoundTrip(get(t, retryhttp.ContextWithoutRetries(context.Background()), up.URL+"/a"))
	require.NoError(t, err)
	drain(resp)
	// T is 2 s after the client read the 429, no later than now: the
	// server's clock (2 s after it wrote the 429) was up to a busy
	// machine's delay earlier than the client's.
	T := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	var refused atomic.Int32
	for range 10 {
		wg.Go(func() {
			ctx, cancel := context.WithDeadline(context.Background(), T.Add(300*time.Millisecond))
			defer cancel()
			resp, err := tr.RoundTrip(get(t, ctx, up.URL+"/b"))
			if errors.Is(err, retryhttp.ErrThrottled) {
				refused.Add(1)
				return
			}
			// Held, released before the deadline and sent; a busy machine
			// may still let the deadline pass before the answer is read,
			// which is no refusal.
			if err != nil {
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				return
			}
			drain(resp)
		})
	}
	wg.Wait()
	assert.Zero(t, refused.Load(), "requests whose deadline falls after T were refused with ErrThrottled")
}

// TestRefusedBodyWithGetBodyClosedOnce: a refused request whose Body and
// GetBody bodies count their closes closes each exactly once.
func TestRefusedBodyWithGetBodyClosedOnce(t *testing.T) {
	base := newFakeBase(func(n int, r *http.Request) (int, http.Header) {
		return 429, hdr("Retry-After", "30")
	})
	tr := retryhttp.New(base)
	resp, err := tr.RoundTrip(get(t, retryhttp.ContextWithoutRetries(context.Background()), "http://example.test/"))
	require.NoError(t, err)
	drain(resp)
	for _, ctx := range []context.Context{retryhttp.ContextWithoutRetries(context.Background()), retryhttp.ContextWithPolicy(context.Background(), retryhttp.Policy{MaxRetryAfter: time.Second})} {
		first := &closeCounter{Reader: strings.NewReader("x")}
		var made []*closeCounter
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://example.test/", nil)
		req.Body = first
		req.ContentLength = 1
		req.GetBody = func() (io.ReadCloser, error) {
			c := &closeCounter{Reader: strings.NewReader("x")}
			made = append(made, c)
			return c, nil
		}
		_, err = tr.RoundTrip(req)
		require.ErrorIs(t, err, retryhttp.ErrThrottled)
		assert.Equal(t, int32(1), first.closes.Load())
		for _, c := range made {
			assert.Equal(t, int32(1), c.closes.Load())
		}
	}
	assert.Equal(t, 1, int(base.n.Load()))
}
