package blackbox_test

// Helpers for a hostile black-box review of the otel module (issue 14):
// loopback servers that answer scripted statuses and keep what they saw, the
// real OpenTelemetry SDK (span recorder, manual metric reader), a Prometheus
// registry to compare against, and recorders/observers that keep what they
// were handed.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// fast retries quickly so that no test needs a fake clock.
var fast = retryhttp.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 3 * time.Millisecond}

// seen is one request as a server received it.
type seen struct {
	Method      string
	Traceparent []string
	Baggage     []string
	Tracestate  []string
	Body        string
	Header      http.Header
}

// script is a loopback server that answers with the statuses given, in turn
// (the last one from then on), and keeps every request it saw.
type script struct {
	*httptest.Server
	n        atomic.Int32
	mu       sync.Mutex
	requests []seen
	statuses []int
	header   func(n int, h http.Header) // optional extra response headers for request n (1-based)
	conns    atomic.Int32               // new connections
}

func newScript(t *testing.T, statuses ...int) *script {
	t.Helper()
	s := &script{statuses: statuses}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.Server.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func (s *script) serve(w http.ResponseWriter, r *http.Request) {
	n := int(s.n.Add(1))
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.requests = append(s.requests, seen{
		Method:      r.Method,
		Traceparent: r.Header.Values("Traceparent"),
		Baggage:     r.Header.Values("Baggage"),
		Tracestate:  r.Header.Values("Tracestate"),
		Body:        string(b),
		Header:      r.Header.Clone(),
	})
	s.mu.Unlock()
	if s.header != nil {
		s.header(n, w.Header())
	}
	w.WriteHeader(s.statuses[min(n, len(s.statuses))-1])
	_, _ = io.WriteString(w, "answer "+strconv.Itoa(n))
}

func (s *script) seen() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.requests...)
}

// tracing is a real SDK tracer provider whose spans are kept in memory.
type tracing struct {
	sr *tracetest.SpanRecorder
	tp *sdktrace.TracerProvider
}

func newTracing(t *testing.T, opts ...sdktrace.TracerProviderOption) *tracing {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	all := append([]sdktrace.TracerProviderOption{sdktrace.WithSpanProcessor(sr), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample()))}, opts...)
	tp := sdktrace.NewTracerProvider(all...)
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return &tracing{sr: sr, tp: tp}
}

// caller starts the caller's span.
func (tr *tracing) caller(ctx context.Context) (context.Context, trace.Span) {
	return tr.tp.Tracer("caller").Start(ctx, "caller")
}

// clientSpans returns the ended CLIENT spans, in start order.
func (tr *tracing) clientSpans() []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tr.sr.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartTime().Before(out[j].StartTime()) })
	return out
}

// named returns the ended span with that name.
func (tr *tracing) named(t *testing.T, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found sdktrace.ReadOnlySpan
	for _, s := range tr.sr.Ended() {
		if s.Name() == name {
			require.Nil(t, found, "two spans named %q", name)
			found = s
		}
	}
	require.NotNil(t, found, "no ended span named %q", name)
	return found
}

// waitAllEnded waits until every started span has ended.
func (tr *tracing) waitAllEnded(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if len(tr.sr.Started()) == len(tr.sr.Ended()) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	require.Equal(t, len(tr.sr.Started()), len(tr.sr.Ended()), "spans started but never ended")
}

func attr(s sdktrace.ReadOnlySpan, k attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func eventAttr(e sdktrace.Event, k attribute.Key) (attribute.Value, bool) {
	for _, kv := range e.Attributes {
		if kv.Key == k {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func eventsNamed(s sdktrace.ReadOnlySpan, name string) []sdktrace.Event {
	var out []sdktrace.Event
	for _, e := range s.Events() {
		if e.Name == name {
			out = append(out, e)
		}
	}
	return out
}

const resendKey = attribute.Key("http.request.resend_count")

// resendCounts lists the resend count of each span, -1 when absent.
func resendCounts(spans []sdktrace.ReadOnlySpan) []int64 {
	out := make([]int64, len(spans))
	for i, s := range spans {
		v, ok := attr(s, resendKey)
		if !ok {
			out[i] = -1
			continue
		}
		out[i] = v.AsInt64()
	}
	return out
}

// meter is a real SDK meter provider with a manual reader.
type meter struct {
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newMeter(t *testing.T) *meter {
	t.Helper()
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return &meter{reader: r, mp: mp}
}

func (m *meter) collect(t *testing.T) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, m.reader.Collect(context.Background(), &rm))
	return rm
}

func findMetric(rm metricdata.ResourceMetrics, name string) (metricdata.Metrics, bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m, true
			}
		}
	}
	return metricdata.Metrics{}, false
}

// attrKey renders an attribute set as "k=v,k=v" in key order.
func attrKey(s attribute.Set) string {
	var parts []string
	for _, kv := range s.ToSlice() {
		parts = append(parts, string(kv.Key)+"="+kv.Value.Emit())
	}
	return strings.Join(parts, ",")
}

// sums returns an int64 Sum's values by attribute set.
func sums(t *testing.T, rm metricdata.ResourceMetrics, name string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	m, ok := findMetric(rm, name)
	if !ok {
		return out
	}
	s, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is a %T, not an int64 Sum", name, m.Data)
	require.True(t, s.IsMonotonic, "%s is not monotonic", name)
	for _, dp := range s.DataPoints {
		out[attrKey(dp.Attributes)] += dp.Value
	}
	return out
}

func total(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// hist returns a float64 histogram's count and sum by attribute set.
func hist(t *testing.T, rm metricdata.ResourceMetrics, name string) (map[string]uint64, map[string]float64) {
	t.Helper()
	counts, sumsOut := map[string]uint64{}, map[string]float64{}
	m, ok := findMetric(rm, name)
	if !ok {
		return counts, sumsOut
	}
	h, ok := m.Data.(metricdata.Histogram[float64])
	require.True(t, ok, "%s is a %T, not a float64 Histogram", name, m.Data)
	for _, dp := range h.DataPoints {
		counts[attrKey(dp.Attributes)] += dp.Count
		sumsOut[attrKey(dp.Attributes)] += dp.Sum
	}
	return counts, sumsOut
}

// prom gathers a registry into "name{k=v,k=v}" -> value (counters) and
// "name{...}_count"/"_sum" for histograms.
func prom(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var parts []string
			for _, lp := range m.GetLabel() {
				parts = append(parts, lp.GetName()+"="+lp.GetValue())
			}
			sort.Strings(parts)
			key := mf.GetName() + "{" + strings.Join(parts, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
				out[key+"_sum"] = m.GetHistogram().GetSampleSum()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// promPrefix keeps the entries of a gathered map whose name is name.
func promSeries(all map[string]float64, name string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range all {
		if strings.HasPrefix(k, name+"{") && !strings.HasSuffix(k, "_sum") {
			out[k] = v
		}
	}
	return out
}

// requireSeriesAgree checks that the OTel instruments of NewMetrics say what
// the Prometheus series say, label by label.
func requireSeriesAgree(t *testing.T, reg *prometheus.Registry, m *meter) {
	t.Helper()
	p := prom(t, reg)
	rm := m.collect(t)

	// requests{method,outcome}
	want := map[string]int64{}
	for k, v := range p {
		if strings.HasPrefix(k, "retryhttp_requests_total{") {
			l := labels(k)
			want["http.request.method="+l["method"]+",retryhttp.outcome="+l["outcome"]] += int64(v)
		}
	}
	require.Equal(t, nonZero(want), nonZero(sums(t, rm, "retryhttp.requests")), "retryhttp.requests against retryhttp_requests_total")

	// attempts{method,code}
	want = map[string]int64{}
	for k, v := range p {
		if strings.HasPrefix(k, "retryhttp_attempts_total{") {
			l := labels(k)
			switch l["code"] {
			case "error", "other":
				want["error.type=_OTHER,http.request.method="+l["method"]] += int64(v)
			default:
				want["http.request.method="+l["method"]+",http.response.status_code="+l["code"]] += int64(v)
			}
		}
	}
	require.Equal(t, nonZero(want), nonZero(sums(t, rm, "retryhttp.attempts")), "retryhttp.attempts against retryhttp_attempts_total")

	// retries{method,reason}
	want = map[string]int64{}
	for k, v := range p {
		if strings.HasPrefix(k, "retryhttp_retries_total{") {
			l := labels(k)
			want["http.request.method="+l["method"]+",retryhttp.reason="+l["reason"]] += int64(v)
		}
	}
	require.Equal(t, nonZero(want), nonZero(sums(t, rm, "retryhttp.retries")), "retryhttp.retries against retryhttp_retries_total")

	// budget refusals
	var refusals int64
	for k, v := range p {
		if strings.HasPrefix(k, "retryhttp_budget_refusals_total{") {
			refusals += int64(v)
		}
	}
	require.Equal(t, refusals, total(sums(t, rm, "retryhttp.budget.refusals")), "budget refusals")

	// held, paced, hedges, wins {method}
	for _, pair := range [][2]string{
		{"retryhttp_held_requests_total", "retryhttp.held_requests"},
		{"retryhttp_paced_requests_total", "retryhttp.paced_requests"},
		{"retryhttp_hedges_total", "retryhttp.hedges"},
		{"retryhttp_hedge_wins_total", "retryhttp.hedge.wins"},
	} {
		want = map[string]int64{}
		for k, v := range p {
			if strings.HasPrefix(k, pair[0]+"{") {
				want["http.request.method="+labels(k)["method"]] += int64(v)
			}
		}
		require.Equal(t, nonZero(want), nonZero(sums(t, rm, pair[1])), "%s against %s", pair[1], pair[0])
	}

	// delay{source}: counts and sums
	counts, hsums := hist(t, rm, "retryhttp.retry.delay")
	wantCounts, wantSums := map[string]uint64{}, map[string]float64{}
	for k, v := range p {
		if strings.HasPrefix(k, "retryhttp_retry_delay_seconds{") {
			base := strings.TrimSuffix(strings.TrimSuffix(k, "_count"), "_sum")
			key := "retryhttp.wait_source=" + labels(base)["source"]
			if strings.HasSuffix(k, "_count") {
				wantCounts[key] += uint64(v)
			} else {
				wantSums[key] += v
			}
		}
	}
	for k, v := range wantCounts {
		if v == 0 {
			delete(wantCounts, k)
			delete(wantSums, k)
		}
	}
	for k, v := range counts {
		if v == 0 {
			delete(counts, k)
			delete(hsums, k)
		}
	}
	require.Equal(t, wantCounts, counts, "retryhttp.retry.delay counts against retryhttp_retry_delay_seconds")
	for k, v := range wantSums {
		require.InDelta(t, v, hsums[k], 1e-6, "retry delay sum for %s (seconds)", k)
	}

	// pace delay{}: no attributes, as the series has no labels
	counts, hsums = hist(t, rm, "retryhttp.pace.delay")
	require.Equal(t, uint64(p["retryhttp_pace_delay_seconds{}_count"]), counts[""], "retryhttp.pace.delay count against retryhttp_pace_delay_seconds")
	require.InDelta(t, p["retryhttp_pace_delay_seconds{}_sum"], hsums[""], 1e-6, "pace delay sum (seconds)")
}

func nonZero(m map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// labels parses "name{k=v,k=v}".
func labels(key string) map[string]string {
	out := map[string]string{}
	i := strings.IndexByte(key, '{')
	body := strings.TrimSuffix(key[i+1:], "}")
	if body == "" {
		return out
	}
	for _, p := range strings.Split(body, ",") {
		kv := strings.SplitN(p, "=", 2)
		out[kv[0]] = kv[1]
	}
	return out
}

// events keeps what a recorder was handed.
type events struct {
	mu  sync.Mutex
	all []retryhttp.Event
}

func (e *events) record(ev retryhttp.Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

func (e *events) get() []retryhttp.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]retryhttp.Event(nil), e.all...)
}

func (e *events) kind(k retryhttp.EventKind) []retryhttp.Event {
	var out []retryhttp.Event
	for _, ev := range e.get() {
		if ev.Kind == k {
			out = append(out, ev)
		}
	}
	return out
}

// attempts keeps what an observer was handed (without the request and
// response, which must not be kept).
type observed struct {
	Number     int
	Code       int
	Err        error
	Hedge      bool
	Retry      bool
	Wait       time.Duration
	ServerWait bool
	Reason     string
}

type observer struct {
	mu  sync.Mutex
	all []observed
}

func (o *observer) observe(a retryhttp.Attempt) {
	ob := observed{Number: a.Number, Err: a.Err, Hedge: a.Hedge, Retry: a.Retry, Wait: a.Wait, ServerWait: a.ServerWait, Reason: a.Reason}
	if a.Response != nil {
		ob.Code = a.Response.StatusCode
	}
	o.mu.Lock()
	o.all = append(o.all, ob)
	o.mu.Unlock()
}

func (o *observer) get() []observed {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]observed(nil), o.all...)
}

// do sends one request and reads and closes the response.
func do(t *testing.T, rt http.RoundTripper, req *http.Request) (*http.Response, string, error) {
	t.Helper()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		require.Nil(t, resp, "a response with an error")
		return nil, "", err
	}
	require.NotNil(t, resp, "no response and no error")
	b, rerr := io.ReadAll(resp.Body)
	require.NoError(t, rerr)
	require.NoError(t, resp.Body.Close())
	return resp, string(b), nil
}

func get(t *testing.T, ctx context.Context, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	return req
}

// goroutines waits for the goroutine count to come back to at most n.
func requireGoroutinesBack(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var now int
	for time.Now().Before(deadline) {
		now = runtime.NumGoroutine()
		if now <= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	t.Fatalf("goroutines: %d before, %d after\n%s", n, now, buf)
}

// traceparent parses "00-<trace>-<span>-<flags>".
func parseTraceparent(t *testing.T, s string) (traceID, spanID, flags string) {
	t.Helper()
	p := strings.Split(s, "-")
	require.Len(t, p, 4, "traceparent %q", s)
	return p[1], p[2], p[3]
}

func fmtCounts(c []int64) string { return fmt.Sprint(c) }

func promAndMeter(t *testing.T) (*prometheus.Registry, *meter) {
	t.Helper()
	return prometheus.NewRegistry(), newMeter(t)
}

func promMetrics(t *testing.T, reg *prometheus.Registry) *retryhttp.Metrics {
	t.Helper()
	m, err := retryhttp.NewMetrics(reg)
	require.NoError(t, err)
	return m
}

// funcServer answers request n (1-based) with f.
type funcServer struct {
	*httptest.Server
	n     atomic.Int32
	conns atomic.Int32
	open  atomic.Int32
}

func newFuncServer(t *testing.T, f func(n int, w http.ResponseWriter, r *http.Request)) *funcServer {
	t.Helper()
	s := &funcServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f(int(s.n.Add(1)), w, r)
	}))
	s.Server.Config.ConnState = func(c net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.conns.Add(1)
			s.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.open.Add(-1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}
