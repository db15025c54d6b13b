package throttling_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAnnouncedLimitIsKeptWhenTheWindowRefills: the server announced a
// quota of 2 per window (RateLimit-Policy q=2) and that nothing is left for
// 1 s. Ten requests are held until the window refills; then at most 2 may
// go before any response of the new window is back. The base answers
// nothing until the test lets it, as a server at the other end of the
// world would.
func TestAnnouncedLimitIsKeptWhenTheWindowRefills(t *testing.T) {
	t.Parallel()
	for name, h := range map[string]http.Header{
		"draft":  hdr("RateLimit", `"default";r=0;t=1`, "RateLimit-Policy", `"default";q=2;w=1`),
		"github": hdr("X-RateLimit-Limit", "2", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1"),
	} {
		t.Run(name, func(t *testing.T) {
			release := make(chan struct{})
			var sent atomic.Int32
			base := rtFunc(func(r *http.Request) (*http.Response, error) {
				n := sent.Add(1)
				if n == 1 {
					return &http.Response{StatusCode: 200, Header: h.Clone(), Body: http.NoBody}, nil
				}
				<-release
				return &http.Response{StatusCode: 200, Header: hdr("RateLimit", `"default";r=0;t=1`, "RateLimit-Policy", `"default";q=2;w=1`), Body: http.NoBody}, nil
			})
			tr := retryhttp.New(base)
			resp, err := tr.RoundTrip(get(t, context.Background(), "http://example.test/"))
			require.NoError(t, err)
			drain(resp)
			var wg sync.WaitGroup
			for range 10 {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					resp, _ := tr.RoundTrip(get(t, ctx, "http://example.test/"))
					drain(resp)
				})
			}
			time.Sleep(1500 * time.Millisecond) // the window has refilled
			inFlight := sent.Load() - 1
			close(release)
			wg.Wait()
			assert.LessOrEqual(t, inFlight, int32(2), "the window refilled with a quota of 2, yet %d requests went at once", inFlight)
		})
	}
}
