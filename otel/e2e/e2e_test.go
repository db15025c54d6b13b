package e2e

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	retryhttpotel "github.com/retryhttp/retryhttp/otel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// collector is a running OpenTelemetry Collector that receives OTLP over
// HTTP on 127.0.0.1 and writes what it gets to files.
type collector struct {
	endpoint string // host:port of its OTLP/HTTP receiver
	traces   string // the file exporter's output for traces
	metrics  string // and for metrics
}

// startCollector starts the Collector binary at bin with a configuration
// of its own, waits until it listens, and stops it when the test ends.
func startCollector(t *testing.T, bin string) *collector {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	endpoint := ln.Addr().String()
	ln.Close() // free for the Collector: a race with other processes is unlikely on loopback
	c := &collector{endpoint: endpoint, traces: filepath.Join(dir, "traces.json"), metrics: filepath.Join(dir, "metrics.json")}
	config := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      http:
        endpoint: %s
exporters:
  file/traces:
    path: %s
    flush_interval: 100ms
  file/metrics:
    path: %s
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file/traces]
    metrics:
      receivers: [otlp]
      exporters: [file/metrics]
`, endpoint, c.traces, c.metrics)
	configPath := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(configPath, []byte(config), 0o600))

	var logs bytes.Buffer
	cmd := exec.Command(bin, "--config", configPath)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("collector output:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", endpoint, time.Second)
		if err == nil {
			conn.Close()
			return c
		}
		select {
		case err := <-exited:
			t.Fatalf("the collector exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector did not listen on %s within 30 s\n%s", endpoint, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// read waits until the file at path holds what done accepts, and returns
// its spans and metrics.
func read(t *testing.T, path string, done func([]Span, []Metric) bool) ([]Span, []Metric) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, err := os.ReadFile(path)
		if err == nil {
			// The Collector may be writing a line: read the complete ones.
			data = data[:bytes.LastIndexByte(data, '\n')+1]
			spans, metrics, err := readOTLP(bytes.NewReader(data))
			require.NoError(t, err)
			if done(spans, metrics) {
				return spans, metrics
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the collector's %s did not get what was sent within 20 s", filepath.Base(path))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The shape, end to end: a request that takes 3 attempts (503,
// 503, 200) under a caller's span, exported over OTLP to a real
// Collector, reads back as exactly 3 CLIENT spans, children of the caller's
// span, with http.request.resend_count absent, 1 and 2, otelhttp's
// attributes, each attempt's own traceparent in one trace, and 2 retry
// events on the caller's span; the metrics arrive under their names.
func TestTraceAndMetricsThroughACollector(t *testing.T) {
	bin := os.Getenv("RETRYHTTP_OTELCOL")
	if bin == "" {
		t.Skip("RETRYHTTP_OTELCOL is not set: run otel/e2e.sh, which builds the Collector")
	}
	col := startCollector(t, bin)
	ctx := context.Background()

	res := resource.NewSchemaless(semconv.ServiceName("retryhttp-e2e"))
	spanExporter, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(col.endpoint), otlptracehttp.WithInsecure())
	require.NoError(t, err)
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(spanExporter), sdktrace.WithResource(res))
	metricExporter, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpoint(col.endpoint), otlpmetrichttp.WithInsecure())
	require.NoError(t, err)
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(metricExporter)), sdkmetric.WithResource(res))

	var n atomic.Int32
	var mu sync.Mutex
	var traceparents []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		traceparents = append(traceparents, r.Header.Get("Traceparent"))
		mu.Unlock()
		if n.Add(1) <= 2 {
			time.Sleep(5 * time.Millisecond) // a failing server that takes its time
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		time.Sleep(3 * time.Millisecond)
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()

	metrics, err := retryhttpotel.NewMetrics(mp)
	require.NoError(t, err)
	rt := retryhttp.New(
		retryhttpotel.NewBase(nil, otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(propagation.TraceContext{})),
		retryhttpotel.WithEvents(), metrics,
		retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: 20 * time.Millisecond, Jitter: retryhttp.EqualJitter}))
	callerCtx, caller := tp.Tracer("checkout").Start(ctx, "GET /checkout")
	req, err := http.NewRequestWithContext(callerCtx, http.MethodGet, srv.URL+"/inventory", nil)
	require.NoError(t, err)
	resp, err := rt.RoundTrip(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	caller.End()
	require.NoError(t, tp.ForceFlush(ctx))
	require.NoError(t, mp.ForceFlush(ctx))
	require.NoError(t, tp.Shutdown(ctx))
	require.NoError(t, mp.Shutdown(ctx))

	traceID := caller.SpanContext().TraceID().String()
	spans, _ := read(t, col.traces, func(spans []Span, _ []Metric) bool {
		count := 0
		for _, s := range spans {
			if s.TraceID == traceID {
				count++
			}
		}
		return count >= 4
	})
	var root Span
	var attempts []Span
	for _, s := range spans {
		if s.TraceID != traceID {
			continue
		}
		if s.Client {
			attempts = append(attempts, s)
		} else {
			root = s
		}
	}
	require.Equal(t, caller.SpanContext().SpanID().String(), root.SpanID, "the caller's span arrived")
	require.Len(t, attempts, 3, "exactly one CLIENT span per attempt")
	sortByStart(attempts)
	mu.Lock()
	require.Len(t, traceparents, 3)
	for i, s := range attempts {
		assert.Equal(t, root.SpanID, s.ParentID, "attempt %d is a child of the caller's span", i+1)
		count, ok := s.Attrs["http.request.resend_count"]
		if i == 0 {
			assert.False(t, ok, "no resend count on the first attempt")
		} else {
			assert.Equal(t, fmt.Sprint(i), count, "attempt %d", i+1)
		}
		assert.Equal(t, "GET", s.Attrs["http.request.method"])
		assert.Equal(t, []string{"503", "503", "200"}[i], s.Attrs["http.response.status_code"])
		assert.Equal(t, srv.URL+"/inventory", s.Attrs["url.full"])
		assert.Equal(t, "127.0.0.1", s.Attrs["server.address"])
		assert.Equal(t, "00-"+traceID+"-"+s.SpanID+"-01", traceparents[i], "the traceparent of attempt %d names its span", i+1)
	}
	mu.Unlock()
	var retries []Event
	for _, e := range root.Events {
		if e.Name == retryhttpotel.EventRetry {
			retries = append(retries, e)
		}
	}
	require.Len(t, retries, 2, "two retry events on the caller's span")
	for i, e := range retries {
		assert.Equal(t, fmt.Sprint(i+1), e.Attrs["retryhttp.attempt"])
		assert.Equal(t, "503", e.Attrs["retryhttp.reason"])
		assert.NotEmpty(t, e.Attrs["retryhttp.wait"])
	}

	_, points := read(t, col.metrics, func(_ []Span, m []Metric) bool { return len(m) > 0 })
	// The export is cumulative, and flushed more than once: each series'
	// last point holds its total.
	last := map[string]Metric{}
	for _, p := range points {
		if p.Scope == retryhttpotel.ScopeName {
			last[p.Name+fmt.Sprint(p.Attrs)] = p
		}
	}
	sums := map[string]int64{}
	units := map[string]string{}
	for _, p := range last {
		sums[p.Name] += p.Value
		units[p.Name] = p.Unit
	}
	assert.Equal(t, int64(1), sums["retryhttp.requests"])
	assert.Equal(t, int64(3), sums["retryhttp.attempts"])
	assert.Equal(t, int64(2), sums["retryhttp.retries"])
	assert.Equal(t, int64(2), sums["retryhttp.retry.delay"], "two waits in the histogram")
	assert.Equal(t, "s", units["retryhttp.retry.delay"])
	assert.Equal(t, "{retry}", units["retryhttp.retries"])

	// The picture of this trace for the README.
	var svg bytes.Buffer
	require.NoError(t, WriteSVG(&svg, append([]Span{root}, attempts...)))
	require.NoError(t, xml.Unmarshal(svg.Bytes(), new(struct{})), "the SVG is well-formed XML")
	if out := os.Getenv("RETRYHTTP_TRACE_SVG"); out != "" {
		require.NoError(t, os.WriteFile(out, svg.Bytes(), 0o644))
		t.Logf("wrote %s", out)
	}
}

func sortByStart(spans []Span) {
	for i := 1; i < len(spans); i++ {
		for j := i; j > 0 && spans[j].Start.Before(spans[j-1].Start); j-- {
			spans[j], spans[j-1] = spans[j-1], spans[j]
		}
	}
}

// The drawing, from spans made up here: every span has its row, in tree
// order, and a trace it cannot draw is an error.
func TestWriteSVG(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	root := Span{TraceID: "t", SpanID: "r", Name: "GET /checkout", Start: t0, End: t0.Add(60 * time.Millisecond),
		Events: []Event{{Time: t0.Add(10 * time.Millisecond), Name: "retryhttp.retry", Attrs: map[string]string{"retryhttp.reason": "503", "retryhttp.wait": "0.02"}}}}
	a1 := Span{TraceID: "t", SpanID: "a", ParentID: "r", Name: "GET", Client: true, Start: t0.Add(time.Millisecond), End: t0.Add(9 * time.Millisecond),
		Attrs: map[string]string{"http.response.status_code": "503"}}
	a2 := Span{TraceID: "t", SpanID: "b", ParentID: "r", Name: "GET", Client: true, Start: t0.Add(30 * time.Millisecond), End: t0.Add(40 * time.Millisecond),
		Attrs: map[string]string{"http.response.status_code": "200", "http.request.resend_count": "1"}}
	var b bytes.Buffer
	require.NoError(t, WriteSVG(&b, []Span{a2, root, a1}))
	svg := b.String()
	require.NoError(t, xml.Unmarshal(b.Bytes(), new(struct{})))
	first, second := strings.Index(svg, "GET 503"), strings.Index(svg, "GET 200   resend_count=1")
	assert.True(t, first > 0 && second > first, "the attempts in the order they started")
	assert.Contains(t, svg, "retryhttp.retry (503, waited 20.0 ms) at 10.0 ms")
	assert.Contains(t, svg, "One request, 2 attempts")

	require.Error(t, WriteSVG(&b, []Span{a1}), "no root")
	require.Error(t, WriteSVG(&b, []Span{root, root}), "two roots")
	orphan := a1
	orphan.ParentID = "x"
	require.Error(t, WriteSVG(&b, []Span{root, orphan}), "a parent that is not there")
}
