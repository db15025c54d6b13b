package retryhttp

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// The adaptive hedging delay is a percentile of the latencies a Transport
// recently saw to a host, from a histogram of fixed size per host: no
// allocation per observation, and a bounded number of hosts.
const (
	latencyMin        = 50 * time.Microsecond // the first bucket's bound
	latencyPerOctave  = 4                     // buckets per doubling: a bucket's bound is at most 25% above its values
	latencyBuckets    = 22 * latencyPerOctave // up to latencyMin·2^22, about 3.5 minutes
	latencyGeneration = 1000                  // observations per generation: the estimate covers the last 1000 to 2000
	latencyMinCount   = 100                   // fewer observations of a host: no estimate, no hedge
	latencyHosts      = 256                   // hosts tracked; the least recently seen go first
	latencyRefresh    = 16                    // observations between two computations of the percentile
)

// latencies is what a Transport knows of the latencies of its hosts.
type latencies struct {
	percentile float64
	hosts      hostMap[latencyHist]
	clock      atomic.Int64 // a counter that orders the hosts' last observations, for eviction
}

// latencyHist is one host's recent latencies: two generations of counts,
// the current and the previous, so that the estimate follows the host as
// it changes.
type latencyHist struct {
	mu       sync.Mutex
	cur      [latencyBuckets]uint32
	prev     [latencyBuckets]uint32
	curN     int
	prevN    int
	estimate atomic.Int64 // the percentile, as a time.Duration; 0: not enough observations
	last     atomic.Int64 // the latencies clock at the last observation
}

// observe records one latency to the host named by k.
func (l *latencies) observe(k hostKey, d time.Duration) {
	h := l.hosts.getOrAdd(k, latencyHosts, func() *latencyHist { return new(latencyHist) }, l.evict)
	h.last.Store(l.clock.Add(1))
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cur[latencyBucket(d)]++
	h.curN++
	if h.curN >= latencyGeneration {
		h.prev, h.prevN = h.cur, h.curN
		h.cur, h.curN = [latencyBuckets]uint32{}, 0
	}
	if n := h.curN + h.prevN; n >= latencyMinCount && (n%latencyRefresh == 0 || h.estimate.Load() == 0) {
		h.estimate.Store(int64(h.percentileLocked(l.percentile)))
	}
}

// delay returns the percentile of the recent latencies to the host named
// by k, or 0 while too few were seen.
func (l *latencies) delay(k hostKey) time.Duration {
	if h := l.hosts.get(k); h != nil {
		return time.Duration(h.estimate.Load())
	}
	return 0
}

// evict forgets the host seen least recently, to make room for another.
func (l *latencies) evict(m map[hostKey]*latencyHist) {
	var oldest hostKey
	at := int64(math.MaxInt64)
	for k, h := range m {
		if last := h.last.Load(); last < at {
			oldest, at = k, last
		}
	}
	delete(m, oldest)
}

// percentileLocked returns the upper bound of the bucket that holds the
// p-quantile of the latencies counted in both generations.
func (h *latencyHist) percentileLocked(p float64) time.Duration {
	total := h.curN + h.prevN
	rank := int(math.Ceil(p * float64(total)))
	seen := 0
	for i := range latencyBuckets {
		seen += int(h.cur[i]) + int(h.prev[i])
		if seen >= rank {
			return latencyBound(i)
		}
	}
	return latencyBound(latencyBuckets - 1)
}

// latencyBounds are the upper bounds of the buckets: latencyMin·2^(i/4),
// so that a bucket's bound is less than 19% above its latencies.
var latencyBounds = func() (b [latencyBuckets]time.Duration) {
	for i := range b {
		b[i] = time.Duration(float64(latencyMin) * math.Exp2(float64(i)/latencyPerOctave))
	}
	return b
}()

// latencyBucket returns the first bucket whose bound is at least d; the
// last bucket holds everything beyond.
func latencyBucket(d time.Duration) int {
	lo, hi := 0, latencyBuckets-1
	for lo < hi {
		mid := (lo + hi) / 2
		if latencyBounds[mid] >= d {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// latencyBound returns the upper bound of bucket i.
func latencyBound(i int) time.Duration { return latencyBounds[i] }
