package retryhttp

import (
	"context"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// eventLog keeps the Events a recorder was given.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) record(e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) all() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}

// series returns what reg holds, as "name{label=value,...}" → value (a
// histogram's sample count, with its sum under "name_sum{...}"), the
// budget's gauge left out.
func series(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() == "retryhttp_budget_retries_available" {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.GetCounter() != nil:
				out[f.GetName()+key] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				out[f.GetName()+key] = float64(m.GetHistogram().GetSampleCount())
				out[f.GetName()+"_sum"+key] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// seriesOf counts events the way Metrics counts them, keyed as series does.
func seriesOf(events []Event) map[string]float64 {
	out := map[string]float64{}
	key := func(name string, labels ...string) string {
		var pairs []string
		for i := 0; i < len(labels); i += 2 {
			pairs = append(pairs, labels[i]+"="+labels[i+1])
		}
		sort.Strings(pairs)
		return name + "{" + strings.Join(pairs, ",") + "}"
	}
	for _, e := range events {
		switch e.Kind {
		case EventRequest:
			out[key("retryhttp_requests_total", "method", e.Method, "outcome", e.Outcome)]++
		case EventAttempt:
			code := "error"
			switch {
			case e.Code >= 100 && e.Code <= 599:
				code = strconv.Itoa(e.Code)
			case e.Code != 0:
				code = "other"
			}
			out[key("retryhttp_attempts_total", "method", e.Method, "code", code)]++
		case EventRetry:
			out[key("retryhttp_retries_total", "method", e.Method, "reason", e.Reason)]++
			source := "backoff"
			if e.ServerWait {
				source = "retry_after"
			}
			out[key("retryhttp_retry_delay_seconds", "source", source)]++
			out[key("retryhttp_retry_delay_seconds_sum", "source", source)] += e.Wait.Seconds()
		case EventBudgetRefusal:
			out[key("retryhttp_budget_refusals_total")]++
		case EventHeld:
			out[key("retryhttp_held_requests_total", "method", e.Method)]++
		case EventHedge:
			out[key("retryhttp_hedges_total", "method", e.Method)]++
		case EventHedgeWon:
			out[key("retryhttp_hedge_wins_total", "method", e.Method)]++
		case EventPaced:
			out[key("retryhttp_paced_requests_total", "method", e.Method)]++
			out[key("retryhttp_pace_delay_seconds")]++
			out[key("retryhttp_pace_delay_seconds_sum")] += e.Wait.Seconds()
		}
	}
	return out
}

type cancelKey struct{}

// The Events a recorder gets are the Metrics' counts, one for one: every
// kind of Event, from every path a request can take (retries, give-ups,
// a wait canceled, the budget refusing, a host held, a request throttled,
// hedges), adds up to the same series.
func TestRecorderSeesWhatMetricsCount(t *testing.T) {
	var flaky, slow atomic.Int32
	up := newUpstream(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/flaky": // 503, 503, 200, and again
			if flaky.Add(1)%3 != 0 {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		case "/retry-after":
			if r.Header.Get("X-Retried") == "" && r.URL.RawQuery == "" {
				w.Header().Set("Retry-After", "2")
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/odd":
			w.WriteHeader(299)
		case "/spent": // spent for 5 s
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusTooManyRequests)
		case "/quota": // spent for a minute
			w.Header().Set("Retry-After", "60")
			w.WriteHeader(http.StatusTooManyRequests)
		case "/slow": // every other first copy is slow
			if slow.Add(1)%2 == 1 {
				select {
				case <-r.Context().Done():
				case <-time.After(2 * time.Second):
				}
			}
		}
		_, _ = io.WriteString(w, "ok")
	})
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	var log eventLog
	// Two Transports count into the same Metrics and recorder: one without
	// a budget, one whose budget soon refuses.
	tr, clock := newTestTransport(t, WithMetrics(m), WithRecorder(log.record), WithBudget(nil),
		WithPolicy(Policy{MaxAttempts: 3, MaxRetryAfter: 10 * time.Second}),
		WithHedging(Hedging{Delay: 30 * time.Millisecond}))
	// The wait of a request marked with cancelKey is canceled.
	tr.sleep = func(ctx context.Context, d time.Duration) error {
		if cancel, ok := ctx.Value(cancelKey{}).(context.CancelFunc); ok {
			cancel()
		}
		return clock.sleep(ctx, d)
	}
	budget, err := NewBudget(BudgetConfig{Ratio: 0.01, MinPerSecond: 0.01, Window: time.Second})
	require.NoError(t, err)
	tight, _ := newTestTransport(t, WithMetrics(m), WithRecorder(log.record), WithBudget(budget))
	send := func(tr *Transport, ctx context.Context, method, path string) {
		req, err := http.NewRequestWithContext(ctx, method, up.URL+path, nil)
		require.NoError(t, err)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	bg := context.Background()
	for range 3 {
		send(tr, bg, http.MethodGet, "/flaky")
	}
	send(tr, bg, http.MethodGet, "/retry-after")
	send(tr, bg, http.MethodPost, "/down")
	send(tr, bg, http.MethodDelete, "/odd")
	canceled, cancel := context.WithCancel(bg)
	defer cancel()
	send(tr, context.WithValue(canceled, cancelKey{}, cancel), http.MethodGet, "/down")
	for range 4 {
		send(tr, bg, http.MethodGet, "/slow")
	}
	for range 20 { // more than the budget pays for
		send(tight, bg, http.MethodPut, "/down")
	}
	send(tr, ContextWithPolicy(bg, Policy{MaxAttempts: 1}), http.MethodGet, "/spent") // holds the host for 5 s
	send(tr, bg, http.MethodGet, "/ok")                                               // held, then sent
	send(tr, bg, http.MethodGet, "/quota")                                            // holds the host past MaxRetryAfter
	send(tr, ContextWithoutRetries(bg), http.MethodGet, "/flaky")                     // not sent: throttled

	events := log.all()
	kinds := map[EventKind]int{}
	reasons := map[string]int{}
	for _, e := range events {
		kinds[e.Kind]++
		assert.NotNil(t, e.Context, "%v has the caller's context", e.Kind)
		if e.Kind == EventRequest {
			reasons[e.Reason]++
		}
	}
	for k := EventRequest; k <= EventHedgeWon; k++ {
		assert.NotZero(t, kinds[k], "no %v event: the test misses a path", k)
	}
	assert.NotZero(t, reasons[ReasonCanceled], "a wait was canceled")
	assert.NotZero(t, reasons[ReasonMethod], "a POST gave up")
	assert.NotZero(t, reasons[ReasonThrottled], "a request was not sent")
	assert.NotZero(t, reasons[ReasonBudget], "the budget refused")

	want := series(t, reg)
	got := seriesOf(events)
	for k, v := range want {
		if strings.Contains(k, "_sum{") {
			assert.InDelta(t, v, got[k], 1e-9, k)
			continue
		}
		assert.Equal(t, v, got[k], k)
	}
	for k := range got {
		_, ok := want[k]
		assert.True(t, ok, "the recorder saw %s, which Metrics did not count", k)
	}
}

// Events are built only when a recorder wants them, and an Event costs no
// allocation: a RoundTrip with a recorder pays only for the connection
// watch that counts net/http's transparent retries (2 allocations: see
// resend.go), as with Metrics.
func TestRecorderAllocatesNothing(t *testing.T) {
	var n atomic.Int32
	base := staticRT{&http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}}
	tr := New(base, WithRecorder(func(Event) { n.Add(1) }))
	req := mustRequest(t, http.MethodGet, "http://example.invalid/", nil)
	allocs := allocsPerRun(t, 100, func() {
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
	})
	assert.Equal(t, 2.0, allocs)
	assert.Equal(t, int32(2*101), n.Load(), "an attempt and a request per RoundTrip")
}

func TestEventKindNames(t *testing.T) {
	assert.Equal(t, "request", EventRequest.String())
	assert.Equal(t, "hedge_won", EventHedgeWon.String())
	assert.Equal(t, "EventKind(0)", EventKind(0).String())
	assert.Equal(t, "EventKind(99)", EventKind(99).String())
}
