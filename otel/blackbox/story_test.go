package blackbox_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/retryhttp/retryhttp"
	retryhttpotel "github.com/retryhttp/retryhttp/otel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
)

// rig is a Transport with everything on: NewBase, WithEvents, NewMetrics,
// WithMetrics, WithLogger, a recorder and an observer.
type rig struct {
	tr   *tracing
	runs int
	reg  *prometheus.Registry
	m    *meter
	ev   *events
	o    *observer
	rt   *retryhttp.Transport
}

func newRig(t *testing.T, base http.RoundTripper, opts ...retryhttp.Option) *rig {
	t.Helper()
	r := &rig{tr: newTracing(t), ev: &events{}, o: &observer{}}
	r.reg, r.m = promAndMeter(t)
	all := []retryhttp.Option{
		retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil),
		retryhttp.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		retryhttpotel.WithEvents(), mustMetrics(t, r.m), retryhttp.WithMetrics(promMetrics(t, r.reg)),
		retryhttp.WithRecorder(r.ev.record), retryhttp.WithObserver(r.o.observe),
	}
	all = append(all, opts...)
	r.rt = retryhttp.New(retryhttpotel.NewBase(base, otelOpts(r.tr)...), all...)
	t.Cleanup(r.rt.CloseIdleConnections)
	return r
}

// run sends req under a caller span, closes the response, and checks the
// story every observer tells.
func (r *rig) run(t *testing.T, req *http.Request) (*http.Response, error) {
	t.Helper()
	r.runs++
	name := fmt.Sprintf("caller-%d", r.runs)
	obs0, ev0, sp0 := len(r.o.get()), len(r.ev.get()), len(r.tr.clientSpans())
	ctx, span := r.tr.tp.Tracer("caller").Start(req.Context(), name)
	resp, err := r.rt.RoundTrip(req.WithContext(ctx))
	if err == nil {
		require.NotNil(t, resp)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	} else {
		require.Nil(t, resp)
	}
	span.End()
	r.tr.waitAllEnded(t)
	r.check(t, err, name, obs0, ev0, sp0)
	return resp, err
}

func (r *rig) check(t *testing.T, err error, name string, obs0, ev0, sp0 int) {
	t.Helper()
	obs := r.o.get()[obs0:]
	evs := r.ev.get()[ev0:]
	t.Logf("observer: %+v", obs)
	for _, e := range evs {
		t.Logf("event %v attempt=%d code=%d outcome=%q reason=%q wait=%v server=%v", e.Kind, e.Attempt, e.Code, e.Outcome, e.Reason, e.Wait, e.ServerWait)
	}
	// Attempts sent: every observed attempt except one not sent (throttled).
	var sent []observed
	for _, a := range obs {
		if a.Reason == retryhttp.ReasonThrottled && a.Code == 0 && errors.Is(a.Err, retryhttp.ErrThrottled) {
			continue
		}
		sent = append(sent, a)
	}
	var ea, er, ereq []retryhttp.Event
	for _, e := range evs {
		switch e.Kind {
		case retryhttp.EventAttempt:
			ea = append(ea, e)
		case retryhttp.EventRetry:
			er = append(er, e)
		case retryhttp.EventRequest:
			ereq = append(ereq, e)
		}
		assert.NotNil(t, e.Context, "%v without a context", e.Kind)
		if e.Context != nil {
			assert.True(t, spanOf(e.Context).IsValid(), "%v: the caller's context (its span)", e.Kind)
		}
	}
	require.Len(t, ea, len(sent), "one EventAttempt per attempt sent")
	for i := range sent {
		assert.Equal(t, sent[i].Number, ea[i].Attempt, "EventAttempt %d number", i)
		assert.Equal(t, sent[i].Code, ea[i].Code, "EventAttempt %d code", i)
	}
	// Retries sent: an observed Retry followed by another attempt.
	var wantRetries []observed
	for i, a := range obs {
		if a.Retry && i+1 < len(obs) { // (reviewed: a hedge that decided its attempt may be followed by a retry too)
			wantRetries = append(wantRetries, a)
		}
	}
	require.Len(t, er, len(wantRetries), "one EventRetry per retry sent")
	for i, a := range wantRetries {
		assert.Equal(t, a.Number, er[i].Attempt, "EventRetry %d attempt", i)
		assert.Equal(t, a.Reason, er[i].Reason, "EventRetry %d reason", i)
		assert.Equal(t, a.Wait, er[i].Wait, "EventRetry %d wait", i)
		assert.Equal(t, a.ServerWait, er[i].ServerWait, "EventRetry %d server wait", i)
	}
	require.Len(t, ereq, 1, "one EventRequest")
	req := ereq[0]
	maxN := 0
	for _, a := range sent {
		maxN = max(maxN, a.Number)
	}
	assert.Equal(t, maxN, req.Attempt, "EventRequest.Attempt: the attempts sent")
	var wantReason string
	var rerr *retryhttp.Error
	if len(obs) > 0 && !obs[len(obs)-1].Retry {
		wantReason = obs[len(obs)-1].Reason
	} else if errors.As(err, &rerr) {
		wantReason = rerr.Reason
	}
	if errors.As(err, &rerr) {
		assert.Equal(t, rerr.Reason, req.Reason, "EventRequest.Reason against *Error.Reason")
		assert.Equal(t, rerr.Attempts, req.Attempt, "EventRequest.Attempt against *Error.Attempts")
	}
	assert.Equal(t, wantReason, req.Reason, "EventRequest.Reason")
	outcome := map[string]string{
		"": "ok", retryhttp.ReasonExhausted: "exhausted", retryhttp.ReasonMethod: "not_retryable", retryhttp.ReasonBody: "not_retryable",
		retryhttp.ReasonPermanent: "not_retryable", retryhttp.ReasonClassifier: "not_retryable", retryhttp.ReasonHook: "not_retryable",
		retryhttp.ReasonRetryAfter: "too_late", retryhttp.ReasonBudget: "budget", retryhttp.ReasonCanceled: "canceled",
		retryhttp.ReasonThrottled: "throttled",
	}
	if req.Reason == retryhttp.ReasonDeadline {
		assert.Contains(t, []string{"too_late", "canceled"}, req.Outcome)
	} else {
		assert.Equal(t, outcome[req.Reason], req.Outcome, "outcome for reason %q", req.Reason)
	}

	// The span events say the same.
	caller := r.tr.named(t, name)
	re := eventsNamed(caller, retryhttpotel.EventRetry)
	require.Len(t, re, len(er), "retry events on the caller's span")
	for i, e := range re {
		a, _ := eventAttr(e, retryhttpotel.AttemptKey)
		rs, _ := eventAttr(e, retryhttpotel.ReasonKey)
		w, _ := eventAttr(e, retryhttpotel.WaitKey)
		assert.Equal(t, int64(er[i].Attempt), a.AsInt64())
		assert.Equal(t, er[i].Reason, rs.AsString())
		assert.InDelta(t, er[i].Wait.Seconds(), w.AsFloat64(), 1e-9)
	}
	g := eventsNamed(caller, retryhttpotel.EventGiveUp)
	if req.Reason == "" {
		assert.Empty(t, g, "no give-up event without a Reason")
	} else {
		require.Len(t, g, 1, "one give-up event")
		rs, _ := eventAttr(g[0], retryhttpotel.ReasonKey)
		assert.Equal(t, req.Reason, rs.AsString())
		n, ok := eventAttr(g[0], retryhttpotel.AttemptsKey)
		assert.True(t, ok)
		assert.Equal(t, int64(req.Attempt), n.AsInt64())
	}
	// One attempt span per attempt sent.
	assert.Len(t, r.tr.clientSpans()[sp0:], len(sent), "one CLIENT span per attempt sent")
	evs = r.ev.get() // totals: everything this rig's Transport counted
	ea, er, ereq = nil, nil, nil
	for _, e := range evs {
		switch e.Kind {
		case retryhttp.EventAttempt:
			ea = append(ea, e)
		case retryhttp.EventRetry:
			er = append(er, e)
		case retryhttp.EventRequest:
			ereq = append(ereq, e)
		}
	}

	// Everything adds up: events against Prometheus, Prometheus against OTel.
	p := prom(t, r.reg)
	sum := func(name string) float64 {
		var s float64
		for k, v := range promSeries(p, name) {
			if !isHistogramKey(k) || k[len(k)-6:] == "_count" {
				s += v
			}
		}
		return s
	}
	assert.Equal(t, float64(len(ereq)), sum("retryhttp_requests_total"))
	assert.Equal(t, float64(len(ea)), sum("retryhttp_attempts_total"))
	assert.Equal(t, float64(len(er)), sum("retryhttp_retries_total"))
	assert.Equal(t, float64(len(er)), sum("retryhttp_retry_delay_seconds"))
	assert.Equal(t, float64(len(r.ev.kind(retryhttp.EventBudgetRefusal))), sum("retryhttp_budget_refusals_total"))
	assert.Equal(t, float64(len(r.ev.kind(retryhttp.EventHeld))), sum("retryhttp_held_requests_total"))
	assert.Equal(t, float64(len(r.ev.kind(retryhttp.EventPaced))), sum("retryhttp_paced_requests_total"))
	assert.Equal(t, float64(len(r.ev.kind(retryhttp.EventPaced))), sum("retryhttp_pace_delay_seconds"))
	requireSeriesAgree(t, r.reg, r.m)
}

func isHistogramKey(k string) bool {
	return len(k) > 6 && (k[len(k)-6:] == "_count" || k[len(k)-4:] == "_sum")
}

func spanOf(ctx context.Context) trace.SpanContext { return trace.SpanContextFromContext(ctx) }

func TestEveryPathTellsOneStory(t *testing.T) {
	t.Run("success", func(t *testing.T) {
		srv := newScript(t, 200)
		r := newRig(t, nil)
		r.run(t, get(t, context.Background(), srv.URL))
	})
	t.Run("404 final", func(t *testing.T) {
		srv := newScript(t, 404)
		r := newRig(t, nil)
		r.run(t, get(t, context.Background(), srv.URL))
	})
	t.Run("503 exhausted", func(t *testing.T) {
		srv := newScript(t, 503)
		r := newRig(t, nil)
		r.run(t, get(t, context.Background(), srv.URL))
	})
	t.Run("503 503 200", func(t *testing.T) {
		srv := newScript(t, 503, 503, 200)
		r := newRig(t, nil)
		r.run(t, get(t, context.Background(), srv.URL))
	})
	t.Run("POST 503 method", func(t *testing.T) {
		srv := newScript(t, 503)
		r := newRig(t, nil)
		req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
		r.run(t, req)
	})
	t.Run("classifier", func(t *testing.T) {
		srv := newScript(t, 503)
		r := newRig(t, nil, retryhttp.WithClassifier(func(*http.Request, *http.Response, error) retryhttp.Decision { return retryhttp.DoNotRetry }))
		r.run(t, get(t, context.Background(), srv.URL))
	})
	t.Run("classifier retries a 409", func(t *testing.T) {
		srv := newScript(t, 409, 409, 200)
		r := newRig(t, nil, retryhttp.WithClassifier(func(_ *http.Request, resp *http.Response, _ error) retryhttp.Decision {
			if resp != nil && resp.StatusCode == 409 {
				return retryhttp.Retry
			}
			return retryhttp.UseDefault
		}))
		r.run(t, get(t, context.Background(), srv.URL))
	})
	t.Run("hook", func(t *testing.T) {
		srv := newScript(t, 503)
		hookErr := errors.New("no token")
		r := newRig(t, nil, retryhttp.WithBeforeRetry(func(*http.Request, retryhttp.Attempt) error { return hookErr }))
		_, err := r.run(t, get(t, context.Background(), srv.URL))
		require.ErrorIs(t, err, hookErr)
	})
	t.Run("retry_after too long", func(t *testing.T) {
		srv := newScript(t, 503)
		srv.header = func(n int, h http.Header) { h.Set("Retry-After", "120") }
		r := newRig(t, nil)
		r.run(t, get(t, context.Background(), srv.URL))
	})
	t.Run("deadline too_late", func(t *testing.T) {
		srv := newScript(t, 503)
		srv.header = func(n int, h http.Header) { h.Set("Retry-After", "5") }
		r := newRig(t, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		r.run(t, get(t, ctx, srv.URL))
	})
	t.Run("connect refused exhausted", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().String()
		require.NoError(t, l.Close())
		r := newRig(t, nil)
		_, err = r.run(t, get(t, context.Background(), "http://"+addr))
		require.Error(t, err)
	})
	t.Run("permanent", func(t *testing.T) {
		r := newRig(t, nil)
		_, err := r.run(t, get(t, context.Background(), "ftp://127.0.0.1/"))
		require.Error(t, err)
	})
	t.Run("canceled before sending", func(t *testing.T) {
		srv := newScript(t, 200)
		r := newRig(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := r.run(t, get(t, ctx, srv.URL))
		require.ErrorIs(t, err, context.Canceled)
	})
	t.Run("canceled during the wait", func(t *testing.T) {
		srv := newScript(t, 503)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// A wait of a minute, canceled as it starts: returning within 5 s
		// (a guard) shows it was cut short.
		r := newRig(t, nil, retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Minute, MaxDelay: time.Minute, Jitter: retryhttp.NoJitter}),
			retryhttp.WithObserver(func(a retryhttp.Attempt) {
				if a.Retry {
					cancel()
				}
			}))
		start := time.Now()
		_, err := r.run(t, get(t, ctx, srv.URL))
		require.ErrorIs(t, err, context.Canceled)
		require.Less(t, time.Since(start), 5*time.Second, "prompt")
		require.Len(t, srv.seen(), 1, "the retry was not sent")
		assert.Empty(t, r.ev.kind(retryhttp.EventRetry))
		g := eventsNamed(r.tr.named(t, "caller-1"), retryhttpotel.EventGiveUp)
		require.Len(t, g, 1)
		rs, _ := eventAttr(g[0], retryhttpotel.ReasonKey)
		assert.Equal(t, retryhttp.ReasonCanceled, rs.AsString())
	})
	t.Run("canceled during an attempt", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		srv := newFuncServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				w.WriteHeader(503)
				return
			}
			cancel()
			<-r.Context().Done()
		})
		r := newRig(t, nil)
		_, err := r.run(t, get(t, ctx, srv.URL))
		require.ErrorIs(t, err, context.Canceled)
	})
	t.Run("attempt timeout", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		srv := newFuncServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
			if n < 3 {
				select {
				case <-release:
				case <-r.Context().Done():
				}
				return
			}
			w.WriteHeader(200)
		})
		p := fast
		p.AttemptTimeout = 50 * time.Millisecond
		r := newRig(t, nil, retryhttp.WithPolicy(p))
		r.run(t, get(t, context.Background(), srv.URL))
	})
	t.Run("budget", func(t *testing.T) {
		srv := newScript(t, 503)
		b, err := retryhttp.NewBudget(retryhttp.BudgetConfig{Ratio: 1e-6, MinPerSecond: 1e-3, Window: time.Second})
		require.NoError(t, err)
		r := newRig(t, nil, retryhttp.WithBudget(b))
		for i := 0; i < 10 && len(r.ev.kind(retryhttp.EventBudgetRefusal)) == 0; i++ {
			r.run(t, get(t, context.Background(), srv.URL))
		}
		require.NotEmpty(t, r.ev.kind(retryhttp.EventBudgetRefusal), "the budget never refused")
	})
	t.Run("throttled, retries off", func(t *testing.T) {
		srv := newScript(t, 429)
		srv.header = func(n int, h http.Header) { h.Set("Retry-After", "30") }
		r := newRig(t, nil, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 3 * time.Millisecond, MaxRetryAfter: time.Second}))
		r.run(t, get(t, context.Background(), srv.URL))
		_, err := r.run(t, get(t, retryhttp.ContextWithoutRetries(context.Background()), srv.URL))
		require.ErrorIs(t, err, retryhttp.ErrThrottled)
	})
	t.Run("held then sent", func(t *testing.T) {
		var once sync.Once
		gate := make(chan struct{})
		srv := newFuncServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(429)
				once.Do(func() { close(gate) })
				return
			}
			w.WriteHeader(200)
		})
		r := newRig(t, nil)
		r.run(t, get(t, retryhttp.ContextWithoutRetries(context.Background()), srv.URL))
		<-gate
		r.run(t, get(t, context.Background(), srv.URL))
		require.Len(t, r.ev.kind(retryhttp.EventHeld), 1)
	})
	t.Run("paced then sent", func(t *testing.T) {
		// Bare 429s: the first wakes the host's adaptive rate, the second,
		// a second later (the least time between cuts), cuts it to MinRate
		// with no token in hand; the third request waits for the rate (up
		// to 500 ms: less the time since the cut), then is sent.
		srv := newScript(t, 429, 429, 200)
		r := newRig(t, nil, retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{MinRate: 2}))
		r.run(t, get(t, retryhttp.ContextWithoutRetries(context.Background()), srv.URL))
		time.Sleep(1100 * time.Millisecond)
		r.run(t, get(t, retryhttp.ContextWithoutRetries(context.Background()), srv.URL))
		require.Empty(t, r.ev.kind(retryhttp.EventPaced))
		r.run(t, get(t, context.Background(), srv.URL))
		paced := r.ev.kind(retryhttp.EventPaced)
		require.Len(t, paced, 1)
		assert.Equal(t, 1, paced[0].Attempt)
		assert.Equal(t, http.MethodGet, paced[0].Method)
		assert.Positive(t, paced[0].Wait)
		assert.LessOrEqual(t, paced[0].Wait, 500*time.Millisecond)
		assert.True(t, spanOf(paced[0].Context).IsValid(), "the caller's context")
	})
}
