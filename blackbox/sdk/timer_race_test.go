package sdk_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
)

// A response whose headers arrived before AttemptTimeout (the base saw no
// cancellation and returned it) must not be thrown away as a timeout. The
// base here returns just before the timeout, many times; each time it
// returned a response with its context still live, RoundTrip must return
// that response, not an ErrAttemptTimeout.
//
// An iteration counts when RoundTrip returned less than the timeout after
// it was called: its timer, started later, cannot have fired by then, so
// an error is the Transport's fault. When the machine stalled the test's
// goroutine (the race detector, a busy CPU) long enough for the timer to
// fire first, the timeout is right, and the iteration proves nothing. The
// test runs until 250 iterations counted (on an idle machine, about the
// first 500; on a busy one, more), rather than asserting what share of
// 500 will count.
func TestResponseBeforeTheTimeoutIsNotDiscarded(t *testing.T) {
	var conclusive, lost, runs int
	const d = 2 * time.Millisecond
	const want = 250
	give := time.Now().Add(60 * time.Second)
	for conclusive < want && time.Now().Before(give) {
		runs++
		base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
			// Spin up to shortly before the timeout.
			deadline := time.Now().Add(d - 300*time.Microsecond)
			for time.Now().Before(deadline) {
			}
			if r.Context().Err() != nil {
				return nil, r.Context().Err()
			}
			return testkit.Resp(200, ""), nil
		})
		rt := testkit.NewRT(t, base, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 1, AttemptTimeout: d}))
		start := time.Now()
		resp, err := rt.RoundTrip(testkit.NewReq(t, http.MethodPost, "http://x.invalid/", nil))
		if took := time.Since(start); took < d {
			conclusive++
			if err != nil {
				lost++
				t.Logf("lost after %v: %v", took, err)
			}
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
	t.Logf("answers within the timeout: %d of %d; of those reported as an error: %d", conclusive, runs, lost)
	assert.Zero(t, lost)
	assert.GreaterOrEqual(t, conclusive, want, "in a minute, too few iterations ended within the timeout: the test proves nothing")
}
