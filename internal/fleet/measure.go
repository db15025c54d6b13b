package fleet

import (
	"math"
	"time"
)

// binWidth is the width of the time bins the run is counted in.
const binWidth = 100 * time.Millisecond

// Series counts what happened in each bin of a run.
type Series struct {
	starts    []int32 // requests the clients started
	attempts  []int32 // attempts sent to the server: the offered load
	succeeded []int32 // requests that ended with a 200: the goodput
	timeouts  []int32 // attempts that timed out, whose work the server did anyway
}

func newSeries(d time.Duration) *Series {
	n := int((d + binWidth - 1) / binWidth)
	return &Series{starts: make([]int32, n), attempts: make([]int32, n), succeeded: make([]int32, n), timeouts: make([]int32, n)}
}

func (s *Series) bin(t time.Duration) int { return min(int(t/binWidth), len(s.starts)-1) }

func (s *Series) started(t time.Duration) { s.starts[s.bin(t)]++ }
func (s *Series) attempt(t time.Duration) { s.attempts[s.bin(t)]++ }
func (s *Series) timeout(t time.Duration) { s.timeouts[s.bin(t)]++ }

// ended counts a request that ended at t, a success or not.
func (s *Series) ended(t time.Duration, ok bool) {
	if ok {
		s.succeeded[s.bin(t)]++
	}
}

// PerSecond returns goodput and offered load (attempts sent) in requests
// per second, over each step of the run (a multiple of 100ms).
func (s *Series) PerSecond(step time.Duration) (goodput, offered []float64) {
	n := int(step / binWidth)
	for i := 0; i+n <= len(s.starts); i += n {
		goodput = append(goodput, float64(sum(s.succeeded, i, i+n))/step.Seconds())
		offered = append(offered, float64(sum(s.attempts, i, i+n))/step.Seconds())
	}
	return goodput, offered
}

// sum adds up bins [from, to) of counts.
func sum(counts []int32, from, to int) int {
	n := 0
	for _, c := range counts[max(0, from):min(to, len(counts))] {
		n += int(c)
	}
	return n
}

// rate returns the rate per second of counts between two times.
func rate(counts []int32, from, to time.Duration) float64 {
	if to <= from {
		return 0
	}
	return float64(sum(counts, int(from/binWidth), int(to/binWidth))) / (to - from).Seconds()
}

// Window returns how long goodput is measured over to say whether it has
// recovered: at least a second, and long enough for the expected count to
// be 1600, so that chance alone does not take 10% off it (10% of 1600 is
// four standard deviations of a Poisson count): 2 s at 800 requests per
// second.
func Window(ratePerSecond float64) time.Duration {
	w := time.Duration(math.Ceil(1600/ratePerSecond/binWidth.Seconds())) * binWidth
	return max(time.Second, w)
}

// RecoveredFor is how long goodput must stay back to count as recovered.
const RecoveredFor = 5 * time.Second

// Result is one policy's row of the output; goodput in requests per
// second.
type Result struct {
	Policy            string   `json:"policy"`
	About             string   `json:"about"`
	GoodputBefore     float64  `json:"goodput_before"`
	GoodputDuring     float64  `json:"goodput_during"`
	GoodputAfter      float64  `json:"goodput_after"`
	GoodputLast10s    float64  `json:"goodput_last_10s"`
	PeakAmplification float64  `json:"peak_amplification"`
	RecoveredAfterS   *float64 `json:"recovered_after_s"`
	Requests          int      `json:"requests"`
	Attempts          int      `json:"attempts"`
	Succeeded         int      `json:"succeeded"`
	TimedOut          int      `json:"attempts_timed_out"`
}

// result sums up a run.
func (s *Series) result(c *Config, pol Policy) Result {
	end := c.OutageAt + c.Outage
	r := Result{
		Policy:         pol.Name,
		About:          pol.About,
		GoodputBefore:  round(rate(s.succeeded, 0, c.OutageAt), 1),
		GoodputDuring:  round(rate(s.succeeded, c.OutageAt, end), 1),
		GoodputAfter:   round(rate(s.succeeded, end, c.Duration), 1),
		GoodputLast10s: round(rate(s.succeeded, max(end, c.Duration-10*time.Second), c.Duration), 1),
		Requests:       sum(s.starts, 0, len(s.starts)),
		Attempts:       sum(s.attempts, 0, len(s.attempts)),
		Succeeded:      sum(s.succeeded, 0, len(s.succeeded)),
		TimedOut:       sum(s.timeouts, 0, len(s.timeouts)),
	}
	w := int(Window(c.Offered()) / binWidth)
	for i := 0; i+w <= len(s.starts); i++ {
		if n := sum(s.starts, i, i+w); n > 0 {
			r.PeakAmplification = max(r.PeakAmplification, float64(sum(s.attempts, i, i+w))/float64(n))
		}
	}
	r.PeakAmplification = round(r.PeakAmplification, 2)
	if t, ok := s.recovery(c, rate(s.succeeded, 0, c.OutageAt)); ok {
		sec := round(t.Seconds(), 1)
		r.RecoveredAfterS = &sec
	}
	return r
}

// recovery returns the time from the end of the outage until goodput is
// back within 10% of before: the start of the first RecoveredFor in which
// goodput over every window (from each bin on) is at least 90% of before.
// ok is false when it does not recover before the run ends.
func (s *Series) recovery(c *Config, before float64) (time.Duration, bool) {
	w := int(Window(c.Offered()) / binWidth)
	need := 0.9 * before * float64(w) * binWidth.Seconds()
	from := int((c.OutageAt + c.Outage + binWidth - 1) / binWidth)
	hold := int(RecoveredFor / binWidth)
	run := 0 // windows in a row that are back, ending at i
	for i := from; i+w <= len(s.succeeded); i++ {
		if float64(sum(s.succeeded, i, i+w)) >= need {
			run++
		} else {
			run = 0
		}
		if run > hold {
			start := time.Duration(i-hold) * binWidth
			return start - (c.OutageAt + c.Outage), true
		}
	}
	return 0, false
}

// round rounds v to the given number of decimals.
func round(v float64, decimals int) float64 {
	p := math.Pow(10, float64(decimals))
	return math.Round(v*p) / p
}
