package blackbox_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	retryhttpotel "github.com/retryhttp/retryhttp/otel"
	"github.com/stretchr/testify/require"
)

// A hedged attempt whose copies both fail, the hedge (attempt 2) with a
// reset and then the first copy (attempt 1) with a 503, then a retry: the story every observer tells must agree
// (the EventRetry's Attempt is "the number of the attempt an EventRetry
// follows", the observer's Retry attempt is the one that failed).
func TestHedgedAttemptFirstCopyAnswersLastThenRetry(t *testing.T) {
	hedgeAnswered := make(chan struct{})
	firstDone := make(chan struct{})
	var once sync.Once
	srv := newFuncServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch n {
		case 1:
			select {
			case <-hedgeAnswered:
				time.Sleep(100 * time.Millisecond) // the hedge's answer is handed over first
			case <-r.Context().Done():
				return
			}
			w.WriteHeader(503)
			close(firstDone)
		case 2: // the hedge: its connection is cut (reason "reset")
			if hj, ok := w.(http.Hijacker); ok {
				c, _, _ := hj.Hijack()
				_ = c.Close()
			}
		case 3: // (reviewed: a failed hedge makes room for another) a second hedge, failing last
			<-firstDone
			time.Sleep(20 * time.Millisecond)
			w.WriteHeader(503)
		default:
			w.WriteHeader(200)
		}
	})
	// Below NewBase: tell the server when the hedge's response is in.
	base := rtFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if retryhttp.AttemptFromContext(r.Context()) == 2 {
			once.Do(func() { close(hedgeAnswered) })
		}
		return resp, err
	})
	r := newRig(t, base,
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}),
		retryhttp.WithHedging(retryhttp.Hedging{Delay: 30 * time.Millisecond}))
	resp, err := r.run(t, get(t, context.Background(), srv.URL))
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	// The span event pairs an attempt with the reason of that attempt.
	ev := eventsNamed(r.tr.named(t, "caller-1"), retryhttpotel.EventRetry)
	require.Len(t, ev, 1)
	a, _ := eventAttr(ev[0], retryhttpotel.AttemptKey)
	rs, _ := eventAttr(ev[0], retryhttpotel.ReasonKey)
	require.False(t, a.AsInt64() == 2 && rs.AsString() == "503", "retryhttp.attempt=2 with retryhttp.reason=503, but attempt 2 got no 503 (it was reset)")
}
