package demo

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
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
	adaptive    bool   // the adaptive rate's comparison against -capacity instead
}

func Run(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("demo", "[flags]", stderr)
	var c demoConfig
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "how long to run (Ctrl-C stops earlier); -tail and -adaptive run twice, each for half of it (-adaptive's default: 20s)")
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
	fs.IntVar(&c.faults.capacity, "capacity", 0, "embedded upstream: requests per second it serves; beyond, a bare 429 (no Retry-After, no RateLimit headers). "+
		"A token bucket, as a server's rate limiter is: it refills at that rate and holds one second's worth, "+
		"so no burst of twice the capacity passes at a second's edge as with a fixed window (0: no limit)")
	fs.BoolVar(&c.adaptive, "adaptive", false, "show what retryhttp.WithAdaptiveRate does against -capacity: the same clients without it, then with it, and for each "+
		"the share of attempts answered 429, the goodput against the capacity, and the requests it failed with ErrThrottled; no phases, no 503s or resets")
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
	if msg := c.modeConflict(); msg != "" {
		return cli.UsageError(fs, "%s", msg)
	}
	if c.adaptive && !flagSet(fs, "duration") {
		c.duration = adaptiveDuration
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := demo(ctx, c, stdout); err != nil {
		fmt.Fprintln(stderr, "retryhttp demo:", err)
		return cli.ExitFailed
	}
	return cli.ExitOK
}

// modeConflict says what is wrong with a combination of the flags that
// choose what the demo shows, or "" when nothing is.
func (c demoConfig) modeConflict() string {
	capacity := c.faults.capacity > 0
	switch {
	case capacity && c.upstream != "":
		return "-capacity limits the embedded upstream: it does not apply with -upstream"
	case c.adaptive && c.upstream != "":
		return "-adaptive compares runs against the embedded upstream, limited by -capacity: it does not apply with -upstream"
	case c.adaptive && c.tail:
		return "-adaptive and -tail are two comparisons: run one at a time"
	case capacity && c.tail:
		return fmt.Sprintf("-capacity does not apply to -tail, which runs an upstream of its own: try -capacity %d -adaptive", c.faults.capacity)
	case c.adaptive && !capacity:
		return "-adaptive compares runs against an upstream of limited capacity: give it -capacity N (try -capacity 50)"
	}
	return ""
}

// flagSet reports whether the command line set the flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// drainGrace is how long the requests in flight when -duration ends may
// take to finish before they are canceled: long enough for the embedded
// upstream's retries and Retry-After waits, so that the numbers count how
// requests end, not that the demo stopped.
const drainGrace = 5 * time.Second

func demo(ctx context.Context, c demoConfig, stdout io.Writer) error {
	switch {
	case c.tail:
		return tailDemo(ctx, c, stdout)
	case c.adaptive:
		return adaptiveDemo(ctx, c, stdout)
	}
	reg, metrics, closeMetrics, err := c.startMetrics(stdout)
	if err != nil {
		return err
	}
	defer closeMetrics()
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

// startMetrics returns a registry holding the Transport's metrics, served
// on -metrics-addr unless it is empty, and the function that stops serving
// them.
func (c demoConfig) startMetrics(stdout io.Writer) (*prometheus.Registry, *retryhttp.Metrics, func(), error) {
	reg := prometheus.NewRegistry()
	metrics, err := retryhttp.NewMetrics(reg)
	if err != nil {
		return nil, nil, nil, err
	}
	stop := func() {}
	if c.metricsAddr != "" {
		if stop, err = serveMetrics(c.metricsAddr, reg, stdout); err != nil {
			return nil, nil, nil, err
		}
	}
	return reg, metrics, stop, nil
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

func metricsMux(reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}
