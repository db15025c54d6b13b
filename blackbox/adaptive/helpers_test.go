// Package adaptive_test attacks the adaptive rate (WithAdaptiveRate, the
// Throttled Decision, EventPaced and its series) and the rate-limit fields
// of AWS, OpenAI and Anthropic through the exported API only, against real
// loopback servers: the contract under cancellation, deadlines, hedging
// and hostile values. The rate's own behavior is pinned on the fake clock
// in the root package (adaptive_test.go).
package adaptive_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/require"
)

// newBase returns a pooled transport closed at the end of the test.
func newBase(t *testing.T) *http.Transport {
	b := cleanhttp.DefaultPooledTransport()
	b.MaxIdleConnsPerHost = 128
	t.Cleanup(b.CloseIdleConnections)
	return b
}

// server is a loopback server that counts the requests it got.
type server struct {
	*httptest.Server
	hits atomic.Int64
}

func newServer(t *testing.T, h http.HandlerFunc) *server {
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// bare429 answers a bare 429 to everything.
func bare429(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTooManyRequests) }

// recorder keeps every Event.
type recorder struct {
	mu sync.Mutex
	ev []retryhttp.Event
}

func (r *recorder) record(e retryhttp.Event) {
	r.mu.Lock()
	r.ev = append(r.ev, e)
	r.mu.Unlock()
}

func (r *recorder) count(k retryhttp.EventKind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.ev {
		if e.Kind == k {
			n++
		}
	}
	return n
}

func (r *recorder) waits(k retryhttp.EventKind) []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var w []time.Duration
	for _, e := range r.ev {
		if e.Kind == k {
			w = append(w, e.Wait)
		}
	}
	return w
}

// get sends a GET with ctx through tr, closing any response body, and
// returns the status (0 on error) and the error.
func get(tr http.RoundTripper, ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// wakeAndCut sends GETs one after another, retries off, until the host's
// adaptive rate has been cut (an EventPaced, or a request refused with
// ErrThrottled), or until limit. It reports whether the rate was cut.
func wakeAndCut(t *testing.T, tr http.RoundTripper, rec *recorder, url string, limit time.Duration) bool {
	t.Helper()
	ctx := retryhttp.ContextWithoutRetries(context.Background())
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		_, err := get(tr, ctx, url)
		if errors.Is(err, retryhttp.ErrThrottled) {
			return true
		}
		require.NoError(t, err)
		if rec != nil && rec.count(retryhttp.EventPaced) > 0 {
			return true
		}
		time.Sleep(2 * time.Millisecond)
	}
	return false
}

// countingBody is a request body without GetBody that counts its Close
// calls.
type countingBody struct {
	r      io.Reader
	closes atomic.Int32
}

func newCountingBody(s string) *countingBody       { return &countingBody{r: strings.NewReader(s)} }
func (b *countingBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *countingBody) Close() error {
	b.closes.Add(1)
	return nil
}

// capacityServer answers 200 to the first capacity requests of each
// second and a 429 beyond, with the header fields fields sets on both.
type capacityServer struct {
	*server
	mu     sync.Mutex
	window int64
	served int
}

func newCapacityServer(t *testing.T, capacity int, fields func(h http.Header)) *capacityServer {
	cs := &capacityServer{}
	cs.server = newServer(t, func(w http.ResponseWriter, _ *http.Request) {
		now := time.Now()
		cs.mu.Lock()
		if s := now.Unix(); s != cs.window {
			cs.window, cs.served = s, 0
		}
		ok := cs.served < capacity
		if ok {
			cs.served++
		}
		cs.mu.Unlock()
		fields(w.Header())
		if !ok {
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	return cs
}
