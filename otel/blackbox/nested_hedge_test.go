package blackbox_test

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	retryhttpotel "github.com/retryhttp/retryhttp/otel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
)

// A Transport whose base is another Transport over NewBase.
func TestNestedTransportsResendCounts(t *testing.T) {
	srv := newScript(t, 503)
	tr := newTracing(t)
	two := retryhttp.Policy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}
	innerEv, outerEv := &events{}, &events{}
	inner := retryhttp.New(retryhttpotel.NewBase(nil, otelOpts(tr)...), retryhttp.WithPolicy(two), retryhttp.WithBudget(nil),
		retryhttpotel.WithEvents(), retryhttp.WithRecorder(innerEv.record))
	outer := retryhttp.New(inner, retryhttp.WithPolicy(two), retryhttp.WithBudget(nil),
		retryhttpotel.WithEvents(), retryhttp.WithRecorder(outerEv.record))
	defer outer.CloseIdleConnections()
	ctx, span := tr.caller(context.Background())
	resp, _, err := do(t, outer, get(t, ctx, srv.URL))
	require.NoError(t, err)
	require.Equal(t, 503, resp.StatusCode)
	span.End()

	spans := tr.clientSpans()
	require.Len(t, spans, 4, "2 outer attempts x 2 inner attempts over the wire")
	counts := resendCounts(spans)
	t.Logf("resend counts of the 4 requests that went over the wire: %v", counts)
	caller := tr.named(t, "caller")
	var evs []string
	for _, e := range caller.Events() {
		a, _ := eventAttr(e, retryhttpotel.AttemptKey)
		n, _ := eventAttr(e, retryhttpotel.AttemptsKey)
		r, _ := eventAttr(e, retryhttpotel.ReasonKey)
		evs = append(evs, e.Name+" attempt="+a.Emit()+" attempts="+n.Emit()+" reason="+r.Emit())
	}
	t.Logf("caller span events: %q", evs)
	for _, e := range innerEv.kind(retryhttp.EventAttempt) {
		t.Logf("inner EventAttempt.Attempt=%d", e.Attempt)
	}
	for _, e := range outerEv.kind(retryhttp.EventAttempt) {
		t.Logf("outer EventAttempt.Attempt=%d", e.Attempt)
	}
	// Documented: the inner Transport's first attempt under the outer's
	// second carries the outer's number.
	assert.Equal(t, int64(1), counts[2])
}

// blockFirst blocks the first request until the client gives up on it.
func blockFirst(n int, w http.ResponseWriter, r *http.Request) {
	if n == 1 {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return
	}
	w.WriteHeader(200)
}

func TestHedgeSpans(t *testing.T) {
	for _, maxHedges := range []int{1, 2} {
		t.Run("MaxHedges="+string(rune('0'+maxHedges)), func(t *testing.T) {
			block := make(chan struct{})
			defer close(block)
			srv := newFuncServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if n <= maxHedges {
					select {
					case <-r.Context().Done():
					case <-block:
					}
					return
				}
				w.WriteHeader(200)
			})
			tr := newTracing(t)
			reg, m := promAndMeter(t)
			o := &observer{}
			ev := &events{}
			rt := retryhttp.New(retryhttpotel.NewBase(nil, otelOpts(tr)...),
				retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}),
				retryhttp.WithBudget(nil), retryhttp.WithHedging(retryhttp.Hedging{Delay: 30 * time.Millisecond, MaxHedges: maxHedges}),
				retryhttpotel.WithEvents(), retryhttp.WithObserver(o.observe), retryhttp.WithRecorder(ev.record),
				mustMetrics(t, m), retryhttp.WithMetrics(promMetrics(t, reg)))
			defer rt.CloseIdleConnections()
			ctx, span := tr.caller(context.Background())
			resp, _, err := do(t, rt, get(t, ctx, srv.URL))
			require.NoError(t, err)
			require.Equal(t, 200, resp.StatusCode)
			span.End()
			tr.waitAllEnded(t)
			spans := tr.clientSpans()
			require.Len(t, spans, maxHedges+1)
			counts := resendCounts(spans)
			sort.Slice(counts, func(i, j int) bool { return counts[i] < counts[j] })
			want := []int64{-1}
			for i := 1; i <= maxHedges; i++ {
				want = append(want, int64(i))
			}
			assert.Equal(t, want, counts, "each copy its own resend count")
			// The losers' spans are ended, and say they failed.
			var lost int
			for _, s := range spans {
				if _, ok := attr(s, "http.response.status_code"); !ok {
					lost++
					assert.Equal(t, codes.Error, s.Status().Code, "a canceled copy's span")
				}
			}
			assert.Equal(t, maxHedges, lost)
			caller := tr.named(t, "caller")
			assert.Empty(t, eventsNamed(caller, retryhttpotel.EventRetry), "hedges are not retries")
			assert.Empty(t, eventsNamed(caller, retryhttpotel.EventGiveUp))
			var lostObs int
			for _, a := range o.get() {
				if errors.Is(a.Err, retryhttp.ErrHedgeLost) {
					lostObs++
				}
			}
			assert.Equal(t, maxHedges, lostObs)
			assert.Len(t, ev.kind(retryhttp.EventHedge), maxHedges)
			assert.Len(t, ev.kind(retryhttp.EventHedgeWon), 1)
			requireSeriesAgree(t, reg, m)
		})
	}
}

// A hedge that fails (503), the first copy fails too (503), then a retry.
// Which copy answers last is a race: when the first copy does, this fails
// with the defect TestHedgedAttemptFirstCopyAnswersLastThenRetry pins down
// deterministically (EventRetry.Attempt 2, the observer's failed attempt 1).
func TestHedgeThenRetryEvents(t *testing.T) {
	release := make(chan struct{})
	srv := newFuncServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch n {
		case 1:
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			w.WriteHeader(503)
		case 2:
			w.WriteHeader(503)
			close(release)
		default:
			w.WriteHeader(200)
		}
	})
	tr := newTracing(t)
	reg, m := promAndMeter(t)
	o := &observer{}
	ev := &events{}
	rt := retryhttp.New(retryhttpotel.NewBase(nil, otelOpts(tr)...),
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}),
		retryhttp.WithBudget(nil), retryhttp.WithHedging(retryhttp.Hedging{Delay: 30 * time.Millisecond}),
		retryhttpotel.WithEvents(), retryhttp.WithObserver(o.observe), retryhttp.WithRecorder(ev.record),
		mustMetrics(t, m), retryhttp.WithMetrics(promMetrics(t, reg)))
	defer rt.CloseIdleConnections()
	ctx, span := tr.caller(context.Background())
	resp, _, err := do(t, rt, get(t, ctx, srv.URL))
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	span.End()
	tr.waitAllEnded(t)
	spans := tr.clientSpans()
	counts := resendCounts(spans)
	t.Logf("resend counts %v; observer %+v", counts, o.get())
	uniq := map[int64]bool{}
	for _, c := range counts {
		assert.False(t, uniq[c], "resend count %d twice: %v", c, counts)
		uniq[c] = true
	}
	var retryObs []observed
	for _, a := range o.get() {
		if a.Retry {
			retryObs = append(retryObs, a)
		}
	}
	caller := tr.named(t, "caller")
	re := eventsNamed(caller, retryhttpotel.EventRetry)
	require.Len(t, re, len(retryObs))
	for i, e := range re {
		a, _ := eventAttr(e, retryhttpotel.AttemptKey)
		assert.Equal(t, int64(retryObs[i].Number), a.AsInt64())
	}
	require.Len(t, ev.kind(retryhttp.EventRetry), len(retryObs))
	requireSeriesAgree(t, reg, m)
	assert.Equal(t, int(srv.n.Load()), len(spans), "one span per request over the wire")
	_ = http.StatusOK
}
