package demo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/cmd/retryhttp/internal/cli"
)

// settle is how long the adaptive rate is given to find the upstream's
// capacity: the shares "after 2 s" count the attempts answered after it.
const settle = 2 * time.Second

// adaptiveDuration is -duration's default with -adaptive: two runs of 10 s.
const adaptiveDuration = 20 * time.Second

// capacityRun is what the metrics counted in one run of the -adaptive
// comparison.
type capacityRun struct {
	name    string
	took    time.Duration // how long the clients sent requests
	sent    stats         // what was answered while they did
	settled stats         // of it, what was answered after settle
	after   time.Duration // how long after settle the clients sent requests (0: the run was no longer)
	all     stats         // the whole run, the requests under way at its end included
}

// share429 is the share of the attempts answered 429 in s, "-" without
// attempts.
func share429(s stats) string { return pct(s.attempts["429"], s.allAttempt) }

// goodput is the 200s per second in s, counted over d.
func goodput(s stats, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return s.attempts["200"] / d.Seconds()
}

// adaptiveDemo compares the same clients against the embedded upstream of
// -capacity, first without the adaptive rate, then with it, each for half
// of -duration, and prints what each sent, what the upstream refused and
// what it served.
func adaptiveDemo(ctx context.Context, c demoConfig, stdout io.Writer) error {
	reg, metrics, closeMetrics, err := c.startMetrics(stdout)
	if err != nil {
		return err
	}
	defer closeMetrics()
	// Only the capacity and the latency: a 503 is a throttle to the
	// adaptive rate too, and resets and outages would blur the comparison.
	f := faults{latency: c.faults.latency, capacity: c.faults.capacity}
	half := c.duration / 2
	fmt.Fprintf(stdout, "adaptive: %d clients, %v without the adaptive rate, then %v with it, against an upstream that answers a bare 429 beyond %d requests/s\n",
		c.clients, half, half, f.capacity)
	up, err := startUpstream(f)
	if err != nil {
		return err
	}
	defer up.Close()
	fmt.Fprintf(stdout, "upstream: %s (%v)\n", up.URL, f)
	fmt.Fprintln(stdout, c.offered(f))
	con := &console{w: stdout, tty: cli.IsTerminal(stdout)}
	runs := []struct{ name, about string }{
		{"without the adaptive rate", "every client sends as soon as it may; a 429 is retried while the retry budget allows"},
		{"with the adaptive rate", "the same clients through retryhttp.WithAdaptiveRate: asleep until the first bare 429, then every request waits for a token of the upstream's rate"},
	}
	var done []capacityRun
	for i, run := range runs {
		up.serve(f.handler()) // a full bucket: the second run does not start with the first's spent
		con.println(fmt.Sprintf("run %d of 2, %s (%v): %s", i+1, run.name, half, run.about))
		opts := c.options(metrics)
		if i == 1 {
			opts = append(opts, retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{}))
		}
		tr := retryhttp.New(nil, opts...)
		rc := c
		rc.duration = half
		r := &demoRun{c: rc, con: con, reg: reg}
		res := r.measure(ctx, run.name, &http.Client{Transport: tr}, up.URL)
		tr.CloseIdleConnections()
		con.println(res.name + " result: " + res.all.numbers(res.took, 0))
		done = append(done, res)
		if ctx.Err() != nil {
			break
		}
	}
	printCapacityRuns(stdout, f.capacity, done)
	c.adaptive = true
	c.printEnd(stdout)
	return nil
}

// offered says how much the clients offer the upstream, at most: each
// sends its next request -pause after an answer, which takes the
// upstream's latency at least. It says so when that is not clearly more
// than the capacity, which the comparison needs.
func (c demoConfig) offered(f faults) string {
	line := fmt.Sprintf("load: each client sends its next request %v after an answer", c.pause)
	per := c.pause + f.latency
	if per <= 0 {
		return line + ", as fast as the upstream answers"
	}
	most := float64(c.clients) / per.Seconds()
	line += fmt.Sprintf(": at most %.0f requests/s at the upstream's %v latency, %.1f× the capacity", most, f.latency, most/float64(f.capacity))
	if most < 1.5*float64(f.capacity) {
		line += "; that is " + notMore(most, f.capacity) + ", which the comparison needs: raise -clients or lower -pause"
	}
	return line
}

// notMore says how a rate of attempts that is not clearly more than the
// capacity compares with it.
func notMore(rate float64, capacity int) string {
	if rate < float64(capacity) {
		return "less than the capacity"
	}
	return "not clearly more than the capacity"
}

// measure runs the clients through client to target, shows the run's
// progress, and returns what the metrics counted in it: while the clients
// sent requests, after settle, and in all.
func (r *demoRun) measure(ctx context.Context, name string, client *http.Client, target string) capacityRun {
	before := collect(r.reg)
	r.start = time.Now()
	done := r.startClients(ctx, client, target)
	tick := time.NewTicker(progressEvery(r.c.progress, r.con.tty))
	defer tick.Stop()
	settled, end := time.NewTimer(settle), time.NewTimer(r.c.duration)
	defer settled.Stop()
	defer end.Stop()
	atSettle, atEnd := (*stats)(nil), (*stats)(nil)
	res := capacityRun{name: name}
	for {
		select {
		case <-settled.C:
			if settle < r.c.duration && atEnd == nil {
				s := collect(r.reg)
				atSettle = &s
			}
		case <-end.C:
			s := collect(r.reg)
			atEnd = &s
		case <-tick.C:
			now, underWay := time.Now(), r.underWay.Load()
			s := collect(r.reg).minus(before)
			s.total += float64(underWay)
			r.con.progress(s.progressLine(name, now.Sub(r.start), now.Sub(r.start), int(underWay)))
		case <-done:
			final := collect(r.reg)
			res.took = min(time.Since(r.start), r.c.duration)
			if atEnd == nil { // the clients stopped first: Ctrl-C, or a timer late
				atEnd = &final
			}
			res.all, res.sent = final.minus(before), atEnd.minus(before)
			if atSettle != nil {
				res.settled, res.after = atEnd.minus(*atSettle), res.took-settle
			}
			return res
		}
	}
}

// printCapacityRuns prints the table of the runs of the -adaptive
// comparison, what its columns mean, and a verdict on each run.
func printCapacityRuns(w io.Writer, capacity int, runs []capacityRun) {
	row := func(cells ...any) {
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("%-26s %9v %7v %15v %9v %15v %10v %7v %9v", cells...), " "))
	}
	good := func(s stats, d time.Duration) string {
		g := goodput(s, d)
		return fmt.Sprintf("%.1f/s (%.0f%%)", g, 100*g/float64(capacity))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-26s %32s %25s\n", "", "over the run", "after the first 2 s")
	row("", "attempts", "429", "goodput", "429", "goodput", "throttled", "paced", "mean wait")
	for _, r := range runs {
		after, afterGood := "-", "-"
		if r.after > 0 {
			after, afterGood = share429(r.settled), good(r.settled, r.after)
		}
		wait := "-"
		if r.all.paced > 0 {
			wait = r.all.meanPace().String()
		}
		row(r.name, int(r.sent.allAttempt), share429(r.sent), good(r.sent, r.took), after, afterGood,
			int(r.all.requests["throttled"]), int(r.all.paced), wait)
	}
	fmt.Fprintf(w, "\nattempts: sent on the wire while the clients ran; 429: the share of them the upstream refused\n"+
		"goodput: 200s per second, and its share of the capacity (%d/s); over the run it may pass 100%%, as the upstream's bucket starts full\n"+
		"after the first 2 s: the attempts answered once the adaptive rate has had time to find the capacity\n"+
		"throttled: requests not sent, failed at once with ErrThrottled: the rate had no room for them within -max-retry-after\n"+
		"paced: attempts that waited for a token of the rate; mean wait: how long, on average\n", capacity)
	fmt.Fprintln(w, "\nWhat happened:")
	for i, r := range runs {
		var before *capacityRun
		if i > 0 {
			before = &runs[0]
		}
		fmt.Fprintln(w, "  "+r.verdict(capacity, before))
	}
}

// verdict says in one line what run r showed: without the adaptive rate
// (before is nil), how far the clients pushed past the capacity; with it,
// what it changed against the run before, and whether that paced the
// clients to the capacity (at most 5% of the attempts refused, at least
// 85% of the capacity served). It speaks of the attempts answered after
// settle when the runs lasted longer, of the whole runs otherwise.
func (r capacityRun) verdict(capacity int, before *capacityRun) string {
	settled := r.after > 0 && (before == nil || before.after > 0)
	when := "over the run"
	if settled {
		when = "after 2 s"
	}
	window := func(c capacityRun) (s stats, refused, served float64) {
		s, d := c.sent, c.took
		if settled {
			s, d = c.settled, c.after
		}
		if s.allAttempt > 0 {
			refused = s.attempts["429"] / s.allAttempt
		}
		return s, refused, goodput(s, d) / float64(capacity)
	}
	s, refused, served := window(r)
	if before == nil {
		sent := s.allAttempt / r.took.Seconds()
		if settled {
			sent = s.allAttempt / r.after.Seconds()
		}
		if sent < 1.2*float64(capacity) {
			return fmt.Sprintf("Without the adaptive rate the clients sent %.0f attempts/s %s, %s (%d/s): "+
				"there was little to throttle; raise -clients or lower -pause.", sent, when, notMore(sent, capacity), capacity)
		}
		return fmt.Sprintf("Without the adaptive rate the clients sent %.1f× the capacity %s: the upstream served %.0f%% of its capacity "+
			"and refused %s of the attempts with 429.", sent/float64(capacity), when, 100*served, share(s.attempts["429"], s.allAttempt))
	}
	if r.all.paced == 0 && r.all.attempts["429"] == 0 {
		return "With the adaptive rate nothing was paced: the upstream never answered 429, so the rate stayed asleep."
	}
	b, _, bServed := window(*before)
	line := fmt.Sprintf("With the adaptive rate %s of the attempts %s got 429 (%s without) and the upstream served %.0f%% of its capacity (%.0f%% without), "+
		"with %d attempts on the wire instead of %d", share(s.attempts["429"], s.allAttempt), when, share(b.attempts["429"], b.allAttempt),
		100*served, 100*bServed, int(r.sent.allAttempt), int(before.sent.allAttempt))
	switch {
	case refused <= 0.05 && served >= 0.85:
		line = "Paced to the capacity. " + line
	case refused > 0.05:
		line = "Still throttled. " + line
	default:
		line = "Below the capacity. " + line
	}
	if n := r.all.requests["throttled"]; n > 0 {
		line += fmt.Sprintf("; %s failed at once with ErrThrottled rather than wait past -max-retry-after", counted(n, "request", "requests"))
	}
	return line + "."
}
