package hedging_test

// Losers leave nothing behind: connections and goroutines back to baseline
// after many hedged requests; a loser whose body streams forever; a loser
// stuck in dial; a loser over a base that ignores its context.

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLosersLeaveNoConnectionsOrGoroutines(t *testing.T) {
	for _, proto := range []string{"h1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			checkGoroutines(t)
			var slowDone atomic.Int32
			{
				var u *upstream
				u = newUpstream(t, proto == "h2", func(id string, k int, w http.ResponseWriter, r *http.Request) {
					n, _ := atoi(id)
					// A third of the requests: the first copy never
					// answers; a third: the hedge never answers, and the
					// first copy answers once it is in; the rest answer at
					// once. A copy that never answers ends when the other
					// wins.
					switch {
					case n%3 == 0 && k == 1, n%3 == 1 && k == 2:
						hang(r, time.Minute)
						slowDone.Add(1)
						return
					case n%3 == 1 && k == 1:
						if !until(r, u.arrived(id, 2)) {
							return
						}
					}
					_, _ = io.WriteString(w, "ok "+id)
				})
				rec := &recorder{}
				rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: 10 * time.Millisecond}, retryhttp.WithObserver(rec.observe))
				var wg sync.WaitGroup
				sem := make(chan struct{}, 8)
				for i := 0; i < 240; i++ {
					wg.Add(1)
					sem <- struct{}{}
					go func() {
						defer wg.Done()
						defer func() { <-sem }()
						req, id := get(t, nil, u.url)
						res, err := rt.RoundTrip(req)
						if !assert.NoError(t, err) {
							return
						}
						b, err := io.ReadAll(res.Body)
						assert.NoError(t, err)
						assert.Equal(t, "ok "+id, string(b))
						res.Body.Close()
					}()
				}
				wg.Wait()
				// Every slow copy was canceled (the server saw its
				// context end): it has no other way to end in time.
				require.True(t, waitFor(2*time.Second, func() bool { return u.handlersRunning.Load() == 0 }),
					"handlers still running: %d", u.handlersRunning.Load())
				ok := waitFor(2*time.Second, func() bool { _, busy := u.conns(); return busy == 0 })
				open, busy := u.conns()
				assert.True(t, ok, "server connections still busy after the requests: open %d, busy %d", open, busy)
				rt.CloseIdleConnections()
				ok = waitFor(2*time.Second, func() bool { open, _ := u.conns(); return open == 0 })
				open, _ = u.conns()
				assert.True(t, ok, "connections still open after CloseIdleConnections: %d", open)
				lost := 0
				for _, s := range rec.snapshot() {
					if isLost(s.Err) {
						lost++
					}
				}
				// 160 slow copies were canceled; a fast request slowed by
				// -race may have been hedged too.
				assert.GreaterOrEqual(t, lost, 160, "losers reported as ErrHedgeLost")
			}
		})
	}
}

func atoi(s string) (int, error) {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n, nil
}

// Both copies get their headers at about the same time and then stream
// forever: whichever loses, its body must be closed, so the server's write
// fails and its handler ends.
func TestLoserWhoseBodyStreamsForeverIsClosed(t *testing.T) {
	for _, proto := range []string{"h1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			checkGoroutines(t)
			{
				var arrived sync.Map // id -> chan struct{}, closed when the hedge arrives
				u := newUpstream(t, proto == "h2", func(id string, k int, w http.ResponseWriter, r *http.Request) {
					ch, _ := arrived.LoadOrStore(id, make(chan struct{}))
					if k == 1 {
						select { // answer together with the hedge
						case <-ch.(chan struct{}):
						case <-time.After(2 * time.Second):
						}
					} else {
						close(ch.(chan struct{}))
					}
					w.WriteHeader(200)
					deadline := time.Now().Add(8 * time.Second)
					for time.Now().Before(deadline) {
						if _, err := w.Write(make([]byte, 4096)); err != nil {
							return
						}
						w.(http.Flusher).Flush()
						if r.Context().Err() != nil {
							return
						}
					}
				})
				rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: 10 * time.Millisecond})
				for i := 0; i < 20; i++ {
					req, id := get(t, nil, u.url)
					res, err := rt.RoundTrip(req)
					require.NoError(t, err)
					_, err = io.CopyN(io.Discard, res.Body, 64<<10)
					require.NoError(t, err)
					res.Body.Close()
					require.Equal(t, 2, u.copies(id))
				}
				require.True(t, waitFor(3*time.Second, func() bool { return u.handlersRunning.Load() == 0 }),
					"handlers still streaming to a loser nobody reads: %d", u.handlersRunning.Load())
				rt.CloseIdleConnections()
				require.True(t, waitFor(2*time.Second, func() bool { open, _ := u.conns(); return open == 0 }))
			}
		})
	}
}

// The first copy's dial hangs until the test lets it end; the hedge dials
// again and wins. RoundTrip returns while that dial is still stuck.
// (net/http itself does not cancel a dial when its request is canceled:
// the dial goes on for the pool, so only its end is waited for.)
func TestLoserStuckInDial(t *testing.T) {
	checkGoroutines(t)
	var dialEnded atomic.Int32
	var dials atomic.Int32
	release := make(chan struct{})
	{
		u := newUpstream(t, false, func(id string, k int, w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "ok")
		})
		base := cleanhttp.DefaultPooledTransport()
		defer base.CloseIdleConnections()
		var d net.Dialer
		base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials.Add(1) == 1 {
				defer dialEnded.Add(1)
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-release:
					return nil, context.DeadlineExceeded
				}
			}
			return d.DialContext(ctx, network, addr)
		}
		rec := &recorder{}
		rt := hedgeRT(t, base, retryhttp.Hedging{Delay: 10 * time.Millisecond}, retryhttp.WithObserver(rec.observe))
		req, id := get(t, guarded(t), u.url)
		res, err := rt.RoundTrip(req)
		stuck := dialEnded.Load() == 0 // RoundTrip returned while the first dial was still stuck
		close(release)
		require.NoError(t, err)
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		assert.Equal(t, "ok", string(b))
		assert.True(t, stuck, "RoundTrip waited for the first copy's dial")
		assert.Equal(t, 1, u.copies(id))
		got := rec.of(id)
		require.Len(t, got, 2, "%+v", got)
		assert.True(t, waitFor(3*time.Second, func() bool { return dialEnded.Load() == 1 }))
	}
}

// A base that ignores its context (undocumented territory): the losing
// copy notices that it was canceled but answers anyway, later. When that
// copy is a hedge, RoundTrip returns as soon as the first copy wins, while
// the hedge is still out. When it is the first copy (the usual slow one),
// the winning hedge is returned only once the first copy's base returns:
// the first copy runs in RoundTrip's own goroutine. Either way the loser's
// late response is closed.
func TestLoserOverABaseThatIgnoresCancellation(t *testing.T) {
	for _, slowFirst := range []bool{false, true} {
		name := "the hedge ignores cancellation"
		if slowFirst {
			name = "the first copy ignores cancellation"
		}
		t.Run(name, func(t *testing.T) {
			var n atomic.Int32
			lateBody := &trackedBody{Reader: nilReader{}}
			loserDone := make(chan struct{})
			hedgeIn := make(chan struct{})
			release := make(chan struct{}) // lets a hedge that lost answer
			base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				n.Add(1)
				k := retryhttp.AttemptFromContext(r.Context())
				if k == 2 {
					close(hedgeIn)
				}
				if (k == 1) == slowFirst {
					<-r.Context().Done() // the other copy won: canceled, and answers anyway
					if !slowFirst {
						<-release
					}
					defer close(loserDone)
					res := testkit.Resp(200, "")
					res.Body = lateBody
					return res, nil
				}
				if k == 1 {
					<-hedgeIn // the first copy wins after the hedge was sent
				}
				return testkit.Resp(200, "winner"), nil
			})
			rec := &recorder{}
			rt := hedgeRT(t, base, retryhttp.Hedging{Delay: 10 * time.Millisecond}, retryhttp.WithObserver(rec.observe))
			req, _ := get(t, nil, "http://example.invalid/")
			res, err := rt.RoundTrip(req)
			returnedFirst := true // RoundTrip returned before the loser's base did
			select {
			case <-loserDone:
				returnedFirst = false
			default:
			}
			close(release)
			require.NoError(t, err)
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			assert.Equal(t, "winner", string(b))
			if slowFirst {
				assert.False(t, returnedFirst, "the hedge's answer is returned once the first copy's base returned")
			} else {
				assert.True(t, returnedFirst, "RoundTrip waited for a hedge whose base ignores cancellation")
			}
			select {
			case <-loserDone:
			case <-time.After(10 * time.Second): // a guard: it returns at once
				t.Fatal("loser never returned")
			}
			assert.True(t, waitFor(5*time.Second, func() bool { return lateBody.closes.Load() == 1 }),
				"the loser's late response body was not closed (closes=%d)", lateBody.closes.Load())
		})
	}
}

type nilReader struct{}

func (nilReader) Read([]byte) (int, error) { return 0, io.EOF }
