package retryhttpotel_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/retryhttp/retryhttp"
	retryhttpotel "github.com/retryhttp/retryhttp/otel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// server answers with the statuses given, in turn (the last one from then
// on), and keeps the traceparent header of each request.
type server struct {
	*httptest.Server
	n           atomic.Int32
	mu          sync.Mutex
	traceparent []string
}

func newServer(t *testing.T, statuses ...int) *server {
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(s.n.Add(1))
		s.mu.Lock()
		s.traceparent = append(s.traceparent, r.Header.Get("Traceparent"))
		s.mu.Unlock()
		w.WriteHeader(statuses[min(n, len(statuses))-1])
		_, _ = io.WriteString(w, "body")
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) parents() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.traceparent...)
}

// tracing is a real SDK tracer provider whose spans end up in memory.
func tracing(t *testing.T) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, rec
}

var fast = retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond})

// get sends a GET under a caller's span and returns that span, ended.
func get(t *testing.T, tp trace.TracerProvider, rt http.RoundTripper, url string) (sdktrace.ReadOnlySpan, *http.Response, error) {
	ctx, span := tp.Tracer("caller").Start(context.Background(), "caller")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := rt.RoundTrip(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	span.End()
	return span.(sdktrace.ReadOnlySpan), resp, err
}

func attr(attrs []attribute.KeyValue, key string) (attribute.Value, bool) {
	for _, a := range attrs {
		if string(a.Key) == key {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

func clientSpans(rec *tracetest.SpanRecorder) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			out = append(out, s)
		}
	}
	return out
}

// The shape: 503, 503, 200 under a caller's span export exactly
// three CLIENT spans, children of the caller's, with resend counts absent,
// 1 and 2, otelhttp's attributes, and each attempt's own traceparent in
// one trace; the caller's span gets two retry events.
func TestEachAttemptIsAClientSpanWithItsResendCount(t *testing.T) {
	srv := newServer(t, 503, 503, 200)
	tp, rec := tracing(t)
	rt := retryhttp.New(retryhttpotel.NewBase(nil,
		otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(propagation.TraceContext{})),
		retryhttpotel.WithEvents(), fast)

	caller, resp, err := get(t, tp, rt, srv.URL)
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)

	spans := clientSpans(rec)
	require.Len(t, spans, 3)
	parents := srv.parents()
	require.Len(t, parents, 3)
	for i, s := range spans {
		assert.Equal(t, caller.SpanContext().SpanID(), s.Parent().SpanID(), "attempt %d is a child of the caller's span", i+1)
		assert.Equal(t, caller.SpanContext().TraceID(), s.SpanContext().TraceID())
		count, ok := attr(s.Attributes(), "http.request.resend_count")
		if i == 0 {
			assert.False(t, ok, "no resend count on the first attempt")
		} else if assert.True(t, ok, "attempt %d has a resend count", i+1) {
			assert.Equal(t, int64(i), count.AsInt64())
		}
		method, _ := attr(s.Attributes(), "http.request.method")
		assert.Equal(t, "GET", method.AsString())
		status, _ := attr(s.Attributes(), "http.response.status_code")
		assert.Equal(t, int64([]int{503, 503, 200}[i]), status.AsInt64())
		_, ok = attr(s.Attributes(), "url.full")
		assert.True(t, ok, "otelhttp's url.full")
		_, ok = attr(s.Attributes(), "server.address")
		assert.True(t, ok, "otelhttp's server.address")
		// The traceparent the server got names this very span.
		assert.Equal(t, "00-"+s.SpanContext().TraceID().String()+"-"+s.SpanContext().SpanID().String()+"-01", parents[i])
	}
	assert.NotEqual(t, parents[0], parents[1])
	assert.NotEqual(t, parents[1], parents[2])

	var retries []sdktrace.Event
	for _, e := range caller.Events() {
		assert.NotEqual(t, retryhttpotel.EventGiveUp, e.Name, "a request that succeeded did not give up")
		if e.Name == retryhttpotel.EventRetry {
			retries = append(retries, e)
		}
	}
	require.Len(t, retries, 2)
	for i, e := range retries {
		n, _ := attr(e.Attributes, "retryhttp.attempt")
		assert.Equal(t, int64(i+1), n.AsInt64())
		reason, _ := attr(e.Attributes, "retryhttp.reason")
		assert.Equal(t, "503", reason.AsString())
		wait, ok := attr(e.Attributes, "retryhttp.wait")
		assert.True(t, ok)
		assert.GreaterOrEqual(t, wait.AsFloat64(), 0.0)
		assert.LessOrEqual(t, wait.AsFloat64(), 0.002)
	}
}

// Without propagators among otelhttp's options, the global ones carry the
// trace context.
func TestGlobalPropagatorIsUsed(t *testing.T) {
	srv := newServer(t, 503, 200)
	tp, _ := tracing(t)
	// otelhttp reads the global propagator when its Transport is made.
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })
	rt := retryhttp.New(retryhttpotel.NewBase(nil, otelhttp.WithTracerProvider(tp)), fast)
	_, _, err := get(t, tp, rt, srv.URL)
	require.NoError(t, err)
	for _, p := range srv.parents() {
		assert.True(t, strings.HasPrefix(p, "00-"), "traceparent %q", p)
	}
}

// An otelhttp filter that starts no span for a request must not have the
// resend count land on the caller's span.
func TestResendCountNeverLandsOnTheCallersSpan(t *testing.T) {
	srv := newServer(t, 503, 503, 200)
	tp, rec := tracing(t)
	rt := retryhttp.New(retryhttpotel.NewBase(nil, otelhttp.WithTracerProvider(tp),
		otelhttp.WithFilter(func(*http.Request) bool { return false })), fast)
	caller, _, err := get(t, tp, rt, srv.URL)
	require.NoError(t, err)
	assert.Empty(t, clientSpans(rec))
	_, ok := attr(caller.Attributes(), "http.request.resend_count")
	assert.False(t, ok)
}

// A give-up adds one event with the reason; a wait canceled adds none for
// the retry that was not sent.
func TestGiveUpEvents(t *testing.T) {
	tp, _ := tracing(t)
	t.Run("exhausted", func(t *testing.T) {
		srv := newServer(t, 503)
		rt := retryhttp.New(retryhttpotel.NewBase(nil, otelhttp.WithTracerProvider(tp)), retryhttpotel.WithEvents(), fast)
		caller, _, err := get(t, tp, rt, srv.URL)
		require.NoError(t, err)
		names := eventNames(caller)
		assert.Equal(t, []string{retryhttpotel.EventRetry, retryhttpotel.EventRetry, retryhttpotel.EventGiveUp}, names)
		last := caller.Events()[len(caller.Events())-1]
		reason, _ := attr(last.Attributes, "retryhttp.reason")
		assert.Equal(t, retryhttp.ReasonExhausted, reason.AsString())
		n, _ := attr(last.Attributes, "retryhttp.attempts")
		assert.Equal(t, int64(3), n.AsInt64())
	})
	t.Run("canceled during the wait", func(t *testing.T) {
		srv := newServer(t, 503)
		rt := retryhttp.New(retryhttpotel.NewBase(nil, otelhttp.WithTracerProvider(tp)), retryhttpotel.WithEvents(),
			retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Hour, MaxDelay: time.Hour, Jitter: retryhttp.NoJitter}))
		ctx, span := tp.Tracer("caller").Start(context.Background(), "caller")
		ctx, cancel := context.WithCancel(ctx)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		require.NoError(t, err)
		go func() {
			for srv.n.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
			cancel()
		}()
		_, err = rt.RoundTrip(req)
		require.ErrorIs(t, err, context.Canceled)
		span.End()
		caller := span.(sdktrace.ReadOnlySpan)
		assert.Equal(t, []string{retryhttpotel.EventGiveUp}, eventNames(caller))
		reason, _ := attr(caller.Events()[0].Attributes, "retryhttp.reason")
		assert.Equal(t, retryhttp.ReasonCanceled, reason.AsString())
	})
	t.Run("a final status is no give-up", func(t *testing.T) {
		srv := newServer(t, 404)
		rt := retryhttp.New(retryhttpotel.NewBase(nil, otelhttp.WithTracerProvider(tp)), retryhttpotel.WithEvents(), fast)
		caller, resp, err := get(t, tp, rt, srv.URL)
		require.NoError(t, err)
		assert.Equal(t, 404, resp.StatusCode)
		assert.Empty(t, eventNames(caller))
	})
}

func eventNames(s sdktrace.ReadOnlySpan) []string {
	var names []string
	for _, e := range s.Events() {
		names = append(names, e.Name)
	}
	return names
}

// A hedge is an attempt: its span has its resend count, and the copy it
// beat ends canceled.
func TestAHedgeHasItsOwnSpan(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, "fast")
	}))
	t.Cleanup(srv.Close)
	tp, rec := tracing(t)
	// No budget: a fresh Transport's first request has earned no hedge
	// (hedges are paid from earnings only), and its first copy would hang.
	rt := retryhttp.New(retryhttpotel.NewBase(nil, otelhttp.WithTracerProvider(tp)),
		retryhttp.WithBudget(nil), retryhttp.WithHedging(retryhttp.Hedging{Delay: 10 * time.Millisecond}))
	caller, resp, err := get(t, tp, rt, srv.URL)
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	spans := clientSpans(rec)
	require.Len(t, spans, 2)
	byCount := map[int64]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		assert.Equal(t, caller.SpanContext().SpanID(), s.Parent().SpanID())
		c, _ := attr(s.Attributes(), "http.request.resend_count")
		byCount[c.AsInt64()] = s
	}
	require.Contains(t, byCount, int64(0), "the first copy")
	require.Contains(t, byCount, int64(1), "the hedge")
	status, _ := attr(byCount[1].Attributes(), "http.response.status_code")
	assert.Equal(t, int64(200), status.AsInt64())
	_, ok := attr(byCount[0].Attributes(), "error.type")
	assert.True(t, ok, "the first copy ended with an error: it was canceled")
}

// Every observer of a Transport works with every other, in any order:
// WithEvents, NewMetrics, the Prometheus WithMetrics and WithLogger.
func TestEverythingTogetherInAnyOrder(t *testing.T) {
	for _, order := range [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {2, 0, 3, 1}} {
		srv := newServer(t, 503, 503, 200)
		tp, _ := tracing(t)
		reader := newMetricReader(t)
		mopt, err := retryhttpotel.NewMetrics(reader.provider)
		require.NoError(t, err)
		reg := prometheus.NewRegistry()
		prom, err := retryhttp.NewMetrics(reg)
		require.NoError(t, err)
		var logged strings.Builder
		var logMu sync.Mutex
		logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
			logMu.Lock()
			defer logMu.Unlock()
			return logged.Write(p)
		}), nil))
		all := []retryhttp.Option{retryhttpotel.WithEvents(), mopt, retryhttp.WithMetrics(prom), retryhttp.WithLogger(logger)}
		opts := []retryhttp.Option{fast}
		for _, i := range order {
			opts = append(opts, all[i])
		}
		rt := retryhttp.New(retryhttpotel.NewBase(nil, otelhttp.WithTracerProvider(tp)), opts...)
		caller, _, err := get(t, tp, rt, srv.URL)
		require.NoError(t, err)

		assert.Len(t, eventNames(caller), 2, "order %v: events", order)
		retries, err := testutil.GatherAndCount(reg, "retryhttp_retries_total")
		require.NoError(t, err)
		assert.Equal(t, 1, retries, "order %v: Prometheus has the series", order)
		assert.Equal(t, 2.0, promSeries(t, reg)["retryhttp_retries_total{method=GET,reason=503}"], "order %v: Prometheus", order)
		assert.Equal(t, int64(2), reader.sum(t, retryhttpotel.MetricRetries), "order %v: OpenTelemetry", order)
		logMu.Lock()
		assert.Equal(t, 2, strings.Count(logged.String(), "retryhttp: retrying"), "order %v: log", order)
		logMu.Unlock()
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
