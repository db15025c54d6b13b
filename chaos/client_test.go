package chaos

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// kind is what a request looks like.
type kind int

const (
	kindGet            kind = iota // GET, with a response payload of up to 48 KiB
	kindPutGetBody                 // PUT, body from a bytes.Reader with GetBody, up to 256 KiB
	kindPutStreamSmall             // PUT, streamed body without GetBody, at most the 64 KiB replay buffer
	kindPutStreamLarge             // PUT, streamed body without GetBody, larger than the replay buffer
	kindPostKeyed                  // POST with an Idempotency-Key: retryable
	kindPostUnkeyed                // POST without a key: never sent again once the upstream may have seen it
	numKinds
)

var kindNames = [numKinds]string{"GET", "PUT/GetBody", "PUT/stream<=64KiB", "PUT/stream>64KiB", "POST+key", "POST"}

func (k kind) String() string { return kindNames[k] }

// retryable reports whether every failure of the request's attempts may be
// retried, so that the request should succeed within MaxAttempts. A streamed
// body larger than the replay buffer can be sent again only while less than
// 64 KiB of it were read; a POST without a key is never sent again after the
// upstream may have seen it. Both may legitimately fail.
func (k kind) retryable() bool { return k != kindPutStreamLarge && k != kindPostUnkeyed }

// kindWeights is the mix of requests, in percent.
var kindWeights = [numKinds]int{35, 15, 10, 10, 15, 15}

func pickKind(r *rand.Rand) kind {
	n := r.IntN(100)
	for k, w := range kindWeights {
		if n < w {
			return kind(k)
		}
		n -= w
	}
	return kindGet
}

const replayBuffer = 64 << 10 // retryhttp.DefaultReplayBuffer

// bodySize picks a body size for k, edges included.
func bodySize(r *rand.Rand, k kind) int {
	switch k {
	case kindPutGetBody:
		return pick(r, 0, 1, replayBuffer, replayBuffer+1, 1+r.IntN(256<<10))
	case kindPutStreamSmall:
		return pick(r, 0, 1, replayBuffer-1, replayBuffer, r.IntN(replayBuffer+1))
	case kindPutStreamLarge:
		return pick(r, replayBuffer+1, replayBuffer+1+r.IntN(192<<10))
	case kindPostKeyed, kindPostUnkeyed:
		return pick(r, 0, 1, r.IntN(16<<10), r.IntN(96<<10))
	}
	return 0
}

// pick returns one of the edge values now and then, else the last (random) one.
func pick(r *rand.Rand, vals ...int) int {
	if r.IntN(5) == 0 {
		return vals[r.IntN(len(vals))]
	}
	return vals[len(vals)-1]
}

// track follows one request through its attempts: the attempt counter (the
// base RoundTripper increments it) finds it in the request's context.
type track struct {
	attempts atomic.Int32
	pooled   bool // its attempts go through the keep-alive transport
}

type trackKey struct{}

// attemptCounter is the base RoundTripper of the retryhttp Transport. It sees
// every attempt and counts those that failed, by cause: that is the measured
// fault rate. It sends each attempt through one of two net/http Transports:
// fresh, which closes each connection itself after one response, so that
// every attempt dials a new connection and draws Toxiproxy's toxics anew; or,
// for the requests marked pooled, a keep-alive one, so that retries after a
// 503 also run on a connection that the previous attempt's drained response
// left for reuse.
type attemptCounter struct {
	fresh, pooled *http.Transport

	attempts atomic.Int64
	faults   atomic.Int64

	mu      sync.Mutex
	causes  map[string]int64
	samples map[string]string
}

func newAttemptCounter(fresh, pooled *http.Transport) *attemptCounter {
	return &attemptCounter{fresh: fresh, pooled: pooled, causes: map[string]int64{}, samples: map[string]string{}}
}

func (c *attemptCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	base := c.fresh
	if tr, ok := req.Context().Value(trackKey{}).(*track); ok {
		tr.attempts.Add(1)
		if tr.pooled {
			base = c.pooled
		}
	}
	c.attempts.Add(1)
	resp, err := base.RoundTrip(req)
	switch {
	case err != nil && req.Context().Err() != nil:
		c.fault("request context ended", err.Error())
	case err != nil:
		c.fault(errCause(err), err.Error())
	case resp.StatusCode != http.StatusOK:
		c.fault("status "+strconv.Itoa(resp.StatusCode), "")
	}
	return resp, err
}

func (c *attemptCounter) fault(cause, sample string) {
	c.faults.Add(1)
	c.mu.Lock()
	c.causes[cause]++
	if _, ok := c.samples[cause]; !ok && sample != "" {
		c.samples[cause] = sample
	}
	c.mu.Unlock()
}

// CloseIdleConnections passes the call on, so that retryhttp's
// CloseIdleConnections reaches net/http through this wrapper.
func (c *attemptCounter) CloseIdleConnections() {
	c.fresh.CloseIdleConnections()
	c.pooled.CloseIdleConnections()
}

// errCause names the cause of an attempt's or a request's error.
func errCause(err error) string {
	var ne net.Error
	switch {
	case strings.Contains(err.Error(), "timeout awaiting response headers"):
		return "response header timeout"
	case errors.Is(err, context.DeadlineExceeded):
		return "context deadline"
	case errors.Is(err, context.Canceled):
		return "context canceled"
	case strings.Contains(err.Error(), "malformed"):
		return "malformed response"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "other"
}

// bodyTracker counts the request bodies handed to the transport (the first,
// and each one GetBody returns) and those closed: a RoundTripper must close
// every one of them, even on errors.
type bodyTracker struct {
	opened, closed, readAfterClose atomic.Int64
}

func (bt *bodyTracker) wrap(b []byte, chunk int) *trackedBody {
	bt.opened.Add(1)
	return &trackedBody{r: bytes.NewReader(b), chunk: chunk, bt: bt}
}

// trackedBody is a request body. Its type is not one that http.NewRequest
// recognizes, so a request made with it has no GetBody: it streams. With
// chunk > 0, it returns at most chunk bytes per Read, as a slow source would.
type trackedBody struct {
	r      *bytes.Reader
	chunk  int
	bt     *bodyTracker
	closed atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		b.bt.readAfterClose.Add(1)
	}
	if b.chunk > 0 && len(p) > b.chunk {
		p = p[:b.chunk]
	}
	return b.r.Read(p)
}

func (b *trackedBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.bt.closed.Add(1)
	}
	return nil
}

// spec is one request: what is sent and what must come back.
type spec struct {
	id       uint64
	kind     kind
	body     []byte
	sha      string // hex SHA-256 of body
	respSize int    // GET: payload size asked for
}

func newSpec(r *rand.Rand, id uint64) *spec {
	s := &spec{id: id, kind: pickKind(r)}
	if n := bodySize(r, s.kind); n > 0 {
		s.body = make([]byte, n)
		for i := 0; i < n; i += 8 {
			v := r.Uint64()
			for j := 0; j < 8 && i+j < n; j++ {
				s.body[i+j] = byte(v >> (8 * j))
			}
		}
	}
	sum := sha256.Sum256(s.body)
	s.sha = hex.EncodeToString(sum[:])
	if s.kind == kindGet {
		s.respSize = pick(r, 0, 1, 4096, 48<<10, r.IntN(48<<10))
	}
	return s
}

// request builds the http.Request of s. Streamed bodies state their length
// half of the time (Content-Length) and are chunked otherwise.
//
// No request asks to close its connection (Request.Close): the upstream would
// then close first, and Toxiproxy, which sets SO_LINGER 0 on every connection
// of a direction whose chain holds a reset_peer toxic (whether or not that
// connection drew it), turns that close into a RST that can drop the end of
// a response already handed to the caller, a failure no RoundTripper can
// retry. The client closes connections instead (see attemptCounter).
func (s *spec) request(ctx context.Context, r *rand.Rand, base string, bt *bodyTracker) *http.Request {
	method := http.MethodPut
	switch s.kind {
	case kindGet:
		method = http.MethodGet
	case kindPostKeyed, kindPostUnkeyed:
		method = http.MethodPost
	}
	url := base + "/r/" + strconv.FormatUint(s.id, 10)
	getBody := s.kind == kindPutGetBody || s.kind == kindPostKeyed || (s.kind == kindPostUnkeyed && r.IntN(2) == 0)

	var req *http.Request
	var err error
	switch {
	case s.kind == kindGet:
		req, err = http.NewRequestWithContext(ctx, method, url, nil)
	case getBody:
		// http.NewRequest sets ContentLength and a GetBody for a
		// bytes.Reader (NoBody when empty); the bodies are then swapped for
		// tracked ones of the same bytes, GetBody included.
		req, err = http.NewRequestWithContext(ctx, method, url, bytes.NewReader(s.body))
		if err == nil && len(s.body) > 0 {
			req.Body = bt.wrap(s.body, 0)
			req.GetBody = func() (io.ReadCloser, error) { return bt.wrap(s.body, 0), nil }
		}
	default:
		req, err = http.NewRequestWithContext(ctx, method, url, bt.wrap(s.body, 1+r.IntN(16<<10)))
		if err == nil && r.IntN(2) == 0 {
			req.ContentLength = int64(len(s.body))
		}
	}
	if err != nil {
		panic(err) // the URL is ours: cannot happen
	}
	req.Header.Set(hdrID, strconv.FormatUint(s.id, 10))
	req.Header.Set(hdrKind, s.kind.String())
	req.Header.Set(hdrSHA, s.sha)
	req.Header.Set(hdrLen, strconv.Itoa(len(s.body)))
	if s.kind == kindGet {
		req.Header.Set(hdrRespSize, strconv.Itoa(s.respSize))
	}
	if s.kind == kindPostKeyed {
		req.Header.Set(hdrIdemKey, "key-"+strconv.FormatUint(s.id, 10))
	}
	return req
}

// result is how one request ended.
type result struct {
	ok        bool
	failure   string // why it failed: "status 503", "error: connection reset", ...
	violation string // an invariant it broke, if any
}

// check reads and closes the response of s and checks it. A violation is an
// invariant broken (the response is another request's, or the upstream got
// other bytes than were sent); a failure is a request that did not succeed.
func (s *spec) check(resp *http.Response, err error) result {
	if err != nil {
		return result{failure: "error: " + errCause(err)}
	}
	defer resp.Body.Close()
	data, readErr := io.ReadAll(resp.Body)
	id := strconv.FormatUint(s.id, 10)

	// The upstream's 200 answers carry the request's id; its 503 and 429
	// answers carry none.
	if got := resp.Header.Get(hdrID); got != "" && got != id {
		return result{violation: fmt.Sprintf("request %s (%s) got the response of request %s", id, s.kind, got)}
	}
	if resp.StatusCode != http.StatusOK {
		return result{failure: "status " + strconv.Itoa(resp.StatusCode)}
	}
	if readErr != nil {
		return result{failure: "reading body: " + errCause(readErr)}
	}
	if resp.Header.Get(hdrID) != id {
		return result{violation: fmt.Sprintf("request %s (%s): 200 without the request's id (%q)", id, s.kind, resp.Header.Get(hdrID))}
	}
	first := "id=" + id + "\n"
	if !bytes.HasPrefix(data, []byte(first)) {
		return result{violation: fmt.Sprintf("request %s (%s): body starts %.40q, not %q", id, s.kind, data, first)}
	}
	if s.kind == kindGet && !bytes.Equal(data[len(first):], responsePayload(s.id, s.respSize)) {
		return result{violation: fmt.Sprintf("request %s: GET payload of %d bytes differs from the %d expected", id, len(data)-len(first), s.respSize)}
	}
	if gotSHA, gotLen := resp.Header.Get(hdrGotSHA), resp.Header.Get(hdrGotLen); gotSHA != s.sha || gotLen != strconv.Itoa(len(s.body)) {
		return result{violation: fmt.Sprintf("request %s (%s): upstream received %s bytes sha256 %s, sent %d bytes sha256 %s",
			id, s.kind, gotLen, gotSHA, len(s.body), s.sha)}
	}
	if s.kind == kindPostUnkeyed && resp.Header.Get(hdrArrival) != "1" {
		return result{violation: fmt.Sprintf("POST %s without a key: this answer was its arrival number %s at the upstream", id, resp.Header.Get(hdrArrival))}
	}
	return result{ok: true}
}
