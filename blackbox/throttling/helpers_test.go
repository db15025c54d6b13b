package throttling_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
)

// upstream is a loopback server that records when each request arrived.
type upstream struct {
	*httptest.Server
	n        atomic.Int32
	mu       sync.Mutex
	arrivals []arrival
}

type arrival struct {
	at   time.Time
	path string
}

func newUpstream(t testing.TB, h func(n int, w http.ResponseWriter, r *http.Request)) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(u.n.Add(1))
		u.mu.Lock()
		u.arrivals = append(u.arrivals, arrival{time.Now(), r.URL.Path})
		u.mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		h(n, w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) got() []arrival {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]arrival(nil), u.arrivals...)
}

// rtFunc is a base RoundTripper without a network.
type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// fakeBase answers every request with the status and header fn returns and
// counts requests per URL host.
type fakeBase struct {
	mu    sync.Mutex
	calls map[string]int
	fn    func(n int, r *http.Request) (int, http.Header)
	n     atomic.Int32
}

func newFakeBase(fn func(n int, r *http.Request) (int, http.Header)) *fakeBase {
	return &fakeBase{calls: map[string]int{}, fn: fn}
}

func (f *fakeBase) RoundTrip(r *http.Request) (*http.Response, error) {
	n := int(f.n.Add(1))
	f.mu.Lock()
	f.calls[r.URL.Host]++
	f.mu.Unlock()
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	code, h := f.fn(n, r)
	if h == nil {
		h = http.Header{}
	}
	return &http.Response{StatusCode: code, Header: h, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}

func (f *fakeBase) count(host string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[host]
}

func get(t testing.TB, ctx context.Context, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func drain(resp *http.Response) {
	if resp != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// closeCounter is a body that counts its Close calls and has no GetBody
// (http.NewRequest does not know its type).
type closeCounter struct {
	io.Reader
	closes atomic.Int32
}

func (c *closeCounter) Close() error { c.closes.Add(1); return nil }

// firstWait sends one request whose first answer is status with h, and
// returns the wait the Transport chose before the retry (from the
// observer), and whether it was the server's. The retry is not waited
// for: the observer cancels the request.
func firstWait(t *testing.T, status int, h http.Header, p retryhttp.Policy) (wait time.Duration, server, retried bool, reason string) {
	t.Helper()
	base := newFakeBase(func(n int, r *http.Request) (int, http.Header) { return status, h.Clone() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var a0 retryhttp.Attempt
	var once sync.Once
	tr := retryhttp.New(base, retryhttp.WithPolicy(p), retryhttp.WithBudget(nil), retryhttp.WithObserver(func(a retryhttp.Attempt) {
		once.Do(func() {
			a0 = a
			if a.Retry {
				cancel()
			}
		})
	}))
	resp, _ := tr.RoundTrip(get(t, ctx, "http://example.test/"))
	drain(resp)
	return a0.Wait, a0.ServerWait, a0.Retry, a0.Reason
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}
