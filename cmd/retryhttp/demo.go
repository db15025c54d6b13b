package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/retryhttp/retryhttp"
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
}

func runDemo(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("demo", "[flags]", stderr)
	var c demoConfig
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "how long to run (Ctrl-C stops earlier)")
	fs.IntVar(&c.clients, "clients", 8, "concurrent clients")
	fs.DurationVar(&c.pause, "pause", 20*time.Millisecond, "pause between one client's requests")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "127.0.0.1:9464", "serve Prometheus metrics on this address at /metrics ('' turns it off)")
	fs.StringVar(&c.upstream, "upstream", "", "send requests to this URL instead of the embedded flaky upstream")
	fs.Float64Var(&c.faults.errorRate, "error-rate", 0.3, "embedded upstream: share of requests answered 503")
	fs.Float64Var(&c.faults.throttleRate, "throttle-rate", 0.05, "embedded upstream: share answered 429 with Retry-After")
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
	var pf policyFlags
	pf.register(fs)
	if code, done := parse(fs, args); done {
		return code
	}
	if fs.NArg() != 0 {
		return usageError(fs, "unexpected arguments: %v", fs.Args())
	}
	var err error
	if c.policy, err = pf.policy(); err != nil {
		return usageError(fs, "%v", err)
	}
	if err := c.faults.validate(); err != nil {
		return usageError(fs, "%v", err)
	}
	switch {
	case c.duration <= 0:
		return usageError(fs, "-duration must be positive")
	case c.clients < 1 || c.clients > 10000:
		return usageError(fs, "-clients must be between 1 and 10000")
	case c.pause < 0 || c.progress < 0:
		return usageError(fs, "-pause and -progress must not be negative")
	}
	if _, err := parseHedge(c.hedge); err != nil {
		return usageError(fs, "%v", err)
	}
	if c.upstream != "" {
		if !isHTTPURL(c.upstream) {
			return usageError(fs, "-upstream %q is not an http or https URL", c.upstream)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := demo(ctx, c, stdout); err != nil {
		fmt.Fprintln(stderr, "retryhttp demo:", err)
		return exitFailed
	}
	return exitOK
}

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
		ln, err := net.Listen("tcp", c.metricsAddr)
		if err != nil {
			return fmt.Errorf("metrics: %w (choose another -metrics-addr)", err)
		}
		srv := &http.Server{Handler: metricsMux(reg), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		fmt.Fprintf(stdout, "metrics: http://%s/metrics\n", ln.Addr())
	}
	target := c.upstream
	if target == "" {
		up, err := startUpstream(c.faults)
		if err != nil {
			return err
		}
		defer up.Close()
		target = up.URL
		fmt.Fprintf(stdout, "upstream: %s (503 %.0f%%, 429 %.0f%% with Retry-After %v, resets %.0f%%, latency %v)\n",
			target, 100*c.faults.errorRate, 100*c.faults.throttleRate, c.faults.retryAfter, 100*c.faults.resetRate, c.faults.latency)
		if c.faults.quota > 0 {
			fmt.Fprintf(stdout, "upstream quota: %d requests per %v, announced with RateLimit; the Transport holds the host when it is spent\n",
				c.faults.quota, c.faults.quotaWindow)
		}
	} else {
		fmt.Fprintf(stdout, "upstream: %s\n", redact(target))
	}
	budget := "default retry budget"
	if !c.budget {
		budget = "no retry budget"
	}
	fmt.Fprintf(stdout, "clients: %d for %v; policy: %d attempts, %s jitter, base %v, max %v; %s\n",
		c.clients, c.duration, c.policy.MaxAttempts, c.policy.Jitter, c.policy.BaseDelay, c.policy.MaxDelay, budget)

	opts := []retryhttp.Option{retryhttp.WithPolicy(c.policy), retryhttp.WithMetrics(metrics)}
	if !c.budget {
		opts = append(opts, retryhttp.WithBudget(nil))
	}
	if h, _ := parseHedge(c.hedge); h != nil {
		opts = append(opts, retryhttp.WithHedging(*h))
	}
	tr := retryhttp.New(nil, opts...)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	runCtx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range c.clients {
		wg.Go(func() { drive(runCtx, client, target, c.pause) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	showProgress(runCtx, done, stdout, reg, start, c.progress)
	<-done

	fmt.Fprintln(stdout)
	printSummary(stdout, collect(reg), time.Since(start))
	return nil
}

func metricsMux(reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// drive sends GET requests until ctx ends.
func drive(ctx context.Context, client *http.Client, target string, pause time.Duration) {
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return
		}
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
	}
}

// showProgress prints the counts until ctx ends or done closes: refreshed in
// place on a terminal, as plain periodic lines otherwise.
func showProgress(ctx context.Context, done <-chan struct{}, w io.Writer, reg prometheus.Gatherer, start time.Time, every time.Duration) {
	tty := isTerminal(w)
	if every == 0 {
		every = 5 * time.Second
		if tty {
			every = 250 * time.Millisecond
		}
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-tick.C:
		}
		line := collect(reg).progressLine(time.Since(start))
		if tty {
			fmt.Fprint(w, "\r\x1b[K"+line)
		} else {
			fmt.Fprintln(w, line)
		}
	}
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
