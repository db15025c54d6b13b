package seam_test

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
)

// A response whose headers arrived before AttemptTimeout (the base saw no
// cancellation and returned it) must not be thrown away as a timeout. The
// base here returns just around the timeout, many times; each time it
// returned a response with its context still live, RoundTrip must return
// that response, not an ErrAttemptTimeout.
func TestResponseBeforeTheTimeoutIsNotDiscarded(t *testing.T) {
	var inTime, lost atomic.Int32
	const d = 2 * time.Millisecond
	for range 500 {
		var returned atomic.Bool
		base := rtFunc(func(r *http.Request) (*http.Response, error) {
			// Spin up to shortly before the timeout. The margin is what it
			// takes the Transport to see the answer: an answer that comes
			// after the timer has fired is the timeout's, however close.
			deadline := time.Now().Add(d - 300*time.Microsecond)
			for time.Now().Before(deadline) {
			}
			if r.Context().Err() != nil {
				return nil, r.Context().Err()
			}
			returned.Store(true)
			return resp(200, ""), nil
		})
		rt := newRT(t, base, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 1, AttemptTimeout: d}))
		resp, err := rt.RoundTrip(newReq(t, http.MethodPost, "http://x.invalid/", nil))
		if returned.Load() {
			inTime.Add(1)
			if err != nil {
				lost.Add(1)
			}
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
	t.Logf("responses returned by the base before the timeout: %d; of those reported as a timeout: %d", inTime.Load(), lost.Load())
	assert.Zero(t, lost.Load())
}
