package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
)

// The parts of OTLP/JSON (what the Collector's file exporter writes, one
// object per line) that the test reads.

type otlpLine struct {
	ResourceSpans   []resourceSpans   `json:"resourceSpans"`
	ResourceMetrics []resourceMetrics `json:"resourceMetrics"`
}

type resourceSpans struct {
	ScopeSpans []struct {
		Spans []otlpSpan `json:"spans"`
	} `json:"scopeSpans"`
}

type otlpSpan struct {
	TraceID      string      `json:"traceId"`
	SpanID       string      `json:"spanId"`
	ParentSpanID string      `json:"parentSpanId"`
	Name         string      `json:"name"`
	Kind         int         `json:"kind"`
	Start        string      `json:"startTimeUnixNano"`
	End          string      `json:"endTimeUnixNano"`
	Attributes   []otlpAttr  `json:"attributes"`
	Events       []otlpEvent `json:"events"`
}

type otlpEvent struct {
	Time       string     `json:"timeUnixNano"`
	Name       string     `json:"name"`
	Attributes []otlpAttr `json:"attributes"`
}

type otlpAttr struct {
	Key   string `json:"key"`
	Value struct {
		String *string   `json:"stringValue"`
		Int    *string   `json:"intValue"` // OTLP/JSON writes 64-bit integers as strings
		Double *float64  `json:"doubleValue"`
		Bool   *bool     `json:"boolValue"`
		Array  *struct{} `json:"arrayValue"`
	} `json:"value"`
}

type resourceMetrics struct {
	ScopeMetrics []struct {
		Scope struct {
			Name string `json:"name"`
		} `json:"scope"`
		Metrics []otlpMetric `json:"metrics"`
	} `json:"scopeMetrics"`
}

type otlpMetric struct {
	Name string `json:"name"`
	Unit string `json:"unit"`
	Sum  *struct {
		DataPoints []struct {
			Attributes []otlpAttr `json:"attributes"`
			AsInt      string     `json:"asInt"`
		} `json:"dataPoints"`
		IsMonotonic bool `json:"isMonotonic"`
	} `json:"sum"`
	Histogram *struct {
		DataPoints []struct {
			Attributes []otlpAttr `json:"attributes"`
			Count      string     `json:"count"`
		} `json:"dataPoints"`
	} `json:"histogram"`
}

// Span is a span as the test and the SVG see it.
type Span struct {
	TraceID, SpanID, ParentID string
	Name                      string
	Client                    bool // kind CLIENT
	Start, End                time.Time
	Attrs                     map[string]string
	Events                    []Event
}

// Event is a span event.
type Event struct {
	Time  time.Time
	Name  string
	Attrs map[string]string
}

// Metric is a point of a metric: its name, unit and attributes, and its
// value (a sum, or a histogram's count).
type Metric struct {
	Scope, Name, Unit string
	Attrs             map[string]string
	Value             int64
}

// readOTLP reads the spans and metric points of every line of r.
func readOTLP(r io.Reader) ([]Span, []Metric, error) {
	var spans []Span
	var metrics []Metric
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var line otlpLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return nil, nil, fmt.Errorf("a line of the Collector's file is not OTLP/JSON: %w", err)
		}
		for _, rs := range line.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					spans = append(spans, Span{
						TraceID: s.TraceID, SpanID: s.SpanID, ParentID: s.ParentSpanID,
						Name: s.Name, Client: s.Kind == 3,
						Start: unixNano(s.Start), End: unixNano(s.End),
						Attrs: attrs(s.Attributes), Events: events(s.Events),
					})
				}
			}
		}
		for _, rm := range line.ResourceMetrics {
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					switch {
					case m.Sum != nil:
						for _, p := range m.Sum.DataPoints {
							v, _ := strconv.ParseInt(p.AsInt, 10, 64)
							metrics = append(metrics, Metric{Scope: sm.Scope.Name, Name: m.Name, Unit: m.Unit, Attrs: attrs(p.Attributes), Value: v})
						}
					case m.Histogram != nil:
						for _, p := range m.Histogram.DataPoints {
							v, _ := strconv.ParseInt(p.Count, 10, 64)
							metrics = append(metrics, Metric{Scope: sm.Scope.Name, Name: m.Name, Unit: m.Unit, Attrs: attrs(p.Attributes), Value: v})
						}
					}
				}
			}
		}
	}
	return spans, metrics, sc.Err()
}

func unixNano(s string) time.Time {
	n, _ := strconv.ParseInt(s, 10, 64)
	return time.Unix(0, n)
}

func attrs(in []otlpAttr) map[string]string {
	out := make(map[string]string, len(in))
	for _, a := range in {
		v := a.Value
		switch {
		case v.String != nil:
			out[a.Key] = *v.String
		case v.Int != nil:
			out[a.Key] = *v.Int
		case v.Double != nil:
			out[a.Key] = strconv.FormatFloat(*v.Double, 'g', -1, 64)
		case v.Bool != nil:
			out[a.Key] = strconv.FormatBool(*v.Bool)
		}
	}
	return out
}

func events(in []otlpEvent) []Event {
	var out []Event
	for _, e := range in {
		out = append(out, Event{Time: unixNano(e.Time), Name: e.Name, Attrs: attrs(e.Attributes)})
	}
	return out
}
