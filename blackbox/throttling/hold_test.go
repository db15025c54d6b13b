package throttling_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func realTransport(t testing.TB, opts ...retryhttp.Option) *retryhttp.Transport {
	base := cleanhttp.DefaultPooledTransport()
	t.Cleanup(base.CloseIdleConnections)
	return retryhttp.New(base, opts...)
}

// TestOwnRetryFollowsPrecedence: Retry-After takes precedence over every
// other field, also for the throttled request's own retry (its Attempt.Wait
// says 1 s): the retry must arrive after ~1 s, not after the 3 s reset of a
// lower-precedence field.
func TestOwnRetryFollowsPrecedence(t *testing.T) {
	cases := map[string]http.Header{
		"Retry-After over RateLimit":      hdr("Retry-After", "1", "RateLimit", `"default";r=0;t=3`),
		"Retry-After over X-RateLimit":    hdr("Retry-After", "1", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "3"),
		"retry-after-ms over RateLimit":   hdr("Retry-After-Ms", "1000", "RateLimit", `"default";r=0;t=3`),
		"x-ms-retry-after-ms over drafts": hdr("X-Ms-Retry-After-Ms", "1000", "RateLimit-Remaining", "0", "RateLimit-Reset", "3"),
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					for k, v := range h {
						w.Header()[k] = v
					}
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			var seen []retryhttp.Attempt
			tr := realTransport(t, retryhttp.WithObserver(func(a retryhttp.Attempt) { seen = append(seen, a) }))
			resp, err := tr.RoundTrip(get(t, context.Background(), up.URL))
			require.NoError(t, err)
			drain(resp)
			a := up.got()
			require.Len(t, a, 2)
			require.Len(t, seen, 2)
			// What the Transport decided: a wait of about 1 s (not 3), and
			// no hold of its host after it (the 3 s reset would hold the
			// retry for 2 s more). The gap it made is at least the wait.
			t.Logf("Attempt.Wait %v, held %v, actual gap %v", seen[0].Wait, seen[1].Held, a[1].at.Sub(a[0].at))
			assert.True(t, seen[0].Retry)
			assert.GreaterOrEqual(t, seen[0].Wait, time.Second)
			assert.Less(t, seen[0].Wait, 2*time.Second, "the retry waits for the field that takes precedence (~1 s)")
			assert.Zero(t, seen[1].Held, "the retry was held for a field of lower precedence")
			assert.GreaterOrEqual(t, a[1].at.Sub(a[0].at), time.Second)
		})
	}
}

// TestA429HoldsItsHostOnly: a 429 with Retry-After: 2 holds scheme+host+port;
// a request to another port (another server) is not held; the held one
// arrives after T and never earlier.
func TestA429HoldsItsHostOnly(t *testing.T) {
	var tt time.Time
	var mu sync.Mutex
	up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/first" {
			mu.Lock()
			tt = time.Now().Add(2 * time.Second)
			mu.Unlock()
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	other := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	var last retryhttp.Attempt
	tr := realTransport(t, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 1}), retryhttp.WithObserver(func(a retryhttp.Attempt) { last = a }))
	resp, err := tr.RoundTrip(get(t, context.Background(), up.URL+"/first"))
	require.NoError(t, err)
	drain(resp)
	require.Equal(t, 429, resp.StatusCode)

	// another port: not held (the observer says how long an attempt was
	// held, whatever the machine's speed)
	resp, err = tr.RoundTrip(get(t, context.Background(), other.URL+"/x"))
	require.NoError(t, err)
	drain(resp)
	assert.Zero(t, last.Held, "a request to another port was held")

	// same host, retries on: held until T
	tr2 := tr
	ctx := retryhttp.ContextWithPolicy(context.Background(), retryhttp.Policy{MaxAttempts: 3})
	resp, err = tr2.RoundTrip(get(t, ctx, up.URL+"/second"))
	require.NoError(t, err)
	drain(resp)
	a := up.got()
	require.Len(t, a, 2)
	mu.Lock()
	assert.False(t, a[1].at.Before(tt), "held until T: arrived %v before", tt.Sub(a[1].at))
	mu.Unlock()
}

// TestHostKeyIsSchemeHostPort: the host held is named by scheme, host and
// port. http://Example.test, http://example.test and http://example.test:80
// are one host (RFC 3986: the host is case-insensitive, 80 is http's port).
func TestHostKeyIsSchemeHostPort(t *testing.T) {
	for _, spelled := range []string{"http://EXAMPLE.test/", "http://example.test:80/", "http://Example.Test:80/"} {
		t.Run(spelled, func(t *testing.T) {
			base := newFakeBase(func(n int, r *http.Request) (int, http.Header) {
				if n == 1 {
					return 429, hdr("Retry-After", "30")
				}
				return 200, nil
			})
			tr := retryhttp.New(base, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 1}))
			resp, err := tr.RoundTrip(get(t, context.Background(), "http://example.test/"))
			require.NoError(t, err)
			drain(resp)
			resp, err = tr.RoundTrip(get(t, context.Background(), spelled))
			drain(resp)
			assert.ErrorIs(t, err, retryhttp.ErrThrottled, "the same host, spelled otherwise, is held")
			assert.Equal(t, 1, int(base.n.Load()), "not sent")
		})
	}
	t.Run("https is another host", func(t *testing.T) {
		base := newFakeBase(func(n int, r *http.Request) (int, http.Header) {
			if n == 1 {
				return 429, hdr("Retry-After", "30")
			}
			return 200, nil
		})
		tr := retryhttp.New(base, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 1}))
		resp, _ := tr.RoundTrip(get(t, context.Background(), "http://example.test/"))
		drain(resp)
		resp, err := tr.RoundTrip(get(t, context.Background(), "https://example.test/"))
		require.NoError(t, err)
		drain(resp)
		resp, err = tr.RoundTrip(get(t, context.Background(), "http://example.test:8080/"))
		require.NoError(t, err)
		drain(resp)
	})
}

// TestA503WithRetryAfterHoldsOnlyItself and the other statuses that do not
// hold.
func TestA503WithRetryAfterHoldsOnlyItself(t *testing.T) {
	for _, h := range []http.Header{hdr("Retry-After", "30"), hdr("Retry-After-Ms", "30000"), hdr("X-Ms-Retry-After-Ms", "30000")} {
		base := newFakeBase(func(n int, r *http.Request) (int, http.Header) {
			if r.URL.Path == "/busy" {
				return 503, h.Clone()
			}
			return 200, nil
		})
		tr := retryhttp.New(base, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 1}))
		resp, err := tr.RoundTrip(get(t, context.Background(), "http://example.test/busy"))
		require.NoError(t, err)
		drain(resp)
		resp, err = tr.RoundTrip(get(t, context.Background(), "http://example.test/other"))
		require.NoError(t, err, "%v", h)
		drain(resp)
	}
}

// TestEveryHoldingResponseHolds: each kind of response the contract says
// holds the host makes the next request without retries fail fast.
func TestEveryHoldingResponseHolds(t *testing.T) {
	epoch := strconv.FormatInt(time.Now().Add(40*time.Second).Unix(), 10)
	cases := []struct {
		name   string
		status int
		h      http.Header
	}{
		{"429 Retry-After", 429, hdr("Retry-After", "30")},
		{"429 Retry-After date", 429, hdr("Retry-After", time.Now().Add(40*time.Second).UTC().Format(http.TimeFormat))},
		{"429 retry-after-ms", 429, hdr("Retry-After-Ms", "30000")},
		{"429 x-ms-retry-after-ms", 429, hdr("X-Ms-Retry-After-Ms", "30000")},
		{"429 RateLimit", 429, hdr("RateLimit", `"default";r=0;t=30`)},
		{"429 X-RateLimit epoch", 429, hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", epoch)},
		{"429 RateLimit-Reset", 429, hdr("RateLimit-Remaining", "0", "RateLimit-Reset", "30")},
		{"403 X-RateLimit", 403, hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", epoch)},
		{"403 X-RateLimit-Remaining: 0 with Retry-After", 403, hdr("X-RateLimit-Remaining", "0", "Retry-After", "30")},
		{"200 RateLimit r=0", 200, hdr("RateLimit", `"default";r=0;t=30`)},
		{"200 X-RateLimit-Remaining 0", 200, hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "30")},
		{"204 X-RateLimit-Remaining 0 epoch", 204, hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", epoch)},
		{"500 RateLimit r=0", 500, hdr("RateLimit", `"default";r=0;t=30`)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := newFakeBase(func(n int, r *http.Request) (int, http.Header) {
				if n == 1 {
					return c.status, c.h.Clone()
				}
				return 200, nil
			})
			var last retryhttp.Attempt
			tr := retryhttp.New(base, retryhttp.WithObserver(func(a retryhttp.Attempt) { last = a }))
			ctx := retryhttp.ContextWithoutRetries(context.Background())
			resp, err := tr.RoundTrip(get(t, ctx, "http://example.test/a"))
			require.NoError(t, err)
			drain(resp)
			_, err = tr.RoundTrip(get(t, ctx, "http://example.test/b"))
			assert.ErrorIs(t, err, retryhttp.ErrThrottled)
			assert.Zero(t, last.Held, "refused at once, not after a wait")
			assert.Equal(t, 1, int(base.n.Load()), "the second request is not sent")
		})
	}
}

// Test403IsFinalUnlessRateLimit, also for POST.
func Test403IsFinalUnlessRateLimit(t *testing.T) {
	cases := []struct {
		name   string
		method string
		h      http.Header
		want   int
	}{
		{"GET plain 403", "GET", nil, 1},
		{"GET remaining 1", "GET", hdr("X-RateLimit-Remaining", "1", "X-RateLimit-Reset", "1"), 1},
		{"GET remaining 0", "GET", hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "0"), 2},
		{"GET RateLimit r=0", "GET", hdr("RateLimit", `"default";r=0;t=0`), 2},
		{"GET RateLimit-Remaining 0", "GET", hdr("RateLimit-Remaining", "0", "RateLimit-Reset", "0"), 2},
		{"GET remaining -0", "GET", hdr("X-RateLimit-Remaining", "-0", "X-RateLimit-Reset", "0"), 1},
		{"POST remaining 0", "POST", hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "0"), 1},
		{"PUT remaining 0", "PUT", hdr("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "0"), 2},
		{"GET Retry-After only", "GET", hdr("Retry-After", "0"), 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := newFakeBase(func(n int, r *http.Request) (int, http.Header) {
				if n == 1 {
					return 403, c.h.Clone()
				}
				return 200, nil
			})
			tr := retryhttp.New(base, retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
			req, _ := http.NewRequest(c.method, "http://example.test/", strings.NewReader("body"))
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			drain(resp)
			assert.Equal(t, c.want, int(base.n.Load()))
		})
	}
}

// TestThrottledRequestFailsFast: a request whose deadline falls before T,
// or whose wait passes MaxRetryAfter, returns ErrThrottled at once, says
// until when, never touches the network, closes its body exactly once.
func TestThrottledRequestFailsFast(t *testing.T) {
	// setup returns the Transport, the upstream, and the window in which the
	// hold must end: 30 s after the instants before and after the 429 was
	// read.
	setup := func(t *testing.T, opts ...retryhttp.Option) (*retryhttp.Transport, *upstream, [2]time.Time) {
		up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				w.Header().Set("Retry-After", "30")
				w.WriteHeader(429)
				return
			}
			w.WriteHeader(200)
		})
		tr := realTransport(t, opts...)
		ctx := retryhttp.ContextWithoutRetries(context.Background())
		before := time.Now()
		resp, err := tr.RoundTrip(get(t, ctx, up.URL))
		require.NoError(t, err)
		drain(resp)
		return tr, up, [2]time.Time{before.Add(30 * time.Second), time.Now().Add(30 * time.Second)}
	}
	check := func(t *testing.T, err error, until [2]time.Time, held time.Duration) {
		t.Helper()
		assert.Zero(t, held, "refused at once, not after a wait")
		require.ErrorIs(t, err, retryhttp.ErrThrottled)
		var te *retryhttp.ThrottledError
		require.ErrorAs(t, err, &te)
		assert.False(t, te.Until.Before(until[0]) || te.Until.After(until[1]), "until %v, not between %v and %v", te.Until, until[0], until[1])
		assert.Contains(t, err.Error(), te.Until.UTC().Format(time.RFC3339Nano)[:16], "the error says until when")
	}
	bodies := map[string]func(*closeCounter) *http.Request{
		"no GetBody": func(c *closeCounter) *http.Request {
			req, _ := http.NewRequest("PUT", "http://placeholder/", nil)
			req.Body = c
			req.ContentLength = 4
			return req
		},
	}
	for name, mk := range bodies {
		for _, mode := range []string{"deadline", "maxretryafter", "noretries", "maxattempts1"} {
			t.Run(name+"/"+mode, func(t *testing.T) {
				var opts []retryhttp.Option
				var seen []retryhttp.Attempt
				var mu sync.Mutex
				opts = append(opts, retryhttp.WithObserver(func(a retryhttp.Attempt) { mu.Lock(); seen = append(seen, a); mu.Unlock() }))
				if mode == "maxretryafter" {
					opts = append(opts, retryhttp.WithPolicy(retryhttp.Policy{MaxRetryAfter: 5 * time.Second}))
				}
				tr, up, until := setup(t, opts...)
				c := &closeCounter{Reader: strings.NewReader("data")}
				req := mk(c)
				u := *req.URL
				u.Host = strings.TrimPrefix(up.URL, "http://")
				req.URL = &u
				ctx := context.Background()
				switch mode {
				case "deadline":
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
					defer cancel()
				case "noretries":
					ctx = retryhttp.ContextWithoutRetries(ctx)
				case "maxattempts1":
					ctx = retryhttp.ContextWithPolicy(ctx, retryhttp.Policy{MaxAttempts: 1})
				}
				req = req.WithContext(ctx)
				resp, err := tr.RoundTrip(req)
				drain(resp)
				mu.Lock()
				defer mu.Unlock()
				require.Len(t, seen, 2)
				check(t, err, until, seen[1].Held)
				assert.Equal(t, int32(1), up.n.Load(), "never touches the network")
				assert.Equal(t, int32(1), c.closes.Load(), "body closed exactly once")
				assert.ErrorIs(t, seen[1].Err, retryhttp.ErrThrottled)
				assert.Equal(t, retryhttp.ReasonThrottled, seen[1].Reason)
				assert.Nil(t, seen[1].Response)
				var rerr *retryhttp.Error
				require.True(t, errors.As(err, &rerr))
				assert.Equal(t, 0, rerr.Attempts)
			})
		}
	}
}
