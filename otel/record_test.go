package retryhttpotel

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// eventKinds returns every kind of retryhttp Event, read from their names:
// a kind added to the library is here without this test changing.
func eventKinds() []retryhttp.EventKind {
	var out []retryhttp.EventKind
	for k := retryhttp.EventKind(1); !strings.HasPrefix(k.String(), "EventKind("); k++ {
		out = append(out, k)
	}
	return out
}

// anEvent returns an Event of kind k with every field the recorder reads.
func anEvent(k retryhttp.EventKind) retryhttp.Event {
	return retryhttp.Event{Kind: k, Context: context.Background(), Method: "GET", Code: 503,
		Outcome: "exhausted", Reason: "503", Attempt: 1, Wait: 20 * time.Millisecond}
}

// measurements returns, by instrument name, how many measurements reader
// holds: a counter's sum, a histogram's count.
func measurements(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[m.Name] += int64(p.Count)
				}
			default:
				t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return out
}

// Every kind of Event is recorded in some instrument, and every instrument
// records some kind: a kind the recorder does not know, or an instrument
// nothing feeds, fails here.
func TestEveryEventKindHasAnInstrument(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	r, err := newRecorder(mp)
	require.NoError(t, err)
	fed := map[string]bool{}
	before := measurements(t, reader)
	for _, k := range eventKinds() {
		r.record(anEvent(k))
		after := measurements(t, reader)
		var grew []string
		for name, n := range after {
			if n != before[name] {
				grew = append(grew, name)
				fed[name] = true
			}
		}
		assert.NotEmpty(t, grew, "an Event %v is recorded nowhere", k)
		before = after
	}
	for _, name := range []string{MetricRequests, MetricAttempts, MetricRetries, MetricRetryDelay, MetricBudgetRefusals,
		MetricHeld, MetricPaced, MetricPaceDelay, MetricHedges, MetricHedgeWins, MetricTransparentRetries} {
		assert.True(t, fed[name], "no kind of Event feeds %s", name)
	}
	assert.Len(t, fed, 11, "instruments fed: %v", fed)
}

// Recording an Event allocates nothing once its attribute set is made (the
// first Event of each method and label makes it): the paced path, taken by
// every request to a host whose adaptive rate is awake, included. Under
// -race the counts are not stable: test.sh counts them without it.
func TestRecordingAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not stable under -race; test.sh counts them without it")
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	r, err := newRecorder(mp)
	require.NoError(t, err)
	for _, k := range eventKinds() {
		e := anEvent(k)
		r.record(e)
		assert.Zero(t, testing.AllocsPerRun(100, func() { r.record(e) }), "an Event %v", k)
	}
}
