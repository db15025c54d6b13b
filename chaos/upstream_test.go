package chaos

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
)

// Headers the clients send with every attempt, and that the upstream echoes.
const (
	hdrID       = "X-Chaos-Id"       // the request's id, unique in a run
	hdrKind     = "X-Chaos-Kind"     // the request's kind (kind.String())
	hdrSHA      = "X-Chaos-Sha256"   // hex SHA-256 of the body the client means to send
	hdrLen      = "X-Chaos-Len"      // length of that body
	hdrRespSize = "X-Chaos-Resp"     // for GET: how many payload bytes to answer with
	hdrGotSHA   = "X-Chaos-Got-Sha"  // response: hex SHA-256 of the body the upstream received
	hdrGotLen   = "X-Chaos-Got-Len"  // response: length of that body
	hdrArrival  = "X-Chaos-Arrival"  // response: how many times this id reached the upstream
	hdrIdemKey  = "Idempotency-Key"  // what makes a POST retryable
	faultBody   = "injected fault\n" // body of the 503 and 429 answers
)

// upstream is the origin server behind the proxy. It hashes every request
// body it reads whole and compares it with what the client says it sent,
// counts how often each POST without an idempotency key arrives, and answers
// a random share of attempts with 503 or 429 and a Retry-After of 0 or 1.
type upstream struct {
	faultRate      float64 // share of attempts answered with 503 or 429
	retryAfterOne  float64 // share of those faults that ask for 1 s rather than 0
	earlyFaultRate float64 // share of those faults answered before the body is read

	arrivals     atomic.Int64 // handler invocations
	complete     atomic.Int64 // bodies read whole
	truncated    atomic.Int64 // bodies that broke off (the connection was cut)
	injected503  atomic.Int64
	injected429  atomic.Int64
	missingID    atomic.Int64 // requests without an id: a client bug, or a mangled request
	hashMismatch atomic.Int64 // bodies read whole that differ from what the client sent

	mu       sync.Mutex
	unkeyed  map[uint64]int32 // arrivals of each POST without an idempotency key
	examples []string         // the first hash mismatches, for the failure message
}

func newUpstream() *upstream {
	return &upstream{
		faultRate:      0.08,
		retryAfterOne:  0.1,
		earlyFaultRate: 0.5,
		unkeyed:        make(map[uint64]int32),
	}
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.arrivals.Add(1)
	id, err := strconv.ParseUint(r.Header.Get(hdrID), 10, 64)
	if err != nil {
		u.missingID.Add(1)
		http.Error(w, "missing "+hdrID, http.StatusBadRequest)
		return
	}
	arrival := int32(0)
	if _, keyed := r.Header[hdrIdemKey]; r.Method == http.MethodPost && !keyed {
		u.mu.Lock()
		u.unkeyed[id]++
		arrival = u.unkeyed[id]
		u.mu.Unlock()
	}

	fault := rand.Float64() < u.faultRate
	if fault && rand.Float64() < u.earlyFaultRate {
		// Answer before reading the body: the client may still be sending it
		// (net/http's server then closes the connection after a large body).
		u.fail(w)
		return
	}

	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		u.truncated.Add(1) // cut by a toxic: nothing to compare, no one to answer
		return
	}
	u.complete.Add(1)
	got := hex.EncodeToString(h.Sum(nil))
	if got != r.Header.Get(hdrSHA) || strconv.FormatInt(n, 10) != r.Header.Get(hdrLen) {
		u.hashMismatch.Add(1)
		u.mu.Lock()
		if len(u.examples) < 5 {
			u.examples = append(u.examples, fmt.Sprintf("id %d %s %s: got %d bytes sha256 %s, client sent %s bytes sha256 %s",
				id, r.Method, r.Header.Get(hdrKind), n, got, r.Header.Get(hdrLen), r.Header.Get(hdrSHA)))
		}
		u.mu.Unlock()
	}
	if fault {
		u.fail(w)
		return
	}

	var payload []byte
	if r.Method == http.MethodGet {
		size, _ := strconv.Atoi(r.Header.Get(hdrRespSize))
		payload = responsePayload(id, size)
	}
	first := fmt.Sprintf("id=%d\n", id)
	w.Header().Set(hdrID, strconv.FormatUint(id, 10))
	w.Header().Set(hdrGotSHA, got)
	w.Header().Set(hdrGotLen, strconv.FormatInt(n, 10))
	w.Header().Set(hdrArrival, strconv.Itoa(int(arrival)))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(first)+len(payload)))
	_, _ = io.WriteString(w, first)
	_, _ = w.Write(payload)
}

// fail answers 503 or 429, with Retry-After 0 or (rarely) 1.
func (u *upstream) fail(w http.ResponseWriter) {
	ra := "0"
	if rand.Float64() < u.retryAfterOne {
		ra = "1"
	}
	w.Header().Set("Retry-After", ra)
	code := http.StatusServiceUnavailable
	if rand.IntN(2) == 0 {
		code = http.StatusTooManyRequests
		u.injected429.Add(1)
	} else {
		u.injected503.Add(1)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(faultBody)))
	w.WriteHeader(code)
	_, _ = io.WriteString(w, faultBody)
}

// duplicatedPosts returns how many POSTs without an idempotency key reached
// the upstream more than once, the largest arrival count, and the number of
// such POSTs that arrived at all.
func (u *upstream) duplicatedPosts() (dups int, maxArrivals int32, seen int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, c := range u.unkeyed {
		if c > 1 {
			dups++
		}
		maxArrivals = max(maxArrivals, c)
	}
	return dups, maxArrivals, len(u.unkeyed)
}

// responsePayload is what the upstream answers a GET with: size bytes that
// depend on the id, so that a response meant for another request cannot pass
// for this one's.
func responsePayload(id uint64, size int) []byte {
	if size <= 0 {
		return nil
	}
	var seed [32]byte
	copy(seed[:], strconv.FormatUint(id, 10))
	seed[31] = 'G'
	b := make([]byte, size)
	_, _ = rand.NewChaCha8(seed).Read(b)
	return b
}
