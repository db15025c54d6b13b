package pipeline_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/require"
)

// getNoRetry sends a GET with retries off, so that a held host refuses it
// at once.
func getNoRetry(t *testing.T, rt http.RoundTripper, url string) (int, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(retryhttp.ContextWithoutRetries(context.Background()), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestQuotaAnnouncedLateIsLearnedWithinASample measures the trade-off of
// the quota sampling: a server answers 200 plainly for 200 requests, and
// from then on "X-RateLimit-Remaining: 0" with a reset 30 s ahead. The
// test counts the requests that reach the server after its first such
// answer, before the Transport holds the host (reading every response, as
// before the sampling, would let only the first through). The sample is
// taken at a random place in each run of 32 responses, so the host is held
// within two runs: at most 64.
func TestQuotaAnnouncedLateIsLearnedWithinASample(t *testing.T) {
	for _, kind := range []string{"bare", "observed"} {
		t.Run(kind, func(t *testing.T) {
			var served atomic.Int32
			srv := server(t, func(w http.ResponseWriter, r *http.Request) {
				if served.Add(1) > 200 {
					w.Header().Set("X-RateLimit-Remaining", "0")
					w.Header().Set("X-RateLimit-Reset", "30")
				}
			})
			base := &http.Transport{}
			t.Cleanup(base.CloseIdleConnections)
			rt := http.RoundTripper(retryhttp.New(base, retryhttp.WithBudget(nil)))
			if kind == "observed" {
				rt = newRig(t, base).rt
			}
			for i := 0; i < 200; i++ {
				code, err := getNoRetry(t, rt, srv.URL)
				require.NoError(t, err)
				require.Equal(t, 200, code)
			}
			over := 0
			for i := 0; i < 100; i++ {
				_, err := getNoRetry(t, rt, srv.URL)
				if errors.Is(err, retryhttp.ErrThrottled) {
					break
				}
				require.NoError(t, err)
				over++
			}
			t.Logf("%s: %d requests reached the server after it announced its quota spent (the first of them is unavoidable)", kind, over)
			require.Positive(t, over)
			require.LessOrEqual(t, over, 64, "the host must be held within two runs of the sample")
			require.Equal(t, int32(200+over), served.Load())
		})
	}
}

// TestA429IsAlwaysReadForItsHost: past the warm-up, a 429 with
// Retry-After holds its host at once, and so does GitHub's 403.
func TestA429IsAlwaysReadForItsHost(t *testing.T) {
	for _, code := range []int{429, 403} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			var served atomic.Int32
			srv := server(t, func(w http.ResponseWriter, r *http.Request) {
				if served.Add(1) == 101 {
					if code == 403 {
						w.Header().Set("X-RateLimit-Remaining", "0")
						w.Header().Set("X-RateLimit-Reset", "30")
					} else {
						w.Header().Set("Retry-After", "30")
					}
					w.WriteHeader(code)
				}
			})
			base := &http.Transport{}
			t.Cleanup(base.CloseIdleConnections)
			rt := retryhttp.New(base, retryhttp.WithBudget(nil))
			for i := 0; i < 100; i++ {
				_, err := getNoRetry(t, rt, srv.URL)
				require.NoError(t, err)
			}
			got, err := getNoRetry(t, rt, srv.URL)
			require.NoError(t, err)
			require.Equal(t, code, got)
			_, err = getNoRetry(t, rt, srv.URL)
			require.ErrorIs(t, err, retryhttp.ErrThrottled)
		})
	}
}

// TestOnceAHostAnnouncedAQuotaEveryResponseIsRead: past the warm-up, a
// host announces a quota; from then on another host's spent quota is
// learned from its very first answer.
func TestOnceAHostAnnouncedAQuotaEveryResponseIsRead(t *testing.T) {
	var spent atomic.Bool
	plain := server(t, func(w http.ResponseWriter, r *http.Request) {
		if spent.Load() {
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", "30")
		}
	})
	var quotaServed atomic.Int32
	quota := server(t, func(w http.ResponseWriter, r *http.Request) {
		quotaServed.Add(1)
		w.Header().Set("X-RateLimit-Remaining", "1000")
		w.Header().Set("X-RateLimit-Reset", "30")
	})
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	rt := retryhttp.New(base, retryhttp.WithBudget(nil))
	for i := 0; i < 100; i++ {
		_, err := getNoRetry(t, rt, plain.URL)
		require.NoError(t, err)
	}
	// The quota host is learned when a sampled response comes: one at a
	// random place in each run of 32 responses, so within 64.
	for i := 0; i < 64; i++ {
		_, err := getNoRetry(t, rt, quota.URL)
		require.NoError(t, err)
	}
	spent.Store(true)
	_, err := getNoRetry(t, rt, plain.URL)
	require.NoError(t, err)
	_, err = getNoRetry(t, rt, plain.URL)
	require.ErrorIs(t, err, retryhttp.ErrThrottled, "with a host's quota known, every response must be read")
}

// TestQuotaSamplingDoesNotAliasWithTheTraffic: a client that alternates
// between two hosts (a job that calls A, then B, and again) past the
// warm-up; A starts to announce "X-RateLimit-Remaining: 0" with a reset
// 30 s ahead. A must be held within a bounded number of requests. (A
// sample taken at a fixed place in each run of 32 responses, as the first
// cut of the sampling did, always fell on B's: A was never held. With the
// place drawn for each run, A's response is read in half of the runs, and
// A goes unheld through 400 of its requests, 25 runs, once in 2^25.)
func TestQuotaSamplingDoesNotAliasWithTheTraffic(t *testing.T) {
	var aServed atomic.Int32
	a := server(t, func(w http.ResponseWriter, r *http.Request) {
		if aServed.Add(1) > 50 {
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", "30")
		}
	})
	b := server(t, func(w http.ResponseWriter, r *http.Request) {})
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	rt := retryhttp.New(base, retryhttp.WithBudget(nil))
	for i := 0; i < 50; i++ {
		_, err := getNoRetry(t, rt, a.URL)
		require.NoError(t, err)
		_, err = getNoRetry(t, rt, b.URL)
		require.NoError(t, err)
	}
	over := 0
	for i := 0; i < 400; i++ {
		_, err := getNoRetry(t, rt, a.URL)
		if errors.Is(err, retryhttp.ErrThrottled) {
			break
		}
		require.NoError(t, err)
		over++
		_, err = getNoRetry(t, rt, b.URL)
		require.NoError(t, err)
	}
	t.Logf("%d requests reached A after it announced its quota spent", over)
	require.Less(t, over, 400, "A's spent quota was never learned: the sample always fell on B's responses")
}
