package hedging_test

// Request bodies: which requests are hedged (counted at the server), GetBody
// that misbehaves on its second call, the caller's Body closed exactly once,
// and GetBody's copies closed.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowFirst answers the first copy of each request after 80 ms (or, when
// the request carries hangFirst, never: only a hedge can answer it), the
// others at once; every answer echoes the body it received.
func slowFirst(t *testing.T, h2 bool) (*upstream, *sync.Map) {
	bodies := &sync.Map{} // id -> []string (bodies received, in arrival order)
	var mu sync.Mutex
	u := newUpstream(t, h2, func(id string, k int, w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		mu.Lock()
		v, _ := bodies.Load(id)
		list, _ := v.([]string)
		bodies.Store(id, append(list, string(b)))
		mu.Unlock()
		if k == 1 && id != "warm" {
			wait := 80 * time.Millisecond
			if r.Header.Get(hangFirst) != "" {
				wait = time.Minute // until the hedge wins
			}
			if hang(r, wait) {
				return
			}
		}
		_, _ = w.Write(b)
	})
	// Warm a connection: a cold TLS handshake under load may outlast the
	// slow first copy and keep the hedge from arriving in time.
	rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: time.Hour})
	warm, _ := get(t, nil, u.url)
	warm.Header.Set(idHeader, "warm")
	res, err := rt.RoundTrip(warm)
	require.NoError(t, err)
	res.Body.Close()
	return u, bodies
}

// hangFirst marks a request whose first copy slowFirst never answers: one
// that must be hedged is answered by its hedge however late the machine
// runs the hedge's timer. A request that must not be hedged is answered by
// its first copy after 80 ms, time for a wrongful hedge to show.
const hangFirst = "X-Test-Hang-First"

func newBodyReq(t *testing.T, ctx context.Context, method, url string, body io.ReadCloser, getBody func() (io.ReadCloser, error)) (*http.Request, string) {
	t.Helper()
	if ctx == nil {
		ctx = context.Background()
	}
	r, err := http.NewRequestWithContext(ctx, method, url, nil)
	require.NoError(t, err)
	if body != nil {
		r.Body = body
		r.ContentLength = -1
	}
	r.GetBody = getBody
	id := time.Now().Format("150405.000000000")
	r.Header.Set(idHeader, id)
	return r, id
}

func TestWhichRequestsAreHedged(t *testing.T) {
	payload := "payload-bytes"
	getBody := func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(payload)), nil }
	type tc struct {
		name    string
		method  string
		body    bool
		getBody bool
		header  string
		ctx     func(context.Context) context.Context
		policy  *retryhttp.Policy
		noBody  bool // Body: http.NoBody, no GetBody
		want    int  // copies the server receives
	}
	cases := []tc{
		{name: "GET", method: "GET", want: 2},
		{name: "HEAD", method: "HEAD", want: 2},
		{name: "DELETE", method: "DELETE", want: 2},
		{name: "OPTIONS", method: "OPTIONS", want: 2},
		{name: "PUT with GetBody", method: "PUT", body: true, getBody: true, want: 2},
		{name: "PUT streamed, no GetBody", method: "PUT", body: true, want: 1},
		{name: "POST with GetBody", method: "POST", body: true, getBody: true, want: 1},
		{name: "POST without body", method: "POST", want: 1},
		{name: "PATCH with GetBody", method: "PATCH", body: true, getBody: true, want: 1},
		{name: "POST with Idempotency-Key and GetBody", method: "POST", body: true, getBody: true, header: "Idempotency-Key", want: 2},
		{name: "POST with X-Idempotency-Key and GetBody", method: "POST", body: true, getBody: true, header: "X-Idempotency-Key", want: 2},
		{name: "POST with Idempotency-Key, streamed", method: "POST", body: true, header: "Idempotency-Key", want: 1},
		{name: "POST with ContextWithIdempotent and GetBody", method: "POST", body: true, getBody: true, ctx: retryhttp.ContextWithIdempotent, want: 2},
		{name: "GET with Body http.NoBody", method: "GET", noBody: true, want: 2},
		{name: "POST without body, Idempotency-Key", method: "POST", header: "Idempotency-Key", want: 2},
		{name: "POST without body, ContextWithIdempotent", method: "POST", ctx: retryhttp.ContextWithIdempotent, want: 2},
		{name: "GET with ContextWithoutRetries", method: "GET", ctx: retryhttp.ContextWithoutRetries, want: 1},
		{name: "PUT with GetBody, ContextWithoutRetries", method: "PUT", body: true, getBody: true, ctx: retryhttp.ContextWithoutRetries, want: 1},
		{name: "GET with per-request MaxAttempts 1", method: "GET", ctx: func(c context.Context) context.Context {
			return retryhttp.ContextWithPolicy(c, retryhttp.Policy{MaxAttempts: 1})
		}, want: 1},
		{name: "GET with Transport MaxAttempts 1", method: "GET", policy: &retryhttp.Policy{MaxAttempts: 1}, want: 1},
	}
	for _, proto := range []string{"h1", "h2"} {
		u, bodies := slowFirst(t, proto == "h2")
		for _, c := range cases {
			t.Run(proto+"/"+c.name, func(t *testing.T) {
				ctx := context.Background()
				if c.ctx != nil {
					ctx = c.ctx(ctx)
				}
				var body *trackedBody
				var rc io.ReadCloser
				if c.body {
					body = &trackedBody{Reader: strings.NewReader(payload)}
					rc = body
				}
				var gb func() (io.ReadCloser, error)
				if c.getBody {
					gb = getBody
				}
				req, id := newBodyReq(t, ctx, c.method, u.url, rc, gb)
				if c.noBody {
					req.Body, req.GetBody, req.ContentLength = http.NoBody, nil, 0
				}
				if c.header != "" {
					req.Header.Set(c.header, "k-"+id)
				}
				if c.want == 2 {
					req.Header.Set(hangFirst, "1")
				}
				opts := []retryhttp.Option{}
				if c.policy != nil {
					opts = append(opts, retryhttp.WithPolicy(*c.policy))
				}
				rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: 10 * time.Millisecond}, opts...)
				res, err := rt.RoundTrip(req)
				require.NoError(t, err)
				got, _ := io.ReadAll(res.Body)
				res.Body.Close()
				assert.Equal(t, 200, res.StatusCode)
				assert.Equal(t, c.want, u.copies(id), "copies received")
				if c.body && c.method != "HEAD" {
					assert.Equal(t, payload, string(got))
					v, _ := bodies.Load(id)
					for _, b := range v.([]string) {
						assert.Equal(t, payload, b, "a copy carried another body")
					}
				}
				if body != nil {
					assert.True(t, waitFor(time.Second, func() bool { return body.closes.Load() >= 1 }))
					time.Sleep(20 * time.Millisecond)
					assert.Equal(t, int32(1), body.closes.Load(), "the caller's body must be closed exactly once")
				}
			})
		}
	}
}

// GetBody that misbehaves when the hedge calls it (the first copy sends
// req.Body itself, so that is GetBody's first call; the following calls
// behave). The first copy would succeed after 80 ms; whatever GetBody does,
// the request must not fail.
func TestGetBodyMisbehavingOnTheHedge(t *testing.T) {
	payload := "the original body"
	type tc struct {
		name      string
		callerBug bool // GetBody breaks its own contract: only log what happens
		second    func() (io.ReadCloser, error)
	}
	cases := []tc{
		{name: "error", second: func() (io.ReadCloser, error) { return nil, errors.New("GetBody: gone") }},
		{name: "nil body, nil error", second: func() (io.ReadCloser, error) { return nil, nil }},
		{name: "different body", callerBug: true, second: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("SOMETHING ELSE")), nil }},
		{name: "shorter body", callerBug: true, second: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("the")), nil }},
		{name: "body that fails to read", second: func() (io.ReadCloser, error) {
			return io.NopCloser(io.MultiReader(strings.NewReader("the"), errReader{})), nil
		}},
	}
	for _, proto := range []string{"h1", "h2"} {
		u, bodies := slowFirst(t, proto == "h2")
		for _, c := range cases {
			t.Run(proto+"/"+c.name, func(t *testing.T) {
				var calls atomic.Int32
				gb := func() (io.ReadCloser, error) {
					if calls.Add(1) == 1 {
						return c.second()
					}
					return io.NopCloser(strings.NewReader(payload)), nil
				}
				// A request as http.NewRequest makes it: Body and GetBody.
				req, err := http.NewRequest(http.MethodPut, u.url, strings.NewReader(payload))
				require.NoError(t, err)
				req.GetBody = gb
				id := "gb-" + proto + "-" + c.name
				req.Header.Set(idHeader, id)
				rec := &recorder{}
				rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: 10 * time.Millisecond}, retryhttp.WithObserver(rec.observe))
				res, err := rt.RoundTrip(req)
				require.NoError(t, err, "the first copy would have succeeded; attempts %+v", rec.of(id))
				got, _ := io.ReadAll(res.Body)
				res.Body.Close()
				assert.Equal(t, 200, res.StatusCode)
				if c.callerBug {
					t.Logf("response %q", got)
				} else {
					assert.Equal(t, payload, string(got), "the response echoes the body the winner carried")
				}
				v, _ := bodies.Load(id)
				list, _ := v.([]string)
				for _, b := range list {
					if b != payload {
						t.Logf("a copy carried %q (GetBody returned it)", b)
					}
				}
				t.Logf("GetBody calls %d, copies %d, attempts %+v", calls.Load(), u.copies(id), rec.of(id))
			})
		}
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("read failed") }

// GetBody that is not safe for concurrent use, with three hedges: under
// -race, overlapping calls are reported; an explicit overlap counter too.
func TestGetBodyCallsDoNotOverlap(t *testing.T) {
	payload := bytes.Repeat([]byte("p"), 100<<10)
	u := newUpstream(t, true, func(id string, k int, w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if k < 4 && hang(r, 200*time.Millisecond) {
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	var inside, overlaps atomic.Int32
	calls := 0 // deliberately unsynchronized
	var copies []*trackedBody
	var copiesMu sync.Mutex
	gb := func() (io.ReadCloser, error) {
		if inside.Add(1) > 1 {
			overlaps.Add(1)
		}
		defer inside.Add(-1)
		calls++
		time.Sleep(time.Millisecond)
		b := &trackedBody{Reader: bytes.NewReader(payload)}
		copiesMu.Lock()
		copies = append(copies, b)
		copiesMu.Unlock()
		return b, nil
	}
	rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: 2 * time.Millisecond, MaxHedges: 3},
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	for i := 0; i < 10; i++ {
		orig := &trackedBody{Reader: bytes.NewReader(payload)}
		req, id := newBodyReq(t, nil, http.MethodPut, u.url, orig, gb)
		req.ContentLength = int64(len(payload))
		res, err := rt.RoundTrip(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		assert.LessOrEqual(t, u.copies(id), 4)
		assert.True(t, waitFor(time.Second, func() bool { return orig.closes.Load() >= 1 }))
		time.Sleep(10 * time.Millisecond)
		assert.Equal(t, int32(1), orig.closes.Load(), "caller's body closed exactly once")
	}
	assert.Zero(t, overlaps.Load(), "GetBody was called concurrently with itself")
	// Every copy GetBody made was closed (by net/http or the Transport).
	ok := waitFor(2*time.Second, func() bool {
		copiesMu.Lock()
		defer copiesMu.Unlock()
		for _, b := range copies {
			if b.closes.Load() == 0 {
				return false
			}
		}
		return true
	})
	copiesMu.Lock()
	unclosed := 0
	for _, b := range copies {
		if b.closes.Load() == 0 {
			unclosed++
		}
	}
	n := len(copies)
	copiesMu.Unlock()
	assert.True(t, ok, "%d of %d GetBody copies were never closed", unclosed, n)
}

// The caller's Body is closed exactly once whether the first copy (which
// carries it) wins or loses, over HTTP/1 and HTTP/2.
func TestCallersBodyClosedOnceWhicheverCopyWins(t *testing.T) {
	payload := bytes.Repeat([]byte("q"), 200<<10)
	for _, proto := range []string{"h1", "h2"} {
		for _, firstWins := range []bool{true, false} {
			name := proto + "/hedge wins"
			if firstWins {
				name = proto + "/first wins"
			}
			t.Run(name, func(t *testing.T) {
				var u *upstream
				u = newUpstream(t, proto == "h2", func(id string, k int, w http.ResponseWriter, r *http.Request) {
					_, _ = io.Copy(io.Discard, r.Body)
					slow := (k == 1) != firstWins
					if slow {
						hang(r, time.Minute) // until the other copy wins
						return
					}
					if firstWins && !until(r, u.arrived(id, 2)) { // the first answers once the hedge is in
						return
					}
					_, _ = io.WriteString(w, "ok")
				})
				rt := hedgeRT(t, u.base, retryhttp.Hedging{Delay: 10 * time.Millisecond})
				for i := 0; i < 10; i++ {
					orig := &trackedBody{Reader: bytes.NewReader(payload)}
					var gbCopies []*trackedBody
					var mu sync.Mutex
					req, id := newBodyReq(t, nil, http.MethodPut, u.url, orig, func() (io.ReadCloser, error) {
						b := &trackedBody{Reader: bytes.NewReader(payload)}
						mu.Lock()
						gbCopies = append(gbCopies, b)
						mu.Unlock()
						return b, nil
					})
					req.ContentLength = int64(len(payload))
					id += string(rune('a' + i))
					req.Header.Set(idHeader, id)
					res, err := rt.RoundTrip(req)
					require.NoError(t, err)
					b, _ := io.ReadAll(res.Body)
					res.Body.Close()
					require.Equal(t, "ok", string(b))
					require.Equal(t, 2, u.copies(id))
					require.True(t, waitFor(time.Second, func() bool { return orig.closes.Load() >= 1 }), "caller's body never closed")
					time.Sleep(10 * time.Millisecond)
					require.Equal(t, int32(1), orig.closes.Load(), "caller's body closed more than once")
					require.True(t, waitFor(time.Second, func() bool {
						mu.Lock()
						defer mu.Unlock()
						for _, c := range gbCopies {
							if c.closes.Load() == 0 {
								return false
							}
						}
						return true
					}), "a GetBody copy was never closed")
				}
			})
		}
	}
}
