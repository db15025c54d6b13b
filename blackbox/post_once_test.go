package blackbox_test

// A POST without an Idempotency-Key must never reach the server twice, over
// HTTP/1 or HTTP/2, whatever the server does. These tests count the
// requests whose head reached the server (not only the complete ones).

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var postPayload = bytes.Repeat([]byte("order-123 "), 4000) // 40 kB: fits the replay buffer

// h1Behaviours are the ways a raw HTTP/1 server mistreats the first request.
var h1Behaviours = map[string]func(c *net.TCPConn, br *bufio.Reader, r *http.Request){
	"reset before reading the body": func(c *net.TCPConn, _ *bufio.Reader, _ *http.Request) { testkit.Reset(c) },
	"reset after part of the body": func(c *net.TCPConn, br *bufio.Reader, r *http.Request) {
		_, _ = io.CopyN(io.Discard, r.Body, 1000)
		testkit.Reset(c)
	},
	"reset after the whole body": func(c *net.TCPConn, _ *bufio.Reader, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		testkit.Reset(c)
	},
	"close (FIN) after the whole body": func(c *net.TCPConn, _ *bufio.Reader, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = c.Close()
	},
	"503 before reading the body, then close": func(c *net.TCPConn, _ *bufio.Reader, _ *http.Request) {
		testkit.WriteResponse(c, 503, "Connection: close\r\n", "busy")
		_ = c.Close()
	},
	"503 before reading the body, then reset": func(c *net.TCPConn, _ *bufio.Reader, _ *http.Request) {
		testkit.WriteResponse(c, 503, "", "busy")
		time.Sleep(5 * time.Millisecond)
		testkit.Reset(c)
	},
	"408 Connection: close after the body": func(c *net.TCPConn, _ *bufio.Reader, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		testkit.WriteResponse(c, 408, "Connection: close\r\n", "")
		_ = c.Close()
	},
	"cut inside the headers": func(c *net.TCPConn, _ *bufio.Reader, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Le")
		_ = c.Close()
	},
	"cut inside the status line": func(c *net.TCPConn, _ *bufio.Reader, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(c, "HTTP/1.1 2")
		_ = c.Close()
	},
	"100 Continue, then reset": func(c *net.TCPConn, _ *bufio.Reader, r *http.Request) {
		_, _ = io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
		_, _ = io.Copy(io.Discard, r.Body)
		testkit.Reset(c)
	},
	"103 Early Hints, then close": func(c *net.TCPConn, _ *bufio.Reader, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
		_ = c.Close()
	},
	"500 after the body, keep-alive": func(c *net.TCPConn, _ *bufio.Reader, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		testkit.WriteResponse(c, 500, "", "oops")
	},
	"garbage response": func(c *net.TCPConn, _ *bufio.Reader, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(c, "SSH-2.0-OpenSSH\r\n")
		_ = c.Close()
	},
}

type postBody struct {
	name string
	make func() (io.Reader, *testkit.CountingBody) // reader for NewRequest, or a body without GetBody
}

var postBodies = []postBody{
	{"body without GetBody", func() (io.Reader, *testkit.CountingBody) { return nil, testkit.NewCountingBody(postPayload) }},
	{"body with GetBody", func() (io.Reader, *testkit.CountingBody) { return bytes.NewReader(postPayload), nil }},
	{"no body", func() (io.Reader, *testkit.CountingBody) { return nil, nil }},
}

func makePost(t *testing.T, ctx context.Context, url string, b postBody) (*http.Request, *testkit.CountingBody) {
	t.Helper()
	rd, cb := b.make()
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, url, rd)
	require.NoError(t, err)
	if cb != nil {
		r.Body = cb
		r.ContentLength = int64(len(postPayload))
	}
	return r, cb
}

func TestPOSTReachesAnHTTP1ServerOnce(t *testing.T) {
	for name, misbehave := range h1Behaviours {
		for _, b := range postBodies {
			t.Run(name+"/"+b.name, func(t *testing.T) {
				// The second connection (a keep-alive reuse is the first
				// request's) warms up with a GET so that the POST also goes
				// over a reused connection in the "reused" case below.
				srv := testkit.NewH1Server(t, func(n int, c *net.TCPConn, br *bufio.Reader, r *http.Request) bool {
					if r.Method == http.MethodGet {
						_, _ = io.Copy(io.Discard, r.Body)
						testkit.WriteResponse(c, 200, "", "warm")
						return true
					}
					misbehave(c, br, r)
					return false
				})
				for _, reused := range []bool{false, true} {
					srv.Requests.Store(0)
					rt := testkit.NewRT(t, nil)
					if reused {
						wr, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, srv.URL, nil))
						require.NoError(t, err)
						_, _ = io.Copy(io.Discard, wr.Body)
						wr.Body.Close()
						srv.Requests.Store(0)
					}
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					req, cb := makePost(t, ctx, srv.URL, b)
					res, err := rt.RoundTrip(req)
					if err == nil {
						_, _ = io.Copy(io.Discard, res.Body)
						res.Body.Close()
					}
					cancel()
					time.Sleep(20 * time.Millisecond)
					assert.Equal(t, int32(1), srv.Requests.Load(), "reused=%v: the POST reached the server once (err=%v)", reused, err)
					if cb != nil {
						testkit.RequireClosedOnce(t, cb)
					}
				}
			})
		}
	}
}

// h2Cases are the ways the raw HTTP/2 server answers the first request.
func h2Cases() map[string]testkit.H2Action {
	cases := map[string]testkit.H2Action{}
	for code := uint32(0); code <= 0xd; code++ {
		cases[fmt.Sprintf("RST_STREAM %#x after the body", code)] = testkit.H2Action{Kind: testkit.H2Reset, Code: code}
		cases[fmt.Sprintf("RST_STREAM %#x before the body", code)] = testkit.H2Action{Kind: testkit.H2Reset, Code: code, Early: true}
	}
	cases["RST_STREAM 0xff (unknown)"] = testkit.H2Action{Kind: testkit.H2Reset, Code: 0xff}
	cases["200 headers then RST_STREAM INTERNAL_ERROR"] = testkit.H2Action{Kind: testkit.H2RespondThenReset, Status: 200, Code: 2}
	cases["503 before the body"] = testkit.H2Action{Kind: testkit.H2Respond, Status: 503, Early: true}
	cases["200 before the body"] = testkit.H2Action{Kind: testkit.H2Respond, Status: 200, Early: true}
	lasts := map[string]func(uint32) uint32{
		"last=0":        func(uint32) uint32 { return 0 },
		"last=stream-2": func(s uint32) uint32 { return max(s, 2) - 2 },
		"last=stream":   func(s uint32) uint32 { return s },
		"last=stream+2": func(s uint32) uint32 { return s + 2 },
		"last=2^31-1":   func(uint32) uint32 { return 1<<31 - 1 },
	}
	for ln, last := range lasts {
		for _, code := range []uint32{0, 2} {
			cases[fmt.Sprintf("GOAWAY %s code %d, close", ln, code)] = testkit.H2Action{Kind: testkit.H2GoAway, Code: code, LastStream: last}
			cases[fmt.Sprintf("GOAWAY %s code %d, close, before the body", ln, code)] = testkit.H2Action{Kind: testkit.H2GoAway, Code: code, LastStream: last, Early: true}
		}
		if ln == "last=0" || ln == "last=stream-2" { // a kept connection with last >= stream just waits
			cases["GOAWAY "+ln+" code 0, kept open"] = testkit.H2Action{Kind: testkit.H2GoAwayKeep, LastStream: last}
		}
	}
	cases["TCP close without a frame"] = testkit.H2Action{Kind: testkit.H2Close}
	cases["TCP close before the body"] = testkit.H2Action{Kind: testkit.H2Close, Early: true}
	cases["TCP reset without a frame"] = testkit.H2Action{Kind: testkit.H2RST}
	return cases
}

func TestPOSTReachesAnHTTP2ServerOnceRST(t *testing.T) {
	testPOSTReachesAnHTTP2ServerOnce(t, "RST")
}

func TestPOSTReachesAnHTTP2ServerOnceGOAWAYAndClose(t *testing.T) {
	testPOSTReachesAnHTTP2ServerOnce(t, "")
}

// unprocessed reports whether the server's action on a POST's first stream
// (stream 1) says that it did not process it (RFC 9113 §8.7): a stream
// refused with REFUSED_STREAM, or above the last stream ID of a GOAWAY.
func unprocessed(a testkit.H2Action) bool {
	switch a.Kind {
	case testkit.H2Reset:
		return a.Code == 0x7
	case testkit.H2GoAway, testkit.H2GoAwayKeep:
		return a.LastStream(1) < 1
	}
	return false
}

func testPOSTReachesAnHTTP2ServerOnce(t *testing.T, prefix string) {
	// A POST without GetBody through retryhttp must reach the server once,
	// unless the server said it did not process it (a refused stream, a
	// stream above a GOAWAY's last): retryhttp then sends it again, byte
	// for byte, and the server processes it once. For a POST with its own
	// GetBody or without a body, net/http's HTTP/2 client makes its own
	// resends (golang/go#47635); retryhttp must not add to what bare
	// net/http does where the server may have processed it, and the test
	// reports where bare net/http itself sends the POST twice.
	for name, action := range h2Cases() {
		if (prefix == "RST") != strings.HasPrefix(name, "RST") {
			continue
		}
		for _, b := range postBodies {
			t.Run(name+"/"+b.name, func(t *testing.T) {
				counts := map[bool]int{}
				for _, bare := range []bool{true, false} {
					srv := testkit.NewH2Server(t, testkit.FirstThen(1, action))
					var rt http.RoundTripper = srv.Client
					if !bare {
						rt = testkit.NewRT(t, srv.Client)
					}
					timeout := 3 * time.Second
					if action.Kind == testkit.H2GoAwayKeep && !unprocessed(action) {
						timeout = 300 * time.Millisecond
					}
					ctx, cancel := context.WithTimeout(context.Background(), timeout)
					req, cb := makePost(t, ctx, srv.URL, b)
					res, err := rt.RoundTrip(req)
					status := 0
					if err == nil {
						status = res.StatusCode
						_, _ = io.Copy(io.Discard, res.Body)
						res.Body.Close()
					}
					cancel()
					time.Sleep(20 * time.Millisecond)
					heads, _, _ := srv.Stats()
					counts[bare] = heads
					if cb != nil {
						testkit.RequireClosedOnce(t, cb)
					}
					switch {
					case !bare && unprocessed(action):
						assert.Equal(t, http.StatusOK, status, "the POST the server did not process was sent again (err=%v)", err)
						assert.Equal(t, 2, heads, "once refused, once processed")
					case !bare && b.name == "body without GetBody":
						assert.Equal(t, 1, heads, "the POST reached the server once (err=%v)", err)
					}
					if bare && heads > 1 {
						t.Logf("bare net/http itself sent this POST %d times", heads)
					}
				}
				if !unprocessed(action) {
					assert.LessOrEqual(t, counts[false], counts[true], "retryhttp sends the POST no more often than bare net/http")
				}
			})
		}
	}
}

func TestPOSTWithBodyStreamedPastTheBufferOverHTTP2(t *testing.T) {
	// A 200 kB POST (past the replay buffer) refused mid-body with
	// PROTOCOL_ERROR: it must reach the server once and come back as an
	// error; its body closed once.
	srv := testkit.NewH2Server(t, testkit.FirstThen(1, testkit.H2Action{Kind: testkit.H2Reset, Code: 1}))
	rt := testkit.NewRT(t, srv.Client)
	cb := testkit.NewCountingBody(bytes.Repeat([]byte("x"), 200<<10))
	req := testkit.NewReq(t, http.MethodPost, srv.URL, cb)
	_, err := rt.RoundTrip(req)
	require.Error(t, err)
	heads, _, _ := srv.Stats()
	assert.Equal(t, 1, heads)
	testkit.RequireClosedOnce(t, cb)
	assert.False(t, strings.Contains(err.Error(), "after 2 attempts"))
	var re *retryhttp.Error
	if assert.ErrorAs(t, err, &re) {
		assert.Equal(t, 1, re.Attempts)
	}
}

func TestBodylessPOSTIsResentByNetHTTPAsWithoutRetryhttp(t *testing.T) {
	// A POST without a body (a "trigger" call: POST /jobs/42/run) whose
	// stream the server resets with PROTOCOL_ERROR after it may have
	// processed it is resent by net/http's HTTP/2 client itself, which
	// resends any request whose Body is nil (golang/go#47635): through
	// bare net/http exactly as through retryhttp, which hands the request
	// over as it is and adds no send of its own. The README documents it.
	counts := map[bool]int{}
	for _, bare := range []bool{true, false} {
		srv := testkit.NewH2Server(t, testkit.FirstThen(1, testkit.H2Action{Kind: testkit.H2Reset, Code: 0x1}))
		var rt http.RoundTripper = srv.Client
		if !bare {
			rt = testkit.NewRT(t, srv.Client)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"jobs/42/run", nil)
		require.NoError(t, err)
		res, err := rt.RoundTrip(req)
		if err == nil {
			res.Body.Close()
		}
		cancel()
		counts[bare], _, _ = srv.Stats()
	}
	assert.Equal(t, 2, counts[true], "bare net/http resends it")
	assert.Equal(t, counts[true], counts[false], "retryhttp sends it exactly as often as bare net/http")
}

func TestPOSTResentByRetryhttpAfterNetHTTPsOwnResendFailedToDial(t *testing.T) {
	// The server processes a POST, then resets its stream with
	// PROTOCOL_ERROR (what golang/go#47635 is about) and stops accepting
	// connections for a moment (a proxy or server restarting).
	//
	// Bare net/http resends a POST that has GetBody (every POST made with
	// http.NewRequest and a strings.Reader, bytes.Reader or bytes.Buffer)
	// or no body on a new connection; that dial is refused and net/http
	// returns the dial error: the server saw the POST once.
	//
	// Through retryhttp, that dial error is classified "connect" ("the
	// server never saw the request"), which retries even a POST: the
	// server, back up, receives the POST a second time. README: "never
	// sent twice by retryhttp once the server may have seen it; it is sent
	// again only when its connection was never made".
	for _, withBody := range []bool{true, false} {
		for _, bare := range []bool{true, false} {
			t.Run(fmt.Sprintf("body=%v/bare=%v", withBody, bare), func(t *testing.T) {
				var srv *testkit.H2Server
				var srvMu sync.Mutex
				srvMu.Lock()
				srv = testkit.NewH2Server(t, func(n int) testkit.H2Action {
					if n == 1 {
						// Stop accepting before the reset goes out, so that
						// net/http's own resend finds no listener.
						srvMu.Lock()
						s := srv
						srvMu.Unlock()
						s.Down()
						time.AfterFunc(150*time.Millisecond, func() { _ = s.Up() })
						return testkit.H2Action{Kind: testkit.H2Reset, Code: 0x1} // after the whole request
					}
					return testkit.H2Action{Kind: testkit.H2Respond, Status: 200}
				})
				srvMu.Unlock()
				var rt http.RoundTripper = srv.Client
				if !bare {
					rt = retryhttp.New(srv.Client, retryhttp.WithBudget(nil),
						retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: 400 * time.Millisecond, Jitter: retryhttp.NoJitter}))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				var body io.Reader
				if withBody {
					body = strings.NewReader(`{"amount": 100}`) // http.NewRequest sets GetBody
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"payments", body)
				require.NoError(t, err)
				res, err := rt.RoundTrip(req)
				if err == nil {
					res.Body.Close()
				}
				time.Sleep(200 * time.Millisecond)
				heads, complete, _ := srv.Stats()
				t.Logf("err=%v", err)
				assert.Equal(t, 1, heads, "the POST reached the server %d times (%d whole)", heads, complete)
			})
		}
	}
}
