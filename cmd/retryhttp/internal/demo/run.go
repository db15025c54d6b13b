package demo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

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
