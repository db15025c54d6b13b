package retryhttp

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// failingFirst is a base that answers 503 to the first failures attempts
// of every request, and 200 after them; it counts the attempts.
func failingFirst(failures int, attempts *int) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		*attempts++
		code := http.StatusOK
		if AttemptFromContext(r.Context()) <= failures {
			code = http.StatusServiceUnavailable
		}
		return &http.Response{StatusCode: code, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
	})
}

// A client with little traffic earns no retries from its requests (0.2
// each, for 10 s); the default budget's floor is what lets it retry: two
// retries held, so that a request may take the default Policy's three
// attempts after a quiet spell, and one more every two minutes. (The floor
// was 10 a second; TestDefaultBudgetLetsAFleetRecoverFromAStall says why it
// is no more.)
func TestDefaultBudgetLetsAQuietClientRetry(t *testing.T) {
	get := func(t *testing.T, tr *Transport) int {
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://quiet.test/", nil))
		if !assert.NoError(t, err) {
			return 0
		}
		readAll(t, resp)
		return resp.StatusCode
	}

	for _, tt := range []struct {
		name     string
		failures int           // of each request's attempts
		every    time.Duration // between requests
	}{
		{"a request every four minutes takes all three attempts, for an hour", 2, 4 * time.Minute},
		{"a request every two minutes has its one retry, for an hour", 1, 2 * time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var attempts int
			tr := New(failingFirst(tt.failures, &attempts))
			clock := withStoppedClock(tr)
			requests := int(time.Hour / tt.every)
			for i := range requests {
				assert.Equal(t, http.StatusOK, get(t, tr), "request %d", i+1)
				clock.advance(tt.every)
			}
			assert.Equal(t, requests*(tt.failures+1), attempts)
		})
	}

	t.Run("failures in a row are retried twice, then as the floor refills", func(t *testing.T) {
		var attempts int
		tr := New(failingFirst(2, &attempts))
		clock := withStoppedClock(tr)
		assert.Equal(t, http.StatusOK, get(t, tr), "the two retries held")
		assert.Equal(t, http.StatusServiceUnavailable, get(t, tr), "none left, and 0.4 earned")
		assert.Equal(t, 4, attempts)
		clock.advance(2 * time.Minute)
		attempts = 0
		assert.Equal(t, http.StatusServiceUnavailable, get(t, tr), "one refilled: the second retry is refused")
		assert.Equal(t, 2, attempts)
		clock.advance(4 * time.Minute)
		assert.Equal(t, http.StatusOK, get(t, tr), "both refilled")
	})
}
