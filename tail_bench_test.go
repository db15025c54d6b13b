package retryhttp

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The shape of "The Tail at Scale" (Dean and Barroso, CACM 2013) on
// loopback: attempts take about 2 ms, but one in each 100, at a random
// position, takes 300 ms.
const (
	tailFast    = 2 * time.Millisecond
	tailSlow    = 300 * time.Millisecond
	tailBlock   = 100
	tailClients = 20
	tailGETs    = 3000
)

// tailServer answers with that latency distribution. It knows each logical
// request by its X-Request-Id, which every copy of it carries, and counts
// the slow copies that ran to their end although their request had been
// answered already: a hedge that won must cancel them.
type tailServer struct {
	*httptest.Server
	arrived atomic.Int64

	mu       sync.Mutex
	slowAt   int             // the position of the slow one in the current block
	answered map[string]bool // requests a copy has answered
	late     int             // slow copies that ran to their end after that
}

func newTailServer(tb testing.TB) *tailServer {
	s := &tailServer{answered: map[string]bool{}, slowAt: rand.IntN(tailBlock)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.Close)
	return s
}

func (s *tailServer) serve(w http.ResponseWriter, r *http.Request) {
	n := int(s.arrived.Add(1) - 1)
	s.mu.Lock()
	if n%tailBlock == 0 && n > 0 {
		s.slowAt = rand.IntN(tailBlock)
	}
	slow := n%tailBlock == s.slowAt
	s.mu.Unlock()
	d := tailFast
	if slow {
		d = tailSlow
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	id := r.Header.Get("X-Request-Id")
	s.mu.Lock()
	if slow && s.answered[id] {
		s.late++
	}
	s.answered[id] = true
	s.mu.Unlock()
	_, _ = io.WriteString(w, "ok")
}

// tailRun is what a run measured.
type tailRun struct {
	p50, p99, p999 time.Duration
	extra          float64 // attempts beyond one per request, as a share of the requests
	late           int     // slow copies that ran to their end after their request was answered
	failed         int
}

// runTail sends tailGETs GETs from tailClients goroutines through rt.
func runTail(tb testing.TB, s *tailServer, rt http.RoundTripper) tailRun {
	var mu sync.Mutex
	var took []time.Duration
	var failed atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range tailClients {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > tailGETs {
					return
				}
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, s.URL, nil)
				req.Header.Set("X-Request-Id", strconv.FormatInt(i, 10))
				start := time.Now()
				resp, err := rt.RoundTrip(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				d := time.Since(start)
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
				mu.Lock()
				took = append(took, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(took)
	at := func(q float64) time.Duration { return took[min(len(took)-1, int(q*float64(len(took))))] }
	s.mu.Lock()
	late := s.late
	s.mu.Unlock()
	return tailRun{
		p50: at(0.50), p99: at(0.99), p999: at(0.999),
		extra:  float64(s.arrived.Load()-tailGETs) / tailGETs,
		late:   late,
		failed: int(failed.Load()),
	}
}

// tailConfigs are the rows of the benchmark.
var tailConfigs = []struct {
	name string
	opts []Option
}{
	{"hedging=off", nil},
	{"hedging=20ms", []Option{WithHedging(Hedging{Delay: 20 * time.Millisecond})}},
	{"hedging=adaptive", []Option{WithHedging(Hedging{})}},
}

// BenchmarkTail reproduces the shape of "The Tail at Scale" on loopback
// (attempts take 2 ms, one in each 100 takes 300 ms; 20 goroutines send
// 3000 GETs) without hedging, with a 20 ms hedging delay, and with the
// adaptive delay, and reports the p50, p99 and p99.9 of the requests and
// the extra attempts hedging cost, and the slow copies that ran to their
// end although their request had been answered (a hedge that won cancels
// its slow copy, unless the machine is so busy that the cancellation comes
// after the copy's 300 ms). These are figures of the machine as much as of
// the library, so they are reported, never asserted: what hedging must do
// whatever the machine's speed is pinned by TestAHedgeAnswersEveryHungFirstCopy.
// It runs in real time (about 1 s a row):
//
//	go test -run '^$' -bench Tail -benchtime 1x .
func BenchmarkTail(b *testing.B) {
	for _, c := range tailConfigs {
		b.Run(c.name, func(b *testing.B) {
			var r tailRun
			for b.Loop() {
				s := newTailServer(b)
				tr := New(nil, append(c.opts, WithBudget(nil))...)
				r = runTail(b, s, tr)
				tr.CloseIdleConnections()
				if r.failed > 0 {
					b.Fatalf("%d of %d requests failed", r.failed, tailGETs)
				}
			}
			b.ReportMetric(float64(r.p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(r.p99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(r.p999.Microseconds())/1000, "p99.9-ms")
			b.ReportMetric(100*r.extra, "%extra")
			b.ReportMetric(float64(r.late), "late-copies")
		})
	}
}
