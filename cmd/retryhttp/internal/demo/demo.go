package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/cmd/retryhttp/internal/cli"
)

// demoConfig holds the demo's flags.
type demoConfig struct {
	duration    time.Duration
	clients     int
	pause       time.Duration
	metricsAddr string
	upstream    string
	faults      faults
	policy      retryhttp.Policy
	progress    time.Duration // 0: by whether stdout is a terminal
	budget      bool
	hedge       string // "", a delay, or "adaptive"
	tail        bool   // the hedging comparison against a slow tail instead
	outage      bool   // embedded upstream: steady failures, an outage, recovery
}

func Run(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("demo", "[flags]", stderr)
	var c demoConfig
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "how long to run (Ctrl-C stops earlier)")
	fs.IntVar(&c.clients, "clients", 8, "concurrent clients")
	fs.DurationVar(&c.pause, "pause", 20*time.Millisecond, "pause between one client's requests")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "127.0.0.1:9464", "serve Prometheus metrics on this address at /metrics ('' turns it off)")
	fs.StringVar(&c.upstream, "upstream", "", "send requests to this URL instead of the embedded flaky upstream")
	fs.Float64Var(&c.faults.errorRate, "error-rate", 0.1, "embedded upstream: share of requests answered 503")
	fs.Float64Var(&c.faults.throttleRate, "throttle-rate", 0, "embedded upstream: share answered 429 with Retry-After, for which the Transport holds every request to the upstream")
	fs.DurationVar(&c.faults.retryAfter, "retry-after", time.Second, "embedded upstream: the Retry-After of its 429s (whole seconds)")
	fs.Float64Var(&c.faults.resetRate, "reset-rate", 0.02, "embedded upstream: share of connections reset before the response")
	fs.DurationVar(&c.faults.latency, "latency", 5*time.Millisecond, "embedded upstream: time to answer")
	fs.IntVar(&c.faults.quota, "quota", 0, "embedded upstream: requests allowed per -quota-window, announced with RateLimit headers; over it, 429 (0: no quota)")
	fs.DurationVar(&c.faults.quotaWindow, "quota-window", time.Second, "embedded upstream: the window of -quota (whole seconds)")
	fs.DurationVar(&c.progress, "progress", 0, "progress line interval (default: 250ms on a terminal, 5s otherwise)")
	fs.BoolVar(&c.budget, "budget", true, "limit retries with the default retry budget; -budget=false shows a retry storm")
	fs.Float64Var(&c.faults.slowRate, "slow-rate", 0, "embedded upstream: share of requests answered after -slow-latency instead of -latency (a slow tail)")
	fs.DurationVar(&c.faults.slowLatency, "slow-latency", 300*time.Millisecond, "embedded upstream: the latency of the slow tail")
	fs.StringVar(&c.hedge, "hedge", "", "hedge slow requests: a delay such as 20ms, or 'adaptive' (the 95th percentile of the latencies seen)")
	fs.BoolVar(&c.tail, "tail", false, "show what hedging does to the tail: p50, p99 and p99.9 of the requests without hedging, then with -hedge (default adaptive), against an upstream where 2% of requests take 300 ms (-slow-rate, -slow-latency)")
	fs.BoolVar(&c.outage, "outage", true, "embedded upstream: run in three phases, the failures above (40% of -duration), an outage in which every request gets 503 (30%), and recovery (30%); -outage=false keeps the failures above throughout. With -upstream there are no phases")
	var pf cli.PolicyFlags
	pf.Register(fs)
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	if fs.NArg() != 0 {
		return cli.UsageError(fs, "unexpected arguments: %v", fs.Args())
	}
	var err error
	if c.policy, err = pf.Policy(); err != nil {
		return cli.UsageError(fs, "%v", err)
	}
	if err := c.faults.validate(); err != nil {
		return cli.UsageError(fs, "%v", err)
	}
	switch {
	case c.duration <= 0:
		return cli.UsageError(fs, "-duration must be positive")
	case c.clients < 1 || c.clients > 10000:
		return cli.UsageError(fs, "-clients must be between 1 and 10000")
	case c.pause < 0 || c.progress < 0:
		return cli.UsageError(fs, "-pause and -progress must not be negative")
	}
	if _, err := parseHedge(c.hedge); err != nil {
		return cli.UsageError(fs, "%v", err)
	}
	if c.upstream != "" {
		if !cli.IsHTTPURL(c.upstream) {
			return cli.UsageError(fs, "-upstream %q is not an http or https URL", c.upstream)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := demo(ctx, c, stdout); err != nil {
		fmt.Fprintln(stderr, "retryhttp demo:", err)
		return cli.ExitFailed
	}
	return cli.ExitOK
}

// drainGrace is how long the requests in flight when -duration ends may
// take to finish before they are canceled: long enough for the embedded
// upstream's retries and Retry-After waits, so that the numbers count how
// requests end, not that the demo stopped.
const drainGrace = 5 * time.Second

func demo(ctx context.Context, c demoConfig, stdout io.Writer) error {
	if c.tail {
		return tailDemo(ctx, c, stdout)
	}
	reg := prometheus.NewRegistry()
	metrics, err := retryhttp.NewMetrics(reg)
	if err != nil {
		return err
	}
	if c.metricsAddr != "" {
		closeMetrics, err := serveMetrics(c.metricsAddr, reg, stdout)
		if err != nil {
			return err
		}
		defer closeMetrics()
	}
	target, phases := c.upstream, []phase{{length: c.duration}}
	if target == "" {
		up, err := startUpstream(c.faults)
		if err != nil {
			return err
		}
		defer up.Close()
		target = up.URL
		fmt.Fprintf(stdout, "upstream: %s (%v)\n", target, c.faults)
		if c.faults.quota > 0 {
			fmt.Fprintf(stdout, "upstream quota: %d requests per %v, announced with RateLimit; the Transport holds the host when it is spent\n",
				c.faults.quota, c.faults.quotaWindow)
		}
		phases = c.plan(up)
	} else {
		fmt.Fprintf(stdout, "upstream: %s\n", cli.Redact(target))
	}
	budget := "default retry budget"
	if !c.budget {
		budget = "no retry budget"
	}
	fmt.Fprintf(stdout, "clients: %d for %v; policy: %d attempts, %s jitter, base %v, max %v; %s\n",
		c.clients, c.duration, c.policy.MaxAttempts, c.policy.Jitter, c.policy.BaseDelay, c.policy.MaxDelay, budget)
	fmt.Fprintln(stdout, amplificationMeaning(c.policy.MaxAttempts))

	tr := retryhttp.New(nil, c.options(metrics)...)
	defer tr.CloseIdleConnections()
	run := &demoRun{c: c, con: &console{w: stdout, tty: cli.IsTerminal(stdout)}, reg: reg}
	run.gate.Lock() // the first phase opens it
	run.start = time.Now()
	done := run.startClients(ctx, &http.Client{Transport: tr}, target)
	results := run.runPhases(ctx, phases, done)
	<-done
	run.con.println("")
	report{total: collect(reg), phases: results, elapsed: time.Since(run.start),
		maxAttempts: c.policy.MaxAttempts, budget: c.budget}.printSummary(stdout)
	c.printEnd(stdout)
	return nil
}

// serveMetrics serves reg's metrics on addr at /metrics and prints where;
// the function it returns stops serving.
func serveMetrics(addr string, reg *prometheus.Registry, stdout io.Writer) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w (choose another -metrics-addr)", err)
	}
	srv := &http.Server{Handler: metricsMux(reg), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Fprintf(stdout, "metrics: http://%s/metrics\n", ln.Addr())
	return func() { _ = srv.Close() }, nil
}

// options returns the Transport's options for the demo's flags.
func (c demoConfig) options(metrics *retryhttp.Metrics) []retryhttp.Option {
	opts := []retryhttp.Option{retryhttp.WithPolicy(c.policy), retryhttp.WithMetrics(metrics)}
	if !c.budget {
		opts = append(opts, retryhttp.WithBudget(nil))
	}
	if h, _ := parseHedge(c.hedge); h != nil {
		opts = append(opts, retryhttp.WithHedging(*h))
	}
	return opts
}

// phase is one stretch of a demo run, in which the embedded upstream
// fails in one way.
type phase struct {
	name   string        // "" in a run without phases
	length time.Duration // the last phase lasts until the requests under way at its end have finished
	about  string        // what happens in it, announced when it starts
	begin  func()        // switches the upstream to the phase's failures; nil: nothing to switch
}

// phaseShares are the shares of -duration of the steady, outage and
// recovery phases.
var phaseShares = [3]float64{0.4, 0.3, 0.3}

// plan returns the phases of a run against the embedded upstream u: with
// -outage, the failures of the flags (steady), a total outage, and the
// failures of the flags again (recovery); without, one phase without a
// name.
func (c demoConfig) plan(u *upstream) []phase {
	if !c.outage {
		return []phase{{length: c.duration}}
	}
	steady, outage := u.handler(), c.faults.outage().handler()
	budget := fmt.Sprintf("the retry budget (%.0f%% of the requests plus one every %v) limits the retries, which would otherwise make every request try all %d attempts",
		100*retryhttp.DefaultBudgetRatio, time.Duration(float64(time.Second)/retryhttp.DefaultBudgetMinPerSecond), c.policy.MaxAttempts)
	refill := "; the retry budget, spent in the outage, refills as new requests earn it"
	switch {
	case c.policy.MaxAttempts == 1:
		budget, refill = "nothing is retried (-attempts 1)", ""
	case !c.budget:
		budget, refill = fmt.Sprintf("with no retry budget, every request makes all %d attempts", c.policy.MaxAttempts), ""
	}
	lengths := [3]time.Duration{}
	for i, share := range phaseShares[:2] {
		lengths[i] = time.Duration(share * float64(c.duration))
	}
	lengths[2] = c.duration - lengths[0] - lengths[1]
	return []phase{
		{name: "steady", length: lengths[0], begin: func() { u.serve(steady) },
			about: fmt.Sprintf("the upstream fails now and then (%v); the Transport retries the failures", c.faults)},
		{name: "outage", length: lengths[1], begin: func() { u.serve(outage) },
			about: "the upstream answers every request 503; " + budget},
		{name: "recovery", length: lengths[2], begin: func() { u.serve(steady) },
			about: "the upstream is back to failing now and then" + refill},
	}
}

// demoRun is one run of the demo's clients through its phases.
type demoRun struct {
	c     demoConfig
	con   *console
	reg   prometheus.Gatherer
	start time.Time
	// gate is held (read) by every request under way, and taken (write)
	// between two phases, so that each request falls wholly in one phase
	// and the phases' numbers are the requests' own.
	gate     sync.RWMutex
	underWay atomic.Int64 // requests sent and not yet answered
}

// startClients starts -clients clients that send requests to target until
// -duration has passed, and returns a channel that closes when they have
// all stopped. A request under way at the end may finish within
// drainGrace; ctx ending (Ctrl-C) cancels the requests at once.
func (r *demoRun) startClients(ctx context.Context, client *http.Client, target string) <-chan struct{} {
	reqCtx, stopRequests := context.WithCancel(ctx)
	runCtx, cancel := context.WithTimeout(ctx, r.c.duration)
	var wg sync.WaitGroup
	for range r.c.clients {
		wg.Go(func() { r.drive(runCtx, reqCtx, client, target) })
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		cancel()
		stopRequests()
		close(done)
	}()
	go func() {
		<-runCtx.Done()
		t := time.NewTimer(drainGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			stopRequests()
		}
	}()
	return done
}

// drive sends GET requests, each with the context req, until run ends.
func (r *demoRun) drive(run, req context.Context, client *http.Client, target string) {
	for r.send(run, req, client, target) {
		if r.c.pause > 0 {
			t := time.NewTimer(r.c.pause)
			select {
			case <-t.C:
			case <-run.Done():
				t.Stop()
			}
		}
	}
}

// send sends one request through the gate, and reports false instead when
// run has ended.
func (r *demoRun) send(run, req context.Context, client *http.Client, target string) bool {
	r.gate.RLock()
	defer r.gate.RUnlock()
	if run.Err() != nil {
		return false
	}
	rq, err := http.NewRequestWithContext(req, http.MethodGet, target, nil)
	if err != nil {
		return false
	}
	r.underWay.Add(1)
	defer r.underWay.Add(-1)
	if resp, err := client.Do(rq); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return true
}

// runPhases opens the gate and takes the run through its phases,
// announcing each as it starts and printing its result as it ends, with
// progress lines in between; it returns what the metrics counted in each.
// A phase ends when its length is up and the requests under way have
// ended; the last one when the clients have stopped (done). When ctx ends
// (Ctrl-C), the phase under way is the last.
func (r *demoRun) runPhases(ctx context.Context, phases []phase, done <-chan struct{}) []phaseResult {
	tick := time.NewTicker(progressEvery(r.c.progress, r.con.tty))
	defer tick.Stop()
	results := make([]phaseResult, 0, len(phases))
	before, from := collect(r.reg), r.start
	name := "" // of the phase under way
	progress := func() {
		// The requests under way have made attempts the metrics counted:
		// they count as requests too, so that the amplification is of
		// the attempts sent for the requests sent.
		now, underWay := time.Now(), r.underWay.Load()
		s := collect(r.reg).minus(before)
		s.total += float64(underWay)
		r.con.progress(s.progressLine(name, now.Sub(r.start), now.Sub(from), int(underWay)))
	}
	measure := func(name string) {
		now, after := time.Now(), collect(r.reg)
		res := phaseResult{name: name, took: now.Sub(from), stats: after.minus(before)}
		if name != "" {
			r.con.println(res.resultLine())
		}
		results = append(results, res)
		before, from = after, now
	}
	end := r.start
	for i, p := range phases {
		if i > 0 {
			r.gate.Lock() // the requests under way have ended; new ones wait
			measure(phases[i-1].name)
			if ctx.Err() != nil {
				r.gate.Unlock()
				return results
			}
		}
		name = p.name
		if p.name != "" {
			r.con.println(fmt.Sprintf("phase %d of %d, %s (%v): %s", i+1, len(phases), p.name, p.length.Round(100*time.Millisecond), p.about))
		}
		if p.begin != nil {
			p.begin()
		}
		r.gate.Unlock()
		end = end.Add(p.length)
		var ends <-chan time.Time // the last phase ends when the clients stop
		timer := time.NewTimer(time.Until(end))
		if i < len(phases)-1 {
			ends = timer.C
		}
		stopped := waitPhase(ends, done, tick.C, progress)
		timer.Stop()
		if stopped {
			measure(p.name)
			break
		}
	}
	return results
}

// waitPhase calls progress on every tick until the phase ends (a nil ends
// never does) or the clients have stopped, and reports whether they have.
func waitPhase(ends <-chan time.Time, done <-chan struct{}, tick <-chan time.Time, progress func()) (stopped bool) {
	for {
		select {
		case <-ends:
			return false
		case <-done:
			return true
		case <-tick:
			progress()
		}
	}
}

func metricsMux(reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}
