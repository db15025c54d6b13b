package hedging_test

// The winner's body stays readable, in full, after RoundTrip returns: when a
// hedge won, when the first copy won after a hedge was sent, when no hedge
// was sent but the body takes longer than Delay; over HTTP/1 and HTTP/2;
// large bodies read slowly. And the caller's context still ends the body.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const bigBody = 8 << 20

func patternByte(i int) byte { return byte(i*7 + i>>9) }

// streamBody writes n pattern bytes in 32 KiB chunks, flushing, pausing
// pause every 64 chunks.
func streamBody(w http.ResponseWriter, n int, pause time.Duration) {
	w.Header().Set("Content-Length", strconv.Itoa(n))
	w.WriteHeader(200)
	f, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for off, chunk := 0, 0; off < n; chunk++ {
		m := min(len(buf), n-off)
		for i := 0; i < m; i++ {
			buf[i] = patternByte(off + i)
		}
		if _, err := w.Write(buf[:m]); err != nil {
			return
		}
		off += m
		if f != nil {
			f.Flush()
		}
		if pause > 0 && chunk%64 == 63 {
			time.Sleep(pause)
		}
	}
}

// readSlowly reads the body in 16 KiB reads, sleeping now and then, and
// checks every byte.
func readSlowly(t *testing.T, body io.Reader, n int) {
	t.Helper()
	buf := make([]byte, 16<<10)
	off, reads := 0, 0
	for {
		m, err := body.Read(buf)
		for i := 0; i < m; i++ {
			if buf[i] != patternByte(off+i) {
				t.Fatalf("byte %d differs", off+i)
			}
		}
		off += m
		reads++
		if reads%32 == 0 {
			time.Sleep(2 * time.Millisecond)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "after %d of %d bytes", off, n)
	}
	require.Equal(t, n, off)
}

func TestWinnerBodyIsReadableInFull(t *testing.T) {
	type scenario struct {
		name      string
		delay     time.Duration
		handler   func(u *upstream, id string, k int, w http.ResponseWriter, r *http.Request)
		wantHedge bool // the winner is a hedge
		wantSent  int
	}
	scenarios := []scenario{
		{name: "hedge wins", delay: 10 * time.Millisecond, wantHedge: true, wantSent: 2,
			handler: func(u *upstream, id string, k int, w http.ResponseWriter, r *http.Request) {
				if k == 1 {
					hang(r, time.Minute) // until the hedge wins
					return
				}
				streamBody(w, bigBody, time.Millisecond)
			}},
		{name: "first wins after a hedge was sent", delay: 10 * time.Millisecond, wantHedge: false, wantSent: 2,
			handler: func(u *upstream, id string, k int, w http.ResponseWriter, r *http.Request) {
				if k == 1 {
					if until(r, u.arrived(id, 2)) { // answers once the hedge is in
						streamBody(w, bigBody, time.Millisecond)
					}
					return
				}
				hang(r, time.Minute) // until the first copy wins
			}},
		// The headers come at once on a warm connection, far within the
		// Delay; the body is read after two Delays, once any timer armed
		// for the race has fired.
		{name: "first wins at once, body outlasts Delay", delay: 2 * processed, wantHedge: false, wantSent: 1,
			handler: func(u *upstream, id string, k int, w http.ResponseWriter, r *http.Request) {
				streamBody(w, bigBody, 5*time.Millisecond)
			}},
	}
	for _, proto := range []string{"h1", "h2"} {
		for _, sc := range scenarios {
			t.Run(proto+"/"+sc.name, func(t *testing.T) {
				var u *upstream
				u = newUpstream(t, proto == "h2", func(id string, k int, w http.ResponseWriter, r *http.Request) {
					if id == "warm" {
						return
					}
					sc.handler(u, id, k, w, r)
				})
				rec := &recorder{}
				rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: sc.delay}, retryhttp.WithObserver(rec.observe))
				// Warm the connection: a cold TLS handshake under -race may
				// outlast the Delay.
				warm, _ := get(t, nil, u.url)
				warm.Header.Set(idHeader, "warm")
				wres, err := rt.RoundTrip(warm)
				require.NoError(t, err)
				wres.Body.Close()
				req, id := get(t, guarded(t), u.url)
				res, err := rt.RoundTrip(req)
				require.NoError(t, err)
				defer res.Body.Close()
				require.Equal(t, 200, res.StatusCode)
				// Let every timer the race may have armed fire before
				// reading: the body must survive it.
				time.Sleep(2 * sc.delay)
				readSlowly(t, res.Body, bigBody)
				require.NoError(t, res.Body.Close())

				assert.Equal(t, sc.wantSent, u.copies(id), "copies the server received")
				var winners []seen
				for _, s := range rec.of(id) {
					if s.Err == nil {
						winners = append(winners, s)
					}
				}
				if assert.Len(t, winners, 1, "one copy answered: %+v", rec.of(id)) {
					assert.Equal(t, sc.wantHedge, winners[0].Hedge)
				}
			})
		}
	}
}

// Reading the body with a pause much longer than the Delay between reads:
// a hedge-timer or a race context must not cut it.
func TestWinnerBodySurvivesLongPausesBetweenReads(t *testing.T) {
	// The hedge's headers come at once, far within the AttemptTimeout
	// (250 ms); the caller then waits twice that before reading, and the
	// body comes in chunks 40 ms apart.
	const timeout = processed
	for _, proto := range []string{"h1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			u := newUpstream(t, proto == "h2", func(id string, k int, w http.ResponseWriter, r *http.Request) {
				if k == 1 {
					hang(r, time.Minute) // until the hedge wins
					return
				}
				w.WriteHeader(200)
				for i := 0; i < 5; i++ {
					_, _ = w.Write([]byte("chunk-"))
					w.(http.Flusher).Flush()
					time.Sleep(40 * time.Millisecond)
				}
			})
			rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: 5 * time.Millisecond},
				retryhttp.WithPolicy(retryhttp.Policy{AttemptTimeout: timeout, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
			req, _ := get(t, guarded(t), u.url)
			res, err := rt.RoundTrip(req)
			require.NoError(t, err)
			defer res.Body.Close()
			time.Sleep(2 * timeout)
			b, err := io.ReadAll(res.Body)
			require.NoError(t, err)
			assert.Equal(t, "chunk-chunk-chunk-chunk-chunk-", string(b))
		})
	}
}

// After RoundTrip returned, canceling the caller's context must still end a
// body that streams forever (as it does through bare net/http), whichever
// copy won.
func TestCallerCancelEndsTheWinnersBody(t *testing.T) {
	for _, proto := range []string{"h1", "h2"} {
		for _, hedgeWins := range []bool{true, false} {
			name := proto + "/first wins"
			if hedgeWins {
				name = proto + "/hedge wins"
			}
			t.Run(name, func(t *testing.T) {
				var u *upstream
				u = newUpstream(t, proto == "h2", func(id string, k int, w http.ResponseWriter, r *http.Request) {
					slow := k == 1
					if !hedgeWins {
						slow = k == 2
					}
					if slow {
						hang(r, time.Minute) // until the other copy wins
						return
					}
					if !hedgeWins && !until(r, u.arrived(id, 2)) { // the first answers once the hedge is in
						return
					}
					trickle(w, r)
				})
				rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: 10 * time.Millisecond})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				req, id := get(t, ctx, u.url)
				res, err := rt.RoundTrip(req)
				require.NoError(t, err)
				defer res.Body.Close()
				require.Equal(t, 2, u.copies(id))
				buf := make([]byte, 1)
				_, err = io.ReadFull(res.Body, buf)
				require.NoError(t, err)
				cancel()
				done := make(chan error, 1)
				go func() {
					_, err := io.Copy(io.Discard, res.Body)
					done <- err
				}()
				select {
				case err := <-done:
					assert.Error(t, err, "the body must end with an error once the caller's context is canceled")
				case <-time.After(10 * time.Second): // a guard: it ends at once
					res.Body.Close()
					t.Fatal("canceling the caller's context did not end the winner's body")
				}
			})
		}
	}
}
