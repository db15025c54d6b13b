package blackbox_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	retryhttpotel "github.com/retryhttp/retryhttp/otel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

func otelOpts(tr *tracing) []otelhttp.Option {
	return []otelhttp.Option{otelhttp.WithTracerProvider(tr.tp), otelhttp.WithPropagators(propagation.TraceContext{})}
}

// The acceptance scenario, checked to the letter.
func TestThreeAttemptsUnderACallersSpan(t *testing.T) {
	srv := newScript(t, 503, 503, 200)
	tr := newTracing(t)
	rt := retryhttp.New(retryhttpotel.NewBase(nil, otelOpts(tr)...),
		retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil), retryhttpotel.WithEvents())
	defer rt.CloseIdleConnections()

	ctx, span := tr.caller(context.Background())
	req := get(t, ctx, srv.URL+"/items?x=1")
	resp, body, err := do(t, rt, req)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "answer 3", body)
	span.End()

	spans := tr.clientSpans()
	require.Len(t, spans, 3, "one CLIENT span per attempt")
	require.Len(t, tr.sr.Ended(), 4, "the caller's span and 3 attempt spans, no logical span")
	callerSC := span.SpanContext()
	for i, s := range spans {
		assert.Equal(t, callerSC.SpanID(), s.Parent().SpanID(), "span %d parent", i)
		assert.Equal(t, callerSC.TraceID(), s.SpanContext().TraceID(), "span %d trace", i)
		m, ok := attr(s, "http.request.method")
		assert.True(t, ok, "span %d has http.request.method", i)
		assert.Equal(t, "GET", m.AsString())
		_, ok = attr(s, "server.address")
		assert.True(t, ok, "span %d has server.address", i)
		_, ok = attr(s, "url.full")
		assert.True(t, ok, "span %d has url.full", i)
		code, ok := attr(s, "http.response.status_code")
		assert.True(t, ok, "span %d has http.response.status_code", i)
		assert.Equal(t, int64([]int{503, 503, 200}[i]), code.AsInt64())
	}
	assert.Equal(t, []int64{-1, 1, 2}, resendCounts(spans))
	for _, s := range spans[1:] {
		v, _ := attr(s, resendKey)
		assert.Equal(t, attribute.INT64, v.Type(), "resend_count must be an int")
	}
	assert.Equal(t, codes.Error, spans[0].Status().Code, "a 503 attempt span is an error per semconv")

	// traceparent per attempt: same trace id, span id of that attempt's span.
	got := srv.seen()
	require.Len(t, got, 3)
	ids := map[string]bool{}
	for i, r := range got {
		require.Len(t, r.Traceparent, 1, "attempt %d: exactly one traceparent", i+1)
		tid, sid, _ := parseTraceparent(t, r.Traceparent[0])
		assert.Equal(t, callerSC.TraceID().String(), tid)
		assert.Equal(t, spans[i].SpanContext().SpanID().String(), sid, "attempt %d's traceparent names its own span", i+1)
		ids[sid] = true
	}
	assert.Len(t, ids, 3, "traceparent differs per attempt")

	// The caller's request is untouched.
	assert.Empty(t, req.Header.Values("Traceparent"))

	caller := tr.named(t, "caller")
	retries := eventsNamed(caller, retryhttpotel.EventRetry)
	require.Len(t, retries, 2)
	for i, e := range retries {
		a, ok := eventAttr(e, retryhttpotel.AttemptKey)
		require.True(t, ok)
		assert.Equal(t, int64(i+1), a.AsInt64())
		r, ok := eventAttr(e, retryhttpotel.ReasonKey)
		require.True(t, ok)
		assert.Equal(t, "503", r.AsString())
		w, ok := eventAttr(e, retryhttpotel.WaitKey)
		require.True(t, ok)
		assert.Equal(t, attribute.FLOAT64, w.Type(), "wait in seconds, a float")
		assert.LessOrEqual(t, w.AsFloat64(), fast.MaxDelay.Seconds()+1e-9)
		assert.GreaterOrEqual(t, w.AsFloat64(), 0.0)
	}
	assert.Empty(t, eventsNamed(caller, retryhttpotel.EventGiveUp), "a success has no give-up event")
	for _, s := range spans {
		_, ok := attr(s, resendKey)
		_ = ok
	}
	_, ok := attr(caller, resendKey)
	assert.False(t, ok, "resend_count never on the caller's span")
}

// The retry event is added "as it is sent": after the wait, not before.
func TestRetryEventIsAddedWhenTheRetryIsSentAndWaitIsInSeconds(t *testing.T) {
	srv := newScript(t, 503, 200)
	srv.header = func(n int, h http.Header) {
		if n == 1 {
			h.Set("Retry-After-Ms", "400")
		}
	}
	tr := newTracing(t)
	o := &observer{}
	rt := retryhttp.New(retryhttpotel.NewBase(nil, otelOpts(tr)...),
		retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil), retryhttpotel.WithEvents(), retryhttp.WithObserver(o.observe))
	defer rt.CloseIdleConnections()
	ctx, span := tr.caller(context.Background())
	_, _, err := do(t, rt, get(t, ctx, srv.URL))
	require.NoError(t, err)
	span.End()

	obs := o.get()
	require.Len(t, obs, 2)
	require.True(t, obs[0].ServerWait, "retry-after-ms is a server wait")
	require.GreaterOrEqual(t, obs[0].Wait, 400*time.Millisecond)

	spans := tr.clientSpans()
	require.Len(t, spans, 2)
	ev := eventsNamed(tr.named(t, "caller"), retryhttpotel.EventRetry)
	require.Len(t, ev, 1)
	w, _ := eventAttr(ev[0], retryhttpotel.WaitKey)
	assert.InDelta(t, obs[0].Wait.Seconds(), w.AsFloat64(), 1e-9, "the event's wait is the observer's, in seconds")
	assert.False(t, ev[0].Time.Before(spans[0].StartTime().Add(400*time.Millisecond)),
		"the retry event was added at %v, before the wait ended (first attempt started %v)", ev[0].Time, spans[0].StartTime())
	assert.False(t, ev[0].Time.After(spans[1].StartTime().Add(50*time.Millisecond)), "the retry event long after the retry was sent")
}

// ContextWithPolicy and ContextWithoutRetries per request.
func TestPerRequestPolicies(t *testing.T) {
	t.Run("ContextWithPolicy 5 attempts", func(t *testing.T) {
		srv := newScript(t, 503)
		tr := newTracing(t)
		rt := retryhttp.New(retryhttpotel.NewBase(nil, otelOpts(tr)...),
			retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil), retryhttpotel.WithEvents())
		defer rt.CloseIdleConnections()
		ctx, span := tr.caller(context.Background())
		ctx = retryhttp.ContextWithPolicy(ctx, retryhttp.Policy{MaxAttempts: 5})
		resp, _, err := do(t, rt, get(t, ctx, srv.URL))
		require.NoError(t, err)
		require.Equal(t, 503, resp.StatusCode)
		span.End()
		assert.Equal(t, []int64{-1, 1, 2, 3, 4}, resendCounts(tr.clientSpans()))
		caller := tr.named(t, "caller")
		assert.Len(t, eventsNamed(caller, retryhttpotel.EventRetry), 4)
		g := eventsNamed(caller, retryhttpotel.EventGiveUp)
		require.Len(t, g, 1)
		r, _ := eventAttr(g[0], retryhttpotel.ReasonKey)
		assert.Equal(t, retryhttp.ReasonExhausted, r.AsString())
		n, ok := eventAttr(g[0], retryhttpotel.AttemptsKey)
		require.True(t, ok)
		assert.Equal(t, int64(5), n.AsInt64())
	})
	t.Run("ContextWithoutRetries", func(t *testing.T) {
		srv := newScript(t, 503)
		tr := newTracing(t)
		o := &observer{}
		rt := retryhttp.New(retryhttpotel.NewBase(nil, otelOpts(tr)...),
			retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil), retryhttpotel.WithEvents(), retryhttp.WithObserver(o.observe))
		defer rt.CloseIdleConnections()
		ctx, span := tr.caller(context.Background())
		ctx = retryhttp.ContextWithoutRetries(ctx)
		resp, _, err := do(t, rt, get(t, ctx, srv.URL))
		require.NoError(t, err)
		require.Equal(t, 503, resp.StatusCode)
		span.End()
		assert.Equal(t, []int64{-1}, resendCounts(tr.clientSpans()))
		caller := tr.named(t, "caller")
		assert.Empty(t, eventsNamed(caller, retryhttpotel.EventRetry))
		obs := o.get()
		require.Len(t, obs, 1)
		g := eventsNamed(caller, retryhttpotel.EventGiveUp)
		if obs[0].Reason == "" {
			assert.Empty(t, g)
		} else {
			require.Len(t, g, 1)
			r, _ := eventAttr(g[0], retryhttpotel.ReasonKey)
			assert.Equal(t, obs[0].Reason, r.AsString())
		}
	})
}

// A caller span that is not recording, no span at all, a remote span
// context only.
func TestCallerSpanVariants(t *testing.T) {
	cases := map[string]func(tr *tracing) (context.Context, trace.SpanContext){
		"no span": func(tr *tracing) (context.Context, trace.SpanContext) {
			return context.Background(), trace.SpanContext{}
		},
		"remote span context": func(tr *tracing) (context.Context, trace.SpanContext) {
			sc := trace.NewSpanContext(trace.SpanContextConfig{
				TraceID:    trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
				SpanID:     trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
				TraceFlags: trace.FlagsSampled,
				Remote:     true,
			})
			return trace.ContextWithRemoteSpanContext(context.Background(), sc), sc
		},
		"remote unsampled": func(tr *tracing) (context.Context, trace.SpanContext) {
			sc := trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: trace.TraceID{9, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
				SpanID:  trace.SpanID{9, 2, 3, 4, 5, 6, 7, 8},
				Remote:  true,
			})
			return trace.ContextWithRemoteSpanContext(context.Background(), sc), sc
		},
		"local span, not recording": func(tr *tracing) (context.Context, trace.SpanContext) {
			sc := trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: trace.TraceID{7, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
				SpanID:  trace.SpanID{7, 2, 3, 4, 5, 6, 7, 8},
			})
			return trace.ContextWithSpanContext(context.Background(), sc), sc
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			srv := newScript(t, 503, 503, 200)
			tr := newTracing(t)
			reg, m := promAndMeter(t)
			ev := &events{}
			rt := retryhttp.New(retryhttpotel.NewBase(nil, otelOpts(tr)...),
				retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil), retryhttpotel.WithEvents(),
				mustMetrics(t, m), retryhttp.WithMetrics(promMetrics(t, reg)), retryhttp.WithRecorder(ev.record))
			defer rt.CloseIdleConnections()
			ctx, parent := mk(tr)
			resp, _, err := do(t, rt, get(t, ctx, srv.URL))
			require.NoError(t, err)
			require.Equal(t, 200, resp.StatusCode)

			spans := tr.clientSpans()
			got := srv.seen()
			require.Len(t, got, 3)
			sids := map[string]bool{}
			for i, r := range got {
				require.Len(t, r.Traceparent, 1, "attempt %d has one traceparent", i+1)
				tid, sid, flags := parseTraceparent(t, r.Traceparent[0])
				sids[sid] = true
				if parent.IsValid() {
					assert.Equal(t, parent.TraceID().String(), tid, "attempt %d keeps the caller's trace", i+1)
					if parent.IsSampled() {
						assert.Equal(t, "01", flags)
					} else {
						assert.Equal(t, "00", flags)
					}
				}
			}
			assert.Len(t, sids, 3, "each attempt its own span id")
			if parent.IsSampled() || !parent.IsValid() {
				require.Len(t, spans, 3)
				assert.Equal(t, []int64{-1, 1, 2}, resendCounts(spans))
				for _, s := range spans {
					assert.Equal(t, parent.SpanID(), s.Parent().SpanID())
				}
			} else {
				assert.Empty(t, spans, "an unsampled parent: no attempt span recorded")
			}
			requireSeriesAgree(t, reg, m)
			assert.Len(t, ev.kind(retryhttp.EventRetry), 2)
		})
	}
}

// The filter of otelhttp: no span, and the resend count must not land on
// another span (the caller's).
func TestOtelhttpFilterAndSpanNameFormatter(t *testing.T) {
	t.Run("filter rejects all", func(t *testing.T) {
		srv := newScript(t, 503, 503, 200)
		tr := newTracing(t)
		rt := retryhttp.New(retryhttpotel.NewBase(nil, append(otelOpts(tr), otelhttp.WithFilter(func(*http.Request) bool { return false }))...),
			retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil), retryhttpotel.WithEvents())
		defer rt.CloseIdleConnections()
		ctx, span := tr.caller(context.Background())
		resp, _, err := do(t, rt, get(t, ctx, srv.URL))
		require.NoError(t, err)
		require.Equal(t, 200, resp.StatusCode)
		span.End()
		assert.Empty(t, tr.clientSpans())
		caller := tr.named(t, "caller")
		_, ok := attr(caller, resendKey)
		assert.False(t, ok, "the resend count landed on the caller's span: %v", caller.Attributes())
		assert.Len(t, eventsNamed(caller, retryhttpotel.EventRetry), 2)
	})
	t.Run("filter rejects retries only", func(t *testing.T) {
		srv := newScript(t, 503, 503, 200)
		tr := newTracing(t)
		rt := retryhttp.New(retryhttpotel.NewBase(nil, append(otelOpts(tr), otelhttp.WithFilter(func(r *http.Request) bool {
			return retryhttp.AttemptFromContext(r.Context()) == 1
		}))...),
			retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil))
		defer rt.CloseIdleConnections()
		ctx, span := tr.caller(context.Background())
		_, _, err := do(t, rt, get(t, ctx, srv.URL))
		require.NoError(t, err)
		span.End()
		assert.Equal(t, []int64{-1}, resendCounts(tr.clientSpans()))
		_, ok := attr(tr.named(t, "caller"), resendKey)
		assert.False(t, ok, "the resend count landed on the caller's span")
	})
	t.Run("span name formatter sees the attempt", func(t *testing.T) {
		srv := newScript(t, 503, 503, 200)
		tr := newTracing(t)
		rt := retryhttp.New(retryhttpotel.NewBase(nil, append(otelOpts(tr), otelhttp.WithSpanNameFormatter(func(op string, r *http.Request) string {
			return "attempt " + string(rune('0'+retryhttp.AttemptFromContext(r.Context())))
		}))...),
			retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil))
		defer rt.CloseIdleConnections()
		ctx, span := tr.caller(context.Background())
		_, _, err := do(t, rt, get(t, ctx, srv.URL))
		require.NoError(t, err)
		span.End()
		spans := tr.clientSpans()
		require.Len(t, spans, 3)
		for i, s := range spans {
			assert.Equal(t, "attempt "+string(rune('1'+i)), s.Name())
		}
		assert.Equal(t, []int64{-1, 1, 2}, resendCounts(spans))
	})
	t.Run("span options and custom attributes kept", func(t *testing.T) {
		srv := newScript(t, 503, 200)
		tr := newTracing(t)
		rt := retryhttp.New(retryhttpotel.NewBase(nil, append(otelOpts(tr),
			otelhttp.WithSpanOptions(trace.WithAttributes(attribute.String("custom", "yes"))))...),
			retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil))
		defer rt.CloseIdleConnections()
		_, _, err := do(t, rt, get(t, context.Background(), srv.URL))
		require.NoError(t, err)
		spans := tr.clientSpans()
		require.Len(t, spans, 2)
		for _, s := range spans {
			v, ok := attr(s, "custom")
			assert.True(t, ok)
			assert.Equal(t, "yes", v.AsString())
		}
		assert.Equal(t, []int64{-1, 1}, resendCounts(spans))
	})
}
