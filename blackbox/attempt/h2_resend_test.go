package attempt_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var order = bytes.Repeat([]byte("order-42;"), 4000) // 36 KB: fits the replay buffer

// A POST without GetBody that the server did not process (refused with
// REFUSED_STREAM, or cut by a GOAWAY below its stream), before or after
// its body, is resent byte for byte, with or without an attempt timeout;
// its body is closed once, and the attempts and net/http's resends that
// the recorder counts are the requests that reached the server.
func TestH2UnprocessedPOSTResentByteForByte(t *testing.T) {
	cases := []struct {
		name   string
		decide func(int, h2Phase) h2Act
	}{
		{"refused on HEADERS twice", firstN(2, phaseHeaders, actRefuse)},
		{"refused after the body twice", firstN(2, phaseEnd, actRefuse)},
		{"GOAWAY below the stream on HEADERS", firstN(1, phaseHeaders, actGoAwayBelow)},
		{"GOAWAY below the stream after the body", firstN(1, phaseEnd, actGoAwayBelow)},
		{"GOAWAY PROTOCOL_ERROR below the stream", firstN(1, phaseEnd, actGoAwayBelowErr)},
	}
	for _, tc := range cases {
		for _, timeout := range []time.Duration{0, guard} {
			t.Run(fmt.Sprintf("%s timeout=%v", tc.name, timeout), func(t *testing.T) {
				srv := newH2Srv(t, tc.decide)
				var ev eventCounts
				tr := retryhttp.New(srv.Client, retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond, AttemptTimeout: timeout}),
					retryhttp.WithRecorder(ev.rec))
				body := testkit.NewCountingBody(order)
				req := mustReq(t, http.MethodPost, srv.url, nil)
				req.Body, req.ContentLength = body, int64(len(order))
				resp, err := roundTrip(t, tr, req)
				require.NoError(t, err)
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				require.Equal(t, 200, resp.StatusCode)
				heads, done, bodies := srv.stats()
				require.GreaterOrEqual(t, done, 1)
				for i, h := range bodies {
					if h != sha256.Sum256(nil) { // a refused stream's partial body is not a request
						assert.Equal(t, sha256.Sum256(order), h, "complete request %d carried the exact body", i+1)
					}
				}
				assert.Equal(t, sha256.Sum256(order), bodies[len(bodies)-1])
				requireClosedOnce(t, &body.Closes, "the caller's body")
				assert.Equal(t, heads, ev.get(retryhttp.EventAttempt)+ev.get(retryhttp.EventTransparentRetry))
			})
		}
	}
}

// A POST without GetBody that the server may have processed (reset with
// PROTOCOL_ERROR or INTERNAL_ERROR, or cut by a GOAWAY that covers its
// stream) fails, reaches the server once, and its body is closed once.
func TestH2POSTNeverResentAfterOtherResets(t *testing.T) {
	cases := []struct {
		name   string
		decide func(int, h2Phase) h2Act
	}{
		{"PROTOCOL_ERROR on HEADERS", firstN(1, phaseHeaders, actProtocol)},
		{"PROTOCOL_ERROR after the body", firstN(1, phaseEnd, actProtocol)},
		{"INTERNAL_ERROR after the body", firstN(1, phaseEnd, actInternal)},
		{"GOAWAY covering the stream, then close", firstN(1, phaseEnd, actGoAwayAt)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newH2Srv(t, tc.decide)
			tr := retryhttp.New(srv.Client, retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}),
				retryhttp.WithMetrics(nil))
			body := testkit.NewCountingBody(order)
			req := mustReq(t, http.MethodPost, srv.url, nil)
			req.Body, req.ContentLength = body, int64(len(order))
			resp, err := roundTrip(t, tr, req)
			if err == nil {
				resp.Body.Close()
			}
			require.Error(t, err)
			time.Sleep(50 * time.Millisecond) // a resend, if any, reaches the server: shorter only weakens the case
			heads, _, _ := srv.stats()
			assert.Equal(t, 1, heads, "the POST reached the server once")
			requireClosedOnce(t, &body.Closes, "the caller's body")
		})
	}
}

// A POST whose body is longer than the replay buffer, refused at once on
// its HEADERS: either resent byte for byte (the refusal came while what was
// read of the body fit the buffer), or not resent at all, with Reason
// "body"; its body is closed once.
func TestH2RefusedPOSTPastTheReplayBuffer(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KB
	for _, limit := range []int{0, 1024, retryhttp.DefaultReplayBuffer} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			srv := newH2Srv(t, firstN(1, phaseHeaders, actRefuse))
			tr := retryhttp.New(srv.Client, retryhttp.WithReplayBuffer(limit),
				retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}))
			body := testkit.NewCountingBody(big)
			req := mustReq(t, http.MethodPost, srv.url, nil)
			req.Body, req.ContentLength = body, int64(len(big))
			resp, err := roundTrip(t, tr, req)
			_, done, bodies := srv.stats()
			if err == nil {
				resp.Body.Close()
				require.Equal(t, 1, done)
				assert.Equal(t, sha256.Sum256(big), bodies[0])
			} else {
				var rerr *retryhttp.Error
				require.ErrorAs(t, err, &rerr)
				assert.Equal(t, retryhttp.ReasonBody, rerr.Reason, "%v", err)
				assert.Equal(t, 0, done)
			}
			requireClosedOnce(t, &body.Closes, "the caller's body")
		})
	}
}

// gateBody yields its first part, then blocks until gate is closed.
type gateBody struct {
	mu     sync.Mutex
	data   []byte
	off    int
	first  int
	gate   chan struct{}
	closes atomic.Int32
}

func (g *gateBody) Read(p []byte) (int, error) {
	g.mu.Lock()
	off := g.off
	g.mu.Unlock()
	if off >= g.first {
		<-g.gate
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.off >= len(g.data) {
		return 0, io.EOF
	}
	end := len(g.data)
	if g.off < g.first {
		end = g.first
	}
	n := copy(p, g.data[g.off:end])
	g.off += n
	return n, nil
}
func (g *gateBody) Close() error { g.closes.Add(1); return nil }

// A POST whose body stalls midway is refused on its HEADERS while the
// body is stalled: once the body goes on, the resend carries exactly the
// body, and the body is closed once.
func TestH2RefusedPOSTWithStalledBody(t *testing.T) {
	refused := make(chan struct{})
	srv := newH2Srv(t, firstN(1, phaseHeaders, actRefuse), func(n int, a h2Act) {
		if n == 1 {
			close(refused)
		}
	})
	tr := retryhttp.New(srv.Client, retryhttp.WithPolicy(fast))
	g := &gateBody{data: order, first: 1000, gate: make(chan struct{})}
	go func() {
		select {
		case <-refused:
			time.Sleep(50 * time.Millisecond) // for the client to read the refusal: shorter only weakens the case
		case <-time.After(guard):
		}
		close(g.gate)
	}()
	req := mustReq(t, http.MethodPost, srv.url, nil)
	req.Body, req.ContentLength = g, int64(len(order))
	resp, err := roundTrip(t, tr, req)
	require.NoError(t, err)
	resp.Body.Close()
	heads, _, bodies := srv.stats()
	assert.Equal(t, 2, heads, "the refused request, the resend")
	require.Len(t, bodies, 1)
	assert.Equal(t, sha256.Sum256(order), bodies[0])
	requireClosedOnce(t, &g.closes, "the caller's body")
}

// With GetBody (http.NewRequest with a strings.Reader), a POST reset with
// PROTOCOL_ERROR is resent by net/http's HTTP/2 client itself, as often
// with retryhttp as without; the Transport counts those resends as
// transparent retries: attempts plus transparent retries are the requests
// the server received.
func TestH2POSTWithGetBodyProtocolErrorParityAndCount(t *testing.T) {
	count := func(rt http.RoundTripper, srv *h2Srv) int {
		req := mustReq(t, http.MethodPost, srv.url, strings.NewReader(string(order)))
		resp, err := roundTrip(t, rt, req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		heads, _, _ := srv.stats()
		return heads
	}
	bare := newH2Srv(t, firstN(1, phaseEnd, actProtocol))
	bareHeads := count(bare.Client, bare)

	srv := newH2Srv(t, firstN(1, phaseEnd, actProtocol))
	var ev eventCounts
	tr := retryhttp.New(srv.Client, retryhttp.WithRecorder(ev.rec))
	heads := count(tr, srv)
	assert.Equal(t, bareHeads, heads, "as bare net/http")
	assert.Equal(t, 2, heads, "net/http resent it")
	assert.Equal(t, heads, ev.get(retryhttp.EventAttempt)+ev.get(retryhttp.EventTransparentRetry), "attempts plus transparent retries is what the server received")
}
