package blackbox_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	retryhttpotel "github.com/retryhttp/retryhttp/otel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// holdTheHostBeforeTheRetryOf is an observer that, when the first attempt
// of the request to path has failed and a retry is to follow (before its
// wait), sends a request to other, whose 429 holds the host: the retry
// then finds its host held. (These tests sent it from WithBeforeRetry,
// which since runs only once the host has admitted the retry: the retry was
// sent, and they failed whatever the machine's speed.)
func holdTheHostBeforeTheRetryOf(t *testing.T, path string, rt func() *retryhttp.Transport, other string) retryhttp.Option {
	var once sync.Once
	return retryhttp.WithObserver(func(a retryhttp.Attempt) {
		if !a.Retry || a.Request.URL.Path != path {
			return
		}
		once.Do(func() {
			resp, err := rt().RoundTrip(get(t, retryhttp.ContextWithoutRetries(context.Background()), other))
			if err == nil {
				resp.Body.Close()
			}
		})
	})
}

// A retry whose wait ended, but whose host was then found held past
// MaxRetryAfter: the retry is not sent (the request ends "throttled"). The
// docs: EventRetry is "a retry was sent, after its wait"; WithEvents adds a
// retryhttp.retry event "for each retry sent"; retryhttp_retries_total counts
// "each retry sent".
func TestRetryRefusedByAHeldHostIsNotARetrySent(t *testing.T) {
	srv := newFuncServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/other") {
			// Another request to the host: its quota is spent for 30 s.
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(429)
			return
		}
		w.WriteHeader(503)
	})
	var rt *retryhttp.Transport
	r := newRig(t, nil,
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond, MaxRetryAfter: time.Second}),
		holdTheHostBeforeTheRetryOf(t, "/a", func() *retryhttp.Transport { return rt }, srv.URL+"/other"))
	rt = r.rt
	// /other's events are recorded too; look only at /a's.
	ctx, span := r.tr.tp.Tracer("caller").Start(context.Background(), "a")
	resp, err := rt.RoundTrip(get(t, ctx, srv.URL+"/a"))
	span.End()
	require.Nil(t, resp)
	require.ErrorIs(t, err, retryhttp.ErrThrottled)
	var rerr *retryhttp.Error
	require.True(t, errors.As(err, &rerr))
	t.Logf("error: %v (attempts %d, reason %s)", err, rerr.Attempts, rerr.Reason)

	var aEvents []retryhttp.Event
	for _, e := range r.ev.get() {
		if e.Context == ctx {
			aEvents = append(aEvents, e)
			t.Logf("/a event %v attempt=%d reason=%q outcome=%q", e.Kind, e.Attempt, e.Reason, e.Outcome)
		}
	}
	sentToA := int(srv.n.Load()) - 1 // minus /other
	require.Equal(t, 1, sentToA, "the server saw /a once")
	var retries int
	for _, e := range aEvents {
		if e.Kind == retryhttp.EventRetry {
			retries++
		}
	}
	a := r.tr.named(t, "a")
	assert.Equal(t, 0, retries, "EventRetry for a retry that was never sent")
	assert.Empty(t, eventsNamed(a, retryhttpotel.EventRetry), "a retryhttp.retry span event for a retry that was never sent")
	p := prom(t, r.reg)
	assert.Zero(t, promSeries(p, "retryhttp_retries_total")["retryhttp_retries_total{method=GET,reason=503}"], "retryhttp_retries_total counts a retry never sent")
	g := eventsNamed(a, retryhttpotel.EventGiveUp)
	require.Len(t, g, 1)
	rs, _ := eventAttr(g[0], retryhttpotel.ReasonKey)
	assert.Equal(t, retryhttp.ReasonThrottled, rs.AsString())
	requireSeriesAgree(t, r.reg, r.m)
}

// The same, when the caller cancels while the retry waits for its held
// host (after the backoff wait): "a retry whose wait the caller canceled was
// never sent, and is no EventRetry".
func TestRetryCanceledWhileHeldIsNotARetrySent(t *testing.T) {
	srv := newFuncServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/other") {
			w.Header().Set("Retry-After", "30") // within the default MaxRetryAfter: the retry is held, not refused
			w.WriteHeader(429)
			return
		}
		w.WriteHeader(503)
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rt *retryhttp.Transport
	r := newRig(t, nil,
		holdTheHostBeforeTheRetryOf(t, "/a", func() *retryhttp.Transport { return rt }, srv.URL+"/other"),
		retryhttp.WithRecorder(func(e retryhttp.Event) {
			if e.Kind == retryhttp.EventHeld {
				cancel() // the caller gives up while its retry waits for the host
			}
		}))
	rt = r.rt
	ctx, span := r.tr.tp.Tracer("caller").Start(ctx, "a")
	start := time.Now()
	resp, err := rt.RoundTrip(get(t, ctx, srv.URL+"/a"))
	span.End()
	require.Nil(t, resp)
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, time.Since(start), 10*time.Second, "returned promptly, not after the 30 s hold")
	require.Equal(t, int32(2), srv.n.Load(), "/a once, /other once")
	a := r.tr.named(t, "a")
	for _, e := range a.Events() {
		rs, _ := eventAttr(e, retryhttpotel.ReasonKey)
		t.Logf("span event %s reason=%s", e.Name, rs.Emit())
	}
	assert.Empty(t, eventsNamed(a, retryhttpotel.EventRetry), "a retryhttp.retry span event for a retry that was never sent")
	var retries int
	for _, e := range r.ev.kind(retryhttp.EventRetry) {
		if e.Context == ctx {
			retries++
		}
	}
	assert.Zero(t, retries, "EventRetry for a retry the caller canceled before it was sent")
	g := eventsNamed(a, retryhttpotel.EventGiveUp)
	require.Len(t, g, 1)
	rs, _ := eventAttr(g[0], retryhttpotel.ReasonKey)
	assert.Equal(t, retryhttp.ReasonCanceled, rs.AsString())
	requireSeriesAgree(t, r.reg, r.m)
}
