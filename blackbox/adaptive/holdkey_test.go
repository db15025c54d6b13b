package adaptive_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// closeCounter wraps a base so that every response body counts its Close.
type closeCounter struct {
	base   http.RoundTripper
	opened atomic.Int32
	closed atomic.Int32
}

type countedBody struct {
	io.ReadCloser
	c    *closeCounter
	once sync.Once
}

func (b *countedBody) Close() error {
	b.once.Do(func() { b.c.closed.Add(1) })
	return b.ReadCloser.Close()
}

func (c *closeCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if err == nil {
		c.opened.Add(1)
		resp.Body = &countedBody{ReadCloser: resp.Body, c: c}
	}
	return resp, err
}

// A WithHoldKey function that panics comes out of RoundTrip (as it does
// from a hedge's timer, where the response is closed first). Since issue
// 22, a bare 429 (which teaches the hold nothing, so never called key)
// calls key after the response came, to wake the host's rate: the panic
// leaves that response's body unclosed (its connection is never reused),
// in RoundTrip's goroutine and in a hedge's.
func TestAHoldKeyPanicAfterTheResponseClosesIt(t *testing.T) {
	t.Parallel()
	for _, hedged := range []bool{false, true} {
		t.Run("hedged="+strconv.FormatBool(hedged), func(t *testing.T) {
			var n atomic.Int32
			srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
				if hedged && n.Add(1) == 1 {
					time.Sleep(300 * time.Millisecond) // the first copy is slow: a hedge goes
				}
				w.WriteHeader(http.StatusTooManyRequests)
			})
			cc := &closeCounter{base: newBase(t)}
			opts := []retryhttp.Option{retryhttp.WithBudget(nil),
				retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond}),
				retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{}),
				retryhttp.WithHoldKey(func(*http.Request) string { panic("key") })}
			if hedged {
				opts = append(opts, retryhttp.WithHedging(retryhttp.Hedging{Delay: 20 * time.Millisecond}))
			}
			tr := retryhttp.New(cc, opts...)
			var p any
			func() {
				defer func() { p = recover() }()
				_, _ = get(tr, context.Background(), srv.URL)
			}()
			require.NotNil(t, p, "the key's panic comes out of RoundTrip")
			t.Logf("panicked with %v", p)
			assert.Eventually(t, func() bool { return cc.opened.Load() == cc.closed.Load() }, 10*time.Second, 10*time.Millisecond,
				"every response the base returned is closed (the slow first copy's too, once it answers)")
			assert.Equal(t, "key", p, "RoundTrip panics with the key function's panic")
		})
	}
}

// WithHoldKey giving every request a key of its own, each throttled bare:
// at most 1,024 rates are kept. 6,000 keys stay within a few MB and take
// well under a minute.
func TestManyAwakeKeysStayBounded(t *testing.T) {
	// Not parallel: the heap is the process's, and the package's parallel
	// tests would grow it too.
	srv := newServer(t, bare429)
	var i atomic.Int64
	tr := retryhttp.New(newBase(t), retryhttp.WithBudget(nil),
		retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{}),
		retryhttp.WithHoldKey(func(r *http.Request) string { return r.Header.Get("X-Key") }))
	send := func(n int) {
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					k := i.Add(1)
					if k > int64(n) {
						return
					}
					req, _ := http.NewRequestWithContext(retryhttp.ContextWithoutRetries(context.Background()), http.MethodGet, srv.URL, nil)
					req.Header.Set("X-Key", strconv.FormatInt(k, 10))
					resp, err := tr.RoundTrip(req)
					if err == nil {
						resp.Body.Close()
					} else if !errors.Is(err, retryhttp.ErrThrottled) {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	start := time.Now()
	send(2000)
	h1 := heap()
	send(6000)
	h2 := heap()
	t.Logf("heap after 2,000 keys %d KB, after 6,000 %d KB, in %v", h1/1024, h2/1024, time.Since(start))
	assert.Less(t, int64(h2)-int64(h1), int64(4<<20), "heap grows with the keys")
}
