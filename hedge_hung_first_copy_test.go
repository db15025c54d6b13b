package retryhttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAHedgeAnswersEveryHungFirstCopy is what hedging must do under the
// figures of BenchmarkTail, with events in order instead of latencies: 20
// goroutines send 1000 GETs, and the first copy of every 25th request never
// answers on its own (it ends only when the client cancels it). However
// late the machine runs the hedge's timer, each of those requests is
// answered by its hedge, and its first copy is canceled, not left running.
// Any other request may be hedged too, when the machine is slow: how often
// is a figure of BenchmarkTail, not asserted here.
func TestAHedgeAnswersEveryHungFirstCopy(t *testing.T) {
	const (
		goroutines = 20
		requests   = 1000
		every      = 25 // the first copy of every 25th request hangs
	)
	for _, c := range []struct {
		name   string
		hedge  Hedging
		warmUp int // requests sent one by one first: the adaptive delay needs 100 observations of the host
	}{
		{"hedging=20ms", Hedging{Delay: 20 * time.Millisecond}, 0},
		{"hedging=adaptive", Hedging{}, 100},
	} {
		t.Run(c.name, func(t *testing.T) {
			var hung, canceled atomic.Int32
			// arrived[id] is closed when the first copy of a request that
			// hangs has arrived: its hedge answers only then, so that every
			// first copy that is to hang does (a hedge may otherwise win
			// before a late first copy is even written).
			arrived := map[int]chan struct{}{}
			for id := every; id <= requests; id += every {
				arrived[id] = make(chan struct{})
			}
			up := newUpstream(t, func(_ int, w http.ResponseWriter, r *http.Request) {
				id, _ := strconv.Atoi(r.Header.Get("X-Request-Id"))
				copyNumber := r.Header.Get(attemptHeader)
				if first, ok := arrived[id]; ok {
					if copyNumber == "1" {
						hung.Add(1)
						close(first)
						<-r.Context().Done() // only the client ends it
						canceled.Add(1)
						return
					}
					select {
					case <-first:
					case <-r.Context().Done():
						return
					}
				}
				_, _ = io.WriteString(w, "copy "+copyNumber)
			})
			tr := hedgeTransport(t, WithHedging(c.hedge))
			get := func(id int) (string, error) {
				// The deadline only keeps a broken Transport from hanging
				// the test: a hedge is due 20 ms (or the adaptive delay)
				// after the first copy.
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				req := mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx)
				req.Header.Set("X-Request-Id", strconv.Itoa(id))
				resp, err := tr.RoundTrip(req)
				if ctx.Err() != nil { // the guard, not the hedge, ended the first copy
					err = errors.Join(errors.New("not answered before the test's 30 s guard"), err)
				}
				if err != nil {
					if resp != nil {
						resp.Body.Close()
					}
					return "", err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err == nil && resp.StatusCode != http.StatusOK {
					return "", errors.New(resp.Status)
				}
				return string(b), err
			}
			for i := range c.warmUp {
				_, err := get(-1 - i) // never hangs
				require.NoError(t, err)
			}
			if c.hedge.Delay == 0 {
				k := hostKey{scheme: "http", host: strings.TrimPrefix(up.URL, "http://")}
				require.Positive(t, tr.hedge.latencies.delay(k), "the adaptive delay is known after the warm-up")
			}

			var mu sync.Mutex
			answers := map[int]string{}
			var next atomic.Int32
			var wg sync.WaitGroup
			for range goroutines {
				wg.Go(func() {
					for {
						id := int(next.Add(1))
						if id > requests {
							return
						}
						body, err := get(id)
						if !assert.NoError(t, err, "request %d", id) {
							continue
						}
						mu.Lock()
						answers[id] = body
						mu.Unlock()
					}
				})
			}
			wg.Wait()

			require.Len(t, answers, requests, "every request was answered")
			require.Equal(t, int32(requests/every), hung.Load(), "the first copies that hung")
			for id := every; id <= requests; id += every {
				assert.NotEqual(t, "copy 1", answers[id], "request %d was answered by a hedge", id)
				assert.True(t, strings.HasPrefix(answers[id], "copy "), "request %d: %q", id, answers[id])
			}
			// A hung first copy ends only when the client cancels it; the
			// server notices the cancellation a moment after RoundTrip
			// returned.
			assert.Eventually(t, func() bool { return canceled.Load() == hung.Load() }, 10*time.Second, time.Millisecond,
				"hung first copies canceled once their hedge won: %d of %d", canceled.Load(), hung.Load())
		})
	}
}
