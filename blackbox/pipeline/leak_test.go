package pipeline_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/require"
)

// attemptHeader is a base that tells the server which attempt a copy is.
type attemptHeader struct{ base http.RoundTripper }

func (a attemptHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	if r.Body != nil {
		r2.Body = r.Body
	}
	r2.Header.Set("X-Attempt", strconv.Itoa(retryhttp.AttemptFromContext(r.Context())))
	return a.base.RoundTrip(r2)
}

// TestHedgedRequestsOverLoopbackLeaveNothingBehind sends hedged requests
// to a loopback server whose first copies hang (every other request), or
// answer 503 along with their hedges (every fifth), and checks that every
// caller gets its own whole body, that the Events and the series agree,
// and that goroutines return to where they were.
func TestHedgedRequestsOverLoopbackLeaveNothingBehind(t *testing.T) {
	var hung atomic.Int32
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.URL.Query().Get("id"))
		attempt := r.Header.Get("X-Attempt")
		switch {
		case id%5 == 0 && attempt != "3":
			w.WriteHeader(503)
			return
		case id%2 == 0 && attempt == "1":
			hung.Add(1)
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		_, _ = io.WriteString(w, "answer "+r.URL.Query().Get("id"))
	})
	inner := &http.Transport{MaxIdleConnsPerHost: 8}
	g0 := baseline()
	rg := newRig(t, attemptHeader{inner}, retryhttp.WithHedging(retryhttp.Hedging{Delay: 10 * time.Millisecond}))
	var wg sync.WaitGroup
	const n = 40
	errs := make(chan error, n)
	sem := make(chan struct{}, 4)
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/?id="+strconv.Itoa(id), nil)
			resp, err := rg.rt.RoundTrip(req)
			if err != nil {
				errs <- err
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				errs <- err
				return
			}
			if want := "answer " + strconv.Itoa(id); string(b) != want {
				errs <- &mismatch{got: string(b), want: want}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Positive(t, hung.Load())
	rg.requireAgree(t, n)
	require.NotEmpty(t, rg.rec.of(retryhttp.EventHedgeWon))
	inner.CloseIdleConnections()
	srv.CloseClientConnections()
	require.LessOrEqual(t, settleGoroutines(g0), g0, "goroutines left behind")
}

type mismatch struct{ got, want string }

func (m *mismatch) Error() string { return "got " + m.got + ", want " + m.want }

// TestObserversSeeHedgedRoundsWhole: with MaxHedges 2 and a first copy
// that hangs, three copies go out, every copy is reported exactly once
// with its own number, Hedge set for all but the first, and exactly one
// of them decides.
func TestObserversSeeHedgedRoundsWhole(t *testing.T) {
	third := make(chan struct{})
	b := &byAttempt{fns: map[int]func(*http.Request) (*http.Response, error){
		1: func(r *http.Request) (*http.Response, error) {
			<-r.Context().Done()
			return nil, r.Context().Err()
		},
		2: func(r *http.Request) (*http.Response, error) {
			<-third
			resp, _ := response(r, 503, "busy")
			return resp, nil
		},
		3: func(r *http.Request) (*http.Response, error) {
			close(third)
			resp, _ := response(r, 200, "third")
			return resp, nil
		},
	}}
	rg := newRig(t, b, retryhttp.WithHedging(retryhttp.Hedging{Delay: 5 * time.Millisecond, MaxHedges: 2}))
	resp, err := rg.rt.RoundTrip(getReq(t, context.Background()))
	require.NoError(t, err)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "third", string(got))
	at := rg.obs.all()
	require.Len(t, at, 3, dumpAttempts(at))
	seen := map[int]retryhttp.Attempt{}
	for _, a := range at {
		_, dup := seen[a.Number]
		require.False(t, dup, "attempt %d reported twice", a.Number)
		seen[a.Number] = a
		require.Equal(t, a.Number != 1, a.Hedge)
		require.False(t, a.Retry)
		require.Empty(t, a.Reason)
		require.Equal(t, a.Number, retryhttp.AttemptFromContext(a.Request.Context()))
	}
	require.ErrorIs(t, seen[1].Err, retryhttp.ErrHedgeLost)
	if seen[2].Err == nil { // copy 2's 503 was in before the winner's answer
		require.Equal(t, 503, seen[2].Response.StatusCode)
	} else {
		require.ErrorIs(t, seen[2].Err, retryhttp.ErrHedgeLost)
	}
	require.Equal(t, 200, seen[3].Response.StatusCode)
	require.Equal(t, 3, at[len(at)-1].Number, "the winner is reported last")
	rg.requireAgree(t, 1)
	require.Len(t, rg.rec.of(retryhttp.EventHedge), 2)
	won := rg.rec.of(retryhttp.EventHedgeWon)
	require.Len(t, won, 1)
	require.Equal(t, 3, won[0].Attempt)
}
