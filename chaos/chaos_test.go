package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	defaultDuration = 15 * time.Second // SOAK=10m runs longer
	clients         = 24               // goroutines sharing one Transport
	maxAttempts     = 6
	requestTimeout  = 10 * time.Second // each request's context
	deadlineSlack   = 2 * time.Second  // how late after its deadline a request may return
	attemptTimeout  = time.Second      // ResponseHeaderTimeout: ends an attempt whose answer a toxic swallowed
	pooledShare     = 0.25             // requests sent over keep-alive connections; the rest dial anew for each attempt

	minSuccessRatio = 0.995    // of retryable requests
	minFaultRate    = 0.12     // the measured share of failed attempts must fall in
	maxFaultRate    = 0.25     // [min, max]: about 18% is the aim
	maxHeapInuse    = 48 << 20 // after GC, in a run of a minute or less
	maxLiveHeap     = 32 << 20 // after GC, allocated by anything but Toxiproxy, in any run
	goroutineSlack  = 2        // above the baseline, after shutdown
	fdSlack         = 2
	settleTimeout   = 10 * time.Second
)

// runDuration is how long clients send requests: 15 s, 5 s with -short, or
// the Go duration in $SOAK.
func runDuration(t *testing.T) time.Duration {
	if v := os.Getenv("SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "SOAK must be a Go duration such as 10m")
		require.Positive(t, d, "SOAK")
		return d
	}
	if testing.Short() {
		return 5 * time.Second
	}
	return defaultDuration
}

// kindStats counts the requests of one kind.
type kindStats struct {
	requests, ok, attempts int64
	maxAttempts            int32
	failures               map[string]int64
}

type stats struct {
	kinds       [numKinds]kindStats
	violations  []string
	nViolations int64
	failed      map[string]string // a failure of a retryable request in detail, by cause
	waitCancels int64             // requests whose context ended while retryhttp waited to retry
	maxLatency  time.Duration
	slow        int64 // requests that took more than 5 s
}

func newStats() *stats {
	s := &stats{failed: map[string]string{}}
	for k := range s.kinds {
		s.kinds[k].failures = map[string]int64{}
	}
	return s
}

func (s *stats) violation(v string) {
	s.nViolations++
	if len(s.violations) < 10 {
		s.violations = append(s.violations, v)
	}
}

func (s *stats) merge(o *stats) {
	for k := range s.kinds {
		a, b := &s.kinds[k], &o.kinds[k]
		a.requests += b.requests
		a.ok += b.ok
		a.attempts += b.attempts
		a.maxAttempts = max(a.maxAttempts, b.maxAttempts)
		for f, n := range b.failures {
			a.failures[f] += n
		}
	}
	for _, v := range o.violations {
		if len(s.violations) < 10 {
			s.violations = append(s.violations, v)
		}
	}
	for cause, f := range o.failed {
		if _, ok := s.failed[cause]; !ok {
			s.failed[cause] = f
		}
	}
	s.nViolations += o.nViolations
	s.waitCancels += o.waitCancels
	s.maxLatency = max(s.maxLatency, o.maxLatency)
	s.slow += o.slow
}

// TestChaos sends requests of every kind from many goroutines through one
// retryhttp Transport to an upstream behind Toxiproxy, and checks every
// request and, at the end, the whole run. See README.md.
func TestChaos(t *testing.T) {
	duration := runDuration(t)
	if deadline, ok := t.Deadline(); ok && time.Until(deadline) < duration+time.Minute {
		t.Fatalf("a run of %v needs a longer go test -timeout than this one (it ends in %v): add -timeout %v",
			duration, time.Until(deadline).Round(time.Second), (duration + 5*time.Minute).Round(time.Minute))
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("duration %v, %d clients, seed %d, MaxAttempts %d, budget off", duration, clients, seed, maxAttempts)

	warmUpNetwork(t)
	baseGoroutines, baseFDs := baseline()

	// The upstream, on loopback.
	up := newUpstream()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var upstreamConns atomic.Int64
	srv := &http.Server{
		Handler:           up,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // cut connections are the point here
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				upstreamConns.Add(1)
			}
		},
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var stopUpstream sync.Once
	shutdownUpstream := func() {
		stopUpstream.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				_ = srv.Close()
			}
			<-served
		})
	}
	t.Cleanup(shutdownUpstream)

	// Toxiproxy in front of it, in this process.
	proxyAddr, stop := startProxy(t, ln.Addr().String(), toxics)
	var stopProxy sync.Once
	shutdownProxy := func() { stopProxy.Do(stop) }
	t.Cleanup(shutdownProxy)

	// One Transport for every client. The budget is off (WithBudget(nil)):
	// with ~18% of attempts failing, a retry budget refuses retries on
	// purpose (it allows 0.2 retries per request plus 10/s), and this suite
	// checks the retry logic, not the budget.
	newBase := func(maxIdle int) *http.Transport {
		return &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConns:          max(maxIdle, 0),
			MaxIdleConnsPerHost:   maxIdle,
			IdleConnTimeout:       30 * time.Second,
			ResponseHeaderTimeout: attemptTimeout,
			DisableCompression:    true,
		}
	}
	// A negative MaxIdleConnsPerHost makes net/http close each connection
	// after its response, from the client side, without asking the server
	// to close it (as DisableKeepAlives would, with "Connection: close").
	counter := newAttemptCounter(newBase(-1), newBase(clients))
	reg := prometheus.NewRegistry()
	metrics, err := retryhttp.NewMetrics(reg)
	require.NoError(t, err)
	rt := retryhttp.New(counter,
		retryhttp.WithPolicy(retryhttp.Policy{
			MaxAttempts:   maxAttempts,
			BaseDelay:     5 * time.Millisecond,
			MaxDelay:      100 * time.Millisecond,
			MaxRetryAfter: 2 * time.Second,
		}),
		retryhttp.WithBudget(nil),
		retryhttp.WithMetrics(metrics))
	client := &http.Client{Transport: rt}
	t.Cleanup(client.CloseIdleConnections)

	// The run.
	baseURL := "http://" + proxyAddr
	bodies := &bodyTracker{}
	var nextID, started atomic.Uint64
	total := newStats()
	var totalMu sync.Mutex
	stopAt := time.Now().Add(duration)

	var maxHeap atomic.Uint64
	samplerDone := make(chan struct{})
	samplerStopped := make(chan struct{})
	go func() { // heap samples, and progress lines in a soak
		defer close(samplerStopped)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var ms runtime.MemStats
		for n := 1; ; n++ {
			select {
			case <-samplerDone:
				return
			case <-tick.C:
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > maxHeap.Load() {
				maxHeap.Store(ms.HeapInuse)
			}
			if duration >= time.Minute && n%30 == 0 {
				t.Logf("%4ds: %d requests, %d attempts, %.1f%% failed, heap in use %.1f MiB", n, started.Load(),
					counter.attempts.Load(), 100*float64(counter.faults.Load())/float64(max(counter.attempts.Load(), 1)),
					float64(ms.HeapInuse)/(1<<20))
			}
		}
	}()

	runStart := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(c)))
			local := newStats()
			defer func() {
				totalMu.Lock()
				total.merge(local)
				totalMu.Unlock()
			}()
			for time.Now().Before(stopAt) {
				started.Add(1)
				s := newSpec(r, nextID.Add(1))
				tr := &track{pooled: r.Float64() < pooledShare}
				ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), trackKey{}, tr), requestTimeout)
				req := s.request(ctx, r, baseURL, bodies)
				begin := time.Now()
				resp, err := client.Do(req)
				res := s.check(resp, err)
				if rerr := (*retryhttp.Error)(nil); errors.As(err, &rerr) && rerr.Waiting {
					local.waitCancels++
				}
				elapsed := time.Since(begin)
				cancel()

				ks := &local.kinds[s.kind]
				n := tr.attempts.Load()
				ks.requests++
				ks.attempts += int64(n)
				ks.maxAttempts = max(ks.maxAttempts, n)
				switch {
				case res.violation != "":
					local.violation(res.violation)
				case res.ok:
					ks.ok++
				default:
					ks.failures[res.failure]++
					if _, seen := local.failed[res.failure]; s.kind.retryable() && !seen {
						detail := res.failure
						if err != nil {
							detail = err.Error()
						}
						local.failed[res.failure] = fmt.Sprintf("request %d (%s, %d body bytes) after %d attempts and %v: %s",
							s.id, s.kind, len(s.body), n, elapsed.Round(time.Millisecond), detail)
					}
				}
				if n > maxAttempts {
					local.violation(fmt.Sprintf("request %d (%s) took %d attempts, more than MaxAttempts %d", s.id, s.kind, n, maxAttempts))
				}
				if elapsed > requestTimeout+deadlineSlack {
					local.violation(fmt.Sprintf("request %d (%s) returned after %v, its deadline was %v", s.id, s.kind, elapsed, requestTimeout))
				}
				local.maxLatency = max(local.maxLatency, elapsed)
				if elapsed > 5*time.Second {
					local.slow++
				}
			}
		})
	}
	wg.Wait()
	runTime := time.Since(runStart)
	close(samplerDone)
	<-samplerStopped

	// Shut everything down: idle connections, the proxy (and every
	// connection through it), the upstream.
	client.CloseIdleConnections()
	shutdownProxy()
	shutdownUpstream()

	// Leaks: goroutines and file descriptors back to the baseline, every
	// request body closed.
	goroutinesAfter, toxiproxyLeft, fdsAfter := settle(func(g, fd int) bool {
		return g <= baseGoroutines+goroutineSlack && (fd < 0 || fd <= baseFDs+fdSlack) &&
			bodies.closed.Load() == bodies.opened.Load()
	})
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	toxiproxyHeap, otherHeap := heapByOwner()

	// The summary.
	var requests, ok, retryable, retryableOK, attempts int64
	for k := range numKinds {
		ks := total.kinds[k]
		requests += ks.requests
		ok += ks.ok
		attempts += ks.attempts
		if k.retryable() {
			retryable += ks.requests
			retryableOK += ks.ok
		}
	}
	faultRate := float64(counter.faults.Load()) / float64(max(counter.attempts.Load(), 1))
	successRatio := float64(retryableOK) / float64(max(retryable, 1))
	dups, maxArrivals, unkeyedSeen := up.duplicatedPosts()

	t.Logf("requests %d in %v (%.0f/s), succeeded %d (%.2f%%); attempts %d (%.3f per request), upstream connections %d",
		requests, runTime.Round(time.Millisecond), float64(requests)/runTime.Seconds(), ok, pct(ok, requests),
		counter.attempts.Load(), float64(counter.attempts.Load())/float64(max(requests, 1)), upstreamConns.Load())
	t.Logf("fault rate %.2f%% of attempts (%d of %d); aimed at ~18%%: %.1f%% of new connections draw a fault toxic, the upstream answers %.1f%% of what reaches it with 503/429",
		100*faultRate, counter.faults.Load(), counter.attempts.Load(), 100*connFaultRate(), 100*up.faultRate)
	counter.mu.Lock()
	defer counter.mu.Unlock()
	t.Logf("attempt faults by cause: %s", formatCounts(counter.causes))
	for cause, sample := range sortedKeys(counter.samples) {
		t.Logf("  e.g. %s: %s", cause, sample)
	}
	t.Logf("success ratio of retryable requests (GET, PUT with GetBody or a body within the replay buffer, POST with key) %.3f%% (%d of %d; at least %.1f%% required)",
		100*successRatio, retryableOK, retryable, 100*minSuccessRatio)
	for cause, f := range sortedKeys(total.failed) {
		t.Logf("  a retryable request that failed with %s: %s", cause, f)
	}
	for k := range numKinds {
		ks := total.kinds[k]
		t.Logf("  %-18s %6d requests, %6.2f%% ok, %.3f attempts/request (max %d), failures: %s",
			k, ks.requests, pct(ks.ok, ks.requests), float64(ks.attempts)/float64(max(ks.requests, 1)), ks.maxAttempts, formatCounts(ks.failures))
	}
	t.Logf("upstream: %d arrivals, %d bodies read whole, %d cut off, %d hash mismatches, %d without id; injected %d x 503, %d x 429",
		up.arrivals.Load(), up.complete.Load(), up.truncated.Load(), up.hashMismatch.Load(), up.missingID.Load(),
		up.injected503.Load(), up.injected429.Load())
	t.Logf("POST without key: %d reached the upstream, %d more than once (most arrivals of one: %d)", unkeyedSeen, dups, maxArrivals)
	t.Logf("invariant violations %d; slowest request %v, %d over 5 s", total.nViolations, total.maxLatency.Round(time.Millisecond), total.slow)
	t.Logf("request bodies opened %d, closed %d, read after close %d", bodies.opened.Load(), bodies.closed.Load(), bodies.readAfterClose.Load())
	t.Logf("goroutines %d before, %d after (and %d parked in Toxiproxy's pipeline, not counted); open fds %d before, %d after",
		baseGoroutines, goroutinesAfter, toxiproxyLeft, baseFDs, fdsAfter)
	t.Logf("heap in use after GC %.1f MiB (peak sample during the run %.1f MiB); live heap per the heap profile: %.1f MiB allocated by Toxiproxy, %.1f MiB by everything else",
		mib(int64(ms.HeapInuse)), mib(int64(maxHeap.Load())), mib(toxiproxyHeap), mib(otherHeap))

	// The invariants.
	assert.Zero(t, total.nViolations, "invariant violations, first ones:\n%s", strings.Join(total.violations, "\n"))
	assert.Zero(t, up.hashMismatch.Load(), "request bodies that reached the upstream changed:\n%s", strings.Join(up.examples, "\n"))
	assert.Zero(t, up.missingID.Load(), "requests without id at the upstream")
	assert.Zero(t, dups, "POSTs without an idempotency key that reached the upstream more than once")
	assert.LessOrEqual(t, maxArrivals, int32(1))
	assert.Greater(t, retryable, int64(300), "too few requests for a success ratio to mean anything")
	retryableFailures := map[string]int64{}
	for k := range numKinds {
		if k.retryable() {
			for f, n := range total.kinds[k].failures {
				retryableFailures[f] += n
			}
		}
	}
	assert.GreaterOrEqual(t, successRatio, minSuccessRatio, "success ratio of retryable requests; their failures: %s",
		formatCounts(retryableFailures))
	assert.GreaterOrEqual(t, faultRate, minFaultRate, "fault rate: the toxics and the upstream did not fail enough attempts")
	assert.LessOrEqual(t, faultRate, maxFaultRate, "fault rate: the toxics and the upstream failed too many attempts")
	assert.Equal(t, bodies.opened.Load(), bodies.closed.Load(), "request bodies handed to the transport and never closed")

	// retryhttp's own metrics agree with what went through the wire.
	sums := gatherSums(t, reg)
	assert.Equal(t, float64(counter.attempts.Load()), sums["retryhttp_attempts_total"], "retryhttp_attempts_total")
	assert.Equal(t, float64(requests), sums["retryhttp_requests_total"], "retryhttp_requests_total")
	// Each retry is an attempt, except one whose wait the context ended.
	assert.Equal(t, float64(counter.attempts.Load()-requests+total.waitCancels), sums["retryhttp_retries_total"], "retryhttp_retries_total")

	assert.LessOrEqual(t, goroutinesAfter, baseGoroutines+goroutineSlack, "goroutines left after shutdown:\n%s", goroutineDump())
	if fdsAfter >= 0 {
		assert.LessOrEqual(t, fdsAfter, baseFDs+fdSlack, "file descriptors left after shutdown:\n%s", fdList())
	}
	// Toxiproxy's blocked goroutines keep their chunks for good, so over a
	// soak the heap grows with the faults it injected. The live heap that
	// anything else allocated (retryhttp, net/http, the upstream, this
	// test's bookkeeping) is bounded in every run; the whole heap in a
	// default-length run.
	assert.Less(t, otherHeap, int64(maxLiveHeap), "live heap after GC allocated by anything but Toxiproxy (heap profile)")
	if duration <= time.Minute {
		assert.Less(t, ms.HeapInuse, uint64(maxHeapInuse), "heap in use after GC")
	}
}

// gatherSums returns the sum of each metric family's counters.
func gatherSums(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	sums := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			sums[f.GetName()] += m.GetCounter().GetValue()
		}
	}
	return sums
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func pct(a, b int64) float64 { return 100 * float64(a) / float64(max(b, 1)) }

// formatCounts lists counts largest first: "EOF 12, status 503 7".
func formatCounts(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// sortedKeys iterates over m in key order.
func sortedKeys(m map[string]string) func(yield func(string, string) bool) {
	return func(yield func(string, string) bool) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !yield(k, m[k]) {
				return
			}
		}
	}
}
