package chaos

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The chaos suite's faults, made deterministic: each test below gives one
// toxic a toxicity of 1, so every attempt meets it.

// TestResponseCutInItsHeaderIsRetried cuts every connection after the first
// n bytes of the response (Toxiproxy's limit_data, toxicity 1), for each n
// inside the response's header. The connection broke before there was a
// response to hand back, so a GET is sent MaxAttempts times, with one
// exception the library documents: a cut inside the status line before its
// code is complete (n from 1 to 11 here), which net/http reports as an
// untyped "malformed HTTP response" that cannot be told from a peer that does
// not speak HTTP without reading error text. The test pins that down too, so
// a change in net/http's errors shows here. This is the chaos suite's
// limit_data toxic made deterministic.
func TestResponseCutInItsHeaderIsRetried(t *testing.T) {
	const maxAttempts = 3
	var arrivals atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		arrivals.Add(1)
		w.Header()["Date"] = nil // no Date: the header is the same bytes every time
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	head := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\n"
	for _, n := range []int{0, 5, 10, 14, 17, 24, 34, 45, len(head) - 1} {
		t.Run(fmt.Sprintf("%d bytes", n), func(t *testing.T) {
			addr, stop := startProxy(t, strings.TrimPrefix(srv.URL, "http://"), []toxic{
				{Name: "cut", Type: "limit_data", Stream: "downstream", Toxicity: 1, Attributes: map[string]any{"bytes": n}},
			})
			defer stop()
			rt := retryhttp.New(nil, retryhttp.WithBudget(nil), retryhttp.WithPolicy(retryhttp.Policy{
				MaxAttempts: maxAttempts, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}))
			defer rt.CloseIdleConnections()
			arrivals.Store(0)
			resp, err := (&http.Client{Transport: rt, Timeout: 10 * time.Second}).Get("http://" + addr + "/")
			if resp != nil {
				resp.Body.Close()
			}
			require.Error(t, err, "every connection is cut")
			want := maxAttempts
			if n >= 1 && n < len("HTTP/1.1 200") {
				want = 1 // the documented exception: an untyped error from net/http
			}
			assert.EqualValues(t, want, arrivals.Load(),
				"attempts, when the response is cut after %q: %v", head[:n], err)
		})
	}
}

// TestResetWhileStreamingBodyIsRetried resets every connection on the first
// bytes of the request (Toxiproxy's reset_peer, upstream, toxicity 1) while
// the client still streams a body that fits the replay buffer. The reset is a
// retryable failure ("connection reset" in the README), and the body can be
// replayed, so the PUT must be sent MaxAttempts times. net/http often reports
// it as a write on a connection it closed itself once it read the reset
// ("use of closed network connection", net.ErrClosed) rather than as
// ECONNRESET.
func TestResetWhileStreamingBodyIsRetried(t *testing.T) {
	const maxAttempts = 3
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("the request reached the upstream through a reset_peer toxic of toxicity 1")
	}))
	defer srv.Close()
	addr, stop := startProxy(t, strings.TrimPrefix(srv.URL, "http://"), []toxic{
		{Name: "reset", Type: "reset_peer", Stream: "upstream", Toxicity: 1, Attributes: map[string]any{"timeout": 0}},
	})
	defer stop()
	counter := newAttemptCounter(&http.Transport{MaxIdleConnsPerHost: -1}, &http.Transport{})
	rt := retryhttp.New(counter, retryhttp.WithBudget(nil), retryhttp.WithPolicy(retryhttp.Policy{
		MaxAttempts: maxAttempts, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}))
	defer rt.CloseIdleConnections()

	ends := map[string]int64{}
	const requests = 20
	for range requests {
		body := &slowBody{left: 48 << 10} // within the 64 KiB replay buffer; no GetBody
		req, err := http.NewRequest(http.MethodPut, "http://"+addr+"/", body)
		require.NoError(t, err)
		before := counter.attempts.Load()
		resp, err := rt.RoundTrip(req)
		if resp != nil {
			resp.Body.Close()
		}
		require.Error(t, err, "every connection is reset")
		ends[fmt.Sprintf("%d attempts", counter.attempts.Load()-before)]++
	}
	counter.mu.Lock()
	defer counter.mu.Unlock()
	t.Logf("attempt errors: %s", formatCounts(counter.causes))
	for cause, sample := range sortedKeys(counter.samples) {
		t.Logf("  e.g. %s: %s", cause, sample)
	}
	assert.Equal(t, map[string]int64{fmt.Sprintf("%d attempts", maxAttempts): requests}, ends,
		"requests by attempts sent; attempt errors: %s", formatCounts(counter.causes))
}

// slowBody streams left bytes, 1 KiB per Read, with a short pause before
// each, as a body produced on the fly would.
type slowBody struct{ left int }

func (b *slowBody) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	time.Sleep(50 * time.Microsecond)
	n := min(len(p), 1024, b.left)
	clear(p[:n])
	b.left -= n
	return n, nil
}
