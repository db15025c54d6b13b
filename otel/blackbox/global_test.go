package blackbox_test

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/retryhttp/retryhttp"
	retryhttpotel "github.com/retryhttp/retryhttp/otel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// inChild runs the calling test again in a fresh process (global OTel state
// is once per process), and reports whether this is the child.
func inChild(t *testing.T) bool {
	t.Helper()
	if os.Getenv("BLACKBOX_CHILD") == t.Name() {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "BLACKBOX_CHILD="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child process failed: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
	return false
}

func withBaggage(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	m, err := baggage.NewMember("tenant", "acme")
	require.NoError(t, err)
	b, err := baggage.New(m)
	require.NoError(t, err)
	return baggage.ContextWithBaggage(ctx, b)
}

func TestPropagatorsGivenToOtelhttp(t *testing.T) {
	cases := map[string]struct {
		p               propagation.TextMapPropagator
		tp, bag, tstate bool
	}{
		"TraceContext": {propagation.TraceContext{}, true, false, true},
		"Baggage only": {propagation.Baggage{}, false, true, false},
		"composite":    {propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}), true, true, true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			srv := newScript(t, 503, 503, 200)
			tr := newTracing(t)
			rt := retryhttp.New(retryhttpotel.NewBase(nil, otelhttp.WithTracerProvider(tr.tp), otelhttp.WithPropagators(c.p)),
				retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil))
			defer rt.CloseIdleConnections()
			ts, err := trace.ParseTraceState("vendor=abc")
			require.NoError(t, err)
			ctx := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: trace.TraceID{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, SpanID: trace.SpanID{2, 2, 2, 2, 2, 2, 2, 2},
				TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true,
			}))
			ctx = withBaggage(t, ctx)
			req := get(t, ctx, srv.URL)
			_, _, err = do(t, rt, req)
			require.NoError(t, err)
			got := srv.seen()
			require.Len(t, got, 3)
			sids := map[string]bool{}
			for i, r := range got {
				if c.tp {
					require.Len(t, r.Traceparent, 1, "attempt %d", i+1)
					_, sid, _ := parseTraceparent(t, r.Traceparent[0])
					sids[sid] = true
				} else {
					assert.Empty(t, r.Traceparent, "attempt %d", i+1)
				}
				if c.bag {
					assert.Equal(t, []string{"tenant=acme"}, r.Baggage, "attempt %d", i+1)
				} else {
					assert.Empty(t, r.Baggage, "attempt %d", i+1)
				}
				if c.tstate {
					assert.Equal(t, []string{"vendor=abc"}, r.Tracestate, "attempt %d", i+1)
				}
			}
			if c.tp {
				assert.Len(t, sids, 3)
			}
			assert.Empty(t, req.Header, "the caller's request is never modified")
		})
	}
}

// The global propagator set after NewBase was built is the one used.
func TestGlobalPropagatorSetAfterNewBase(t *testing.T) {
	if !inChild(t) {
		return
	}
	srv := newScript(t, 503, 200)
	tr := newTracing(t)
	rt := retryhttp.New(retryhttpotel.NewBase(nil, otelhttp.WithTracerProvider(tr.tp)), retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil))
	defer rt.CloseIdleConnections()
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	ctx, span := tr.caller(context.Background())
	ctx = withBaggage(t, ctx)
	_, _, err := do(t, rt, get(t, ctx, srv.URL))
	require.NoError(t, err)
	span.End()
	got := srv.seen()
	require.Len(t, got, 2)
	for i, r := range got {
		require.Len(t, r.Traceparent, 1, "attempt %d", i+1)
		tid, _, _ := parseTraceparent(t, r.Traceparent[0])
		assert.Equal(t, span.SpanContext().TraceID().String(), tid)
		assert.Equal(t, []string{"tenant=acme"}, r.Baggage)
	}
	assert.NotEqual(t, got[0].Traceparent, got[1].Traceparent)
}

// The global propagator replaced a second time after NewBase was built.
func TestGlobalPropagatorReplacedAfterNewBase(t *testing.T) {
	if !inChild(t) {
		return
	}
	otel.SetTextMapPropagator(propagation.TraceContext{})
	srv := newScript(t, 503, 200)
	tr := newTracing(t)
	rt := retryhttp.New(retryhttpotel.NewBase(nil, otelhttp.WithTracerProvider(tr.tp)), retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil))
	defer rt.CloseIdleConnections()
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	ctx, span := tr.caller(context.Background())
	ctx = withBaggage(t, ctx)
	_, _, err := do(t, rt, get(t, ctx, srv.URL))
	require.NoError(t, err)
	span.End()
	for i, r := range srv.seen() {
		require.Len(t, r.Traceparent, 1, "attempt %d", i+1)
		// Not a promise of NewBase's docs beyond "the global ones": log.
		t.Logf("attempt %d baggage %q", i+1, r.Baggage)
	}
}

// The global tracer provider, set after NewBase: spans for attempts made
// without a caller span.
func TestGlobalTracerProviderAfterNewBase(t *testing.T) {
	if !inChild(t) {
		return
	}
	srv := newScript(t, 503, 200)
	rt := retryhttp.New(retryhttpotel.NewBase(nil), retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil))
	defer rt.CloseIdleConnections()
	tr := newTracing(t)
	otel.SetTracerProvider(tr.tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	_, _, err := do(t, rt, get(t, context.Background(), srv.URL))
	require.NoError(t, err)
	assert.Equal(t, []int64{-1, 1}, resendCounts(tr.clientSpans()))
}

// NewMetrics(nil) is the global MeterProvider, before and after it is set.
func TestNewMetricsNilIsTheGlobalProviderSetLater(t *testing.T) {
	if !inChild(t) {
		return
	}
	opt, err := retryhttpotel.NewMetrics(nil)
	require.NoError(t, err)
	m := newMeter(t)
	otel.SetMeterProvider(m.mp)
	srv := newScript(t, 503, 200)
	rt := retryhttp.New(nil, retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil), opt)
	defer rt.CloseIdleConnections()
	_, _, err = do(t, rt, get(t, context.Background(), srv.URL))
	require.NoError(t, err)
	rm := m.collect(t)
	assert.Equal(t, map[string]int64{"http.request.method=GET,retryhttp.outcome=ok": 1}, sums(t, rm, retryhttpotel.MetricRequests))
	assert.Equal(t, int64(2), total(sums(t, rm, retryhttpotel.MetricAttempts)))
	for _, sm := range rm.ScopeMetrics {
		assert.Equal(t, retryhttpotel.ScopeName, sm.Scope.Name)
	}
}

func TestNewMetricsNilIsTheGlobalProviderSetBefore(t *testing.T) {
	if !inChild(t) {
		return
	}
	m := newMeter(t)
	otel.SetMeterProvider(m.mp)
	opt, err := retryhttpotel.NewMetrics(nil)
	require.NoError(t, err)
	srv := newScript(t, 503, 200)
	rt := retryhttp.New(nil, retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil), opt)
	defer rt.CloseIdleConnections()
	_, _, err = do(t, rt, get(t, context.Background(), srv.URL))
	require.NoError(t, err)
	rm := m.collect(t)
	assert.Equal(t, map[string]int64{"http.request.method=GET,retryhttp.outcome=ok": 1}, sums(t, rm, retryhttpotel.MetricRequests))
}

func runSelf(t *testing.T) ([]byte, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = os.Environ()
	return cmd.CombinedOutput()
}
