package sim

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/cmd/retryhttp/internal/cli"
)

// simConfig holds the sim's flags.
type simConfig struct {
	clients []int
	seed    uint64
	runs    int           // runs averaged per point
	delay   time.Duration // mean network delay
	stddev  time.Duration // its standard deviation
	base    time.Duration
	cap     time.Duration
}

// simResult is one row of the output.
type Result struct {
	Jitter       string  `json:"jitter"`
	Clients      int     `json:"clients"`
	Calls        int     `json:"calls"`
	CompletionMS float64 `json:"completion_ms"`
}

// simOutput is what -json prints: the parameters of the run, so that the
// results can be reproduced and compared, and the results.
type Output struct {
	Parameters Parameters `json:"parameters"`
	Results    []Result   `json:"results"`
}

// simParameters are a run's parameters, durations in milliseconds.
type Parameters struct {
	Seed          uint64  `json:"seed"`
	Runs          int     `json:"runs"`
	Clients       []int   `json:"clients"`
	BaseMS        float64 `json:"base_ms"`
	CapMS         float64 `json:"cap_ms"`
	DelayMS       float64 `json:"network_delay_ms"`
	DelayStddevMS float64 `json:"network_delay_stddev_ms"`
}

func (c simConfig) parameters() Parameters {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return Parameters{Seed: c.seed, Runs: c.runs, Clients: c.clients, BaseMS: ms(c.base), CapMS: ms(c.cap),
		DelayMS: ms(c.delay), DelayStddevMS: ms(c.stddev)}
}

// simJitters are the modes compared, in output order.
var simJitters = []retryhttp.Jitter{retryhttp.NoJitter, retryhttp.FullJitter, retryhttp.EqualJitter, retryhttp.DecorrelatedJitter}

func Run(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("sim", "[flags]", stderr)
	clients := fs.String("clients", "10,20,30,40,50,60,70,80,90,100", "comma-separated numbers of clients")
	seed := fs.Uint64("seed", 1, "random seed: the same seed gives the same results")
	runs := fs.Int("runs", 10, "runs averaged for each point")
	delay := fs.Duration("delay", 10*time.Millisecond, "mean network delay between a client's read and its write")
	stddev := fs.Duration("delay-stddev", 2*time.Millisecond, "standard deviation of the network delay (the post's variance of 4 ms² is 2ms)")
	base := fs.Duration("base", 5*time.Millisecond, "backoff base delay")
	capDelay := fs.Duration("cap", 2*time.Second, "backoff cap (MaxDelay)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	svg := fs.String("svg", "", "also write a chart of calls and completion time to this SVG file")
	if code, done := cli.Parse(fs, args); done {
		return code
	}
	if fs.NArg() != 0 {
		return cli.UsageError(fs, "unexpected arguments: %v", fs.Args())
	}
	c := simConfig{seed: *seed, runs: *runs, delay: *delay, stddev: *stddev, base: *base, cap: *capDelay}
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 10000 {
			return cli.UsageError(fs, "-clients: %q is not a number of clients from 1 to 10000", s)
		}
		c.clients = append(c.clients, n)
	}
	if c.runs < 1 || c.runs > 1000 {
		return cli.UsageError(fs, "-runs must be between 1 and 1000")
	}
	if c.delay <= 0 || c.stddev < 0 || c.base <= 0 || c.cap < c.base {
		return cli.UsageError(fs, "-delay and -base must be positive, -delay-stddev not negative, and -cap at least -base")
	}

	results := simulateAll(c)
	if *svg != "" {
		if err := os.WriteFile(*svg, []byte(simChart(results, c)), 0o644); err != nil {
			fmt.Fprintln(stderr, "retryhttp sim:", err)
			return cli.ExitFailed
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(Output{Parameters: c.parameters(), Results: results}); err != nil {
			fmt.Fprintln(stderr, "retryhttp sim:", err)
			return cli.ExitFailed
		}
		return cli.ExitOK
	}
	printSimTable(stdout, results, c)
	return cli.ExitOK
}

// simulateAll runs every jitter mode for every number of clients, c.runs
// times each, and averages the runs. Each point has its own generator,
// seeded from the seed, the mode and the clients, so a row does not depend
// on which other rows were asked for.
func simulateAll(c simConfig) []Result {
	var out []Result
	for _, j := range simJitters {
		for _, n := range c.clients {
			r := rand.New(rand.NewPCG(c.seed, uint64(j)<<32|uint64(n)))
			p := retryhttp.Policy{BaseDelay: c.base, MaxDelay: c.cap, Jitter: j}
			var calls int
			var done time.Duration
			for range c.runs {
				k, d := simulate(n, p, c.delay, c.stddev, r)
				calls += k
				done += d
			}
			out = append(out, Result{
				Jitter:       j.String(),
				Clients:      n,
				Calls:        (calls + c.runs/2) / c.runs,
				CompletionMS: math.Round(float64(done)/float64(c.runs)/float64(time.Millisecond)*10) / 10,
			})
		}
	}
	return out
}

// simulate runs, in virtual time, n clients that each want to write one
// value to a shared resource under optimistic concurrency control, as in
// the AWS Architecture Blog post "Exponential Backoff And Jitter": a client
// reads the resource's version, and its write arrives after a network delay
// (normally distributed, never negative); the write succeeds only
// if no other write succeeded in between. A client whose write failed waits
// p.Delay (the library's own backoff, with r as its randomness) and starts
// over. It returns the writes sent (calls) and when the last client
// succeeded.
func simulate(n int, p retryhttp.Policy, delay, stddev time.Duration, r *rand.Rand) (calls int, completion time.Duration) {
	type client struct {
		read    int // the version this client read
		retries int
		prev    time.Duration
	}
	clients := make([]client, n)
	var q events
	for i := range clients {
		q.push(event{at: 0, client: i, write: false})
	}
	version, left := 0, n
	netDelay := func() time.Duration {
		return max(0, time.Duration(float64(delay)+r.NormFloat64()*float64(stddev)))
	}
	for left > 0 {
		e := q.pop()
		c := &clients[e.client]
		if !e.write {
			c.read = version
			q.push(event{at: e.at + netDelay(), client: e.client, write: true})
			continue
		}
		calls++
		if c.read == version {
			version++
			left--
			completion = e.at
			continue
		}
		wait := p.Delay(c.retries, c.prev, r)
		c.retries++
		c.prev = wait
		q.push(event{at: e.at + wait, client: e.client, write: false})
	}
	return calls, completion
}

// event is a client's read or write arriving at the resource.
type event struct {
	at     time.Duration
	seq    int // breaks ties in arrival order, for determinism
	client int
	write  bool
}

// events is a min-heap of events by time.
type events struct {
	h   eventHeap
	seq int
}

func (q *events) push(e event) {
	q.seq++
	e.seq = q.seq
	heap.Push(&q.h, e)
}

func (q *events) pop() event { return heap.Pop(&q.h).(event) }

type eventHeap []event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func printSimTable(w io.Writer, results []Result, c simConfig) {
	fmt.Fprintf(w, "Each client writes one row with optimistic concurrency; network delay %v ± %v, backoff base %v, cap %v, seed %d, mean of %d runs.\n",
		c.delay, c.stddev, c.base, c.cap, c.seed, c.runs)
	fmt.Fprintln(w, "calls: writes sent by all clients; completion: when the last client succeeded (virtual time).")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-8s", "clients")
	for _, j := range simJitters {
		fmt.Fprintf(w, " %26s", j.String()+" jitter")
	}
	fmt.Fprintf(w, "\n%-8s", "")
	for range simJitters {
		fmt.Fprintf(w, " %12s %13s", "calls", "completion")
	}
	fmt.Fprintln(w)
	for _, n := range c.clients {
		fmt.Fprintf(w, "%-8d", n)
		for _, j := range simJitters {
			r := find(results, j.String(), n)
			fmt.Fprintf(w, " %12d %11.0fms", r.Calls, r.CompletionMS)
		}
		fmt.Fprintln(w)
	}
}

func find(results []Result, jitter string, clients int) Result {
	for _, r := range results {
		if r.Jitter == jitter && r.Clients == clients {
			return r
		}
	}
	return Result{}
}
