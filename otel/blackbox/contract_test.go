package blackbox_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	retryhttpotel "github.com/retryhttp/retryhttp/otel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWithRecorderNil(t *testing.T) {
	srv := newScript(t, 503, 200)
	ev := &events{}
	rt := retryhttp.New(nil, retryhttp.WithPolicy(fast), retryhttp.WithRecorder(nil), retryhttp.WithRecorder(ev.record), retryhttp.WithRecorder(nil))
	defer rt.CloseIdleConnections()
	resp, _, err := do(t, rt, get(t, context.Background(), srv.URL))
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	assert.Len(t, ev.kind(retryhttp.EventRequest), 1)
	only := retryhttp.New(nil, retryhttp.WithPolicy(fast), retryhttp.WithRecorder(nil))
	defer only.CloseIdleConnections()
	_, _, err = do(t, only, get(t, context.Background(), srv.URL))
	require.NoError(t, err)
}

func TestSeveralRecordersInOrder(t *testing.T) {
	srv := newScript(t, 503, 503, 200)
	var mu sync.Mutex
	var order []string
	rec := func(name string) func(retryhttp.Event) {
		return func(e retryhttp.Event) {
			mu.Lock()
			order = append(order, name+":"+e.Kind.String())
			mu.Unlock()
		}
	}
	tr := newTracing(t)
	rt := retryhttp.New(retryhttpotel.NewBase(nil, otelOpts(tr)...), retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil),
		retryhttp.WithRecorder(rec("a")), retryhttpotel.WithEvents(), retryhttp.WithRecorder(rec("b")))
	defer rt.CloseIdleConnections()
	ctx, span := tr.caller(context.Background())
	_, _, err := do(t, rt, get(t, ctx, srv.URL))
	require.NoError(t, err)
	span.End()
	require.Len(t, order, 12, "%v", order) // 3 attempts + 2 retries + 1 request, twice
	for i := 0; i < len(order); i += 2 {
		assert.Equal(t, "a:"+order[i][2:], order[i])
		assert.Equal(t, "b:"+order[i][2:], order[i+1])
	}
	assert.Len(t, eventsNamed(tr.named(t, "caller"), retryhttpotel.EventRetry), 2)
}

// Everything together in every order (a few permutations) counts the same.
func TestAllOptionsInAnyOrder(t *testing.T) {
	srv := newScript(t, 503, 503, 200)
	tr := newTracing(t)
	for perm := 0; perm < 6; perm++ {
		reg, m := promAndMeter(t)
		ev := &events{}
		var logs atomic.Int32
		logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) { logs.Add(1); return len(p), nil }), nil))
		opts := []retryhttp.Option{retryhttpotel.WithEvents(), mustMetrics(t, m), retryhttp.WithMetrics(promMetrics(t, reg)), retryhttp.WithLogger(logger), retryhttp.WithRecorder(ev.record)}
		rand.New(rand.NewPCG(uint64(perm), 1)).Shuffle(len(opts), func(i, j int) { opts[i], opts[j] = opts[j], opts[i] })
		rt := retryhttp.New(retryhttpotel.NewBase(nil, otelOpts(tr)...), append([]retryhttp.Option{retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil)}, opts...)...)
		srv.n.Store(0)
		tr.sr.Reset()
		ctx, span := tr.caller(context.Background())
		_, _, err := do(t, rt, get(t, ctx, srv.URL))
		require.NoError(t, err)
		span.End()
		rt.CloseIdleConnections()
		requireSeriesAgree(t, reg, m)
		assert.Len(t, ev.kind(retryhttp.EventRetry), 2, "perm %d", perm)
		assert.Equal(t, int32(2), logs.Load(), "perm %d: one log record per retry", perm)
		assert.Len(t, eventsNamed(tr.named(t, "caller"), retryhttpotel.EventRetry), 2, "perm %d", perm)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// The RoundTripper contract with NewBase in the stack.
func TestRequestNeverModified(t *testing.T) {
	srv := newScript(t, 503, 503, 200)
	tr := newTracing(t)
	rt := otelRT(t, tr, retryhttp.WithBeforeRetry(func(next *http.Request, _ retryhttp.Attempt) error {
		next.Header.Set("X-Retry", "yes")
		return nil
	}))
	ctx, span := tr.caller(context.Background())
	defer span.End()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, srv.URL+"/p?q=1", strings.NewReader("body"))
	require.NoError(t, err)
	req.Header.Set("X-Mine", "1")
	before := *req
	beforeHeader := req.Header.Clone()
	beforeURL := *req.URL
	_, _, err = do(t, rt, req)
	require.NoError(t, err)
	assert.Equal(t, beforeHeader, req.Header)
	assert.Equal(t, beforeURL, *req.URL)
	assert.True(t, before.Body == req.Body, "the Body field is unchanged")
	assert.Equal(t, before.Context(), req.Context())
	assert.Equal(t, before.Host, req.Host)
	for i, r := range srv.seen() {
		assert.Equal(t, "1", r.Header.Get("X-Mine"), "attempt %d", i+1)
		assert.Len(t, r.Traceparent, 1, "attempt %d: exactly one traceparent", i+1)
	}
}

// Cancel while a slow response is on its way: RoundTrip returns promptly.
func TestPromptCancellationDuringAnAttempt(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	arrived := make(chan struct{}, 1)
	srv := newFuncServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	tr := newTracing(t)
	rt := otelRT(t, tr)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-arrived; cancel() }()
	start := time.Now()
	resp, err := rt.RoundTrip(get(t, ctx, srv.URL))
	require.Nil(t, resp)
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, time.Since(start), 5*time.Second)
	tr.waitAllEnded(t)
}

// Connections are reused across retries and requests through NewBase, as
// without it: the bodies of retried responses are drained and closed
// through otelhttp's wrapper.
func TestConnectionsReusedThroughNewBase(t *testing.T) {
	for _, withOtel := range []bool{false, true} {
		srv := newFuncServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
			if n%3 != 0 {
				w.WriteHeader(503)
				_, _ = io.WriteString(w, strings.Repeat("e", 2000))
				return
			}
			_, _ = io.WriteString(w, "ok")
		})
		var rt *retryhttp.Transport
		if withOtel {
			rt = retryhttp.New(retryhttpotel.NewBase(nil, otelOpts(newTracing(t))...), retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil), retryhttpotel.WithEvents())
		} else {
			rt = retryhttp.New(nil, retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil))
		}
		for i := 0; i < 20; i++ {
			resp, _, err := do(t, rt, get(t, context.Background(), srv.URL))
			require.NoError(t, err)
			require.Equal(t, 200, resp.StatusCode)
		}
		t.Logf("otel=%v: %d connections for 60 attempts", withOtel, srv.conns.Load())
		assert.Equal(t, int32(1), srv.conns.Load(), "otel=%v: sequential attempts reuse one connection", withOtel)
		rt.CloseIdleConnections()
		deadline := time.Now().Add(5 * time.Second)
		for srv.open.Load() != 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		assert.Zero(t, srv.open.Load(), "otel=%v: CloseIdleConnections through NewBase closes them", withOtel)
	}
}

type idleCounter struct {
	http.RoundTripper
	n atomic.Int32
}

func (c *idleCounter) CloseIdleConnections() { c.n.Add(1) }

func TestCloseIdleConnectionsPassesThrough(t *testing.T) {
	base := &idleCounter{RoundTripper: http.DefaultTransport}
	rt := retryhttp.New(retryhttpotel.NewBase(base))
	rt.CloseIdleConnections()
	(&http.Client{Transport: rt}).CloseIdleConnections()
	assert.Equal(t, int32(2), base.n.Load())
	// Through two Transports.
	outer := retryhttp.New(retryhttp.New(retryhttpotel.NewBase(base)))
	outer.CloseIdleConnections()
	assert.Equal(t, int32(3), base.n.Load())
	// NewBase used directly.
	if c, ok := retryhttpotel.NewBase(base).(interface{ CloseIdleConnections() }); assert.True(t, ok, "NewBase's RoundTripper has CloseIdleConnections") {
		c.CloseIdleConnections()
		assert.Equal(t, int32(4), base.n.Load())
	}
}

// No goroutine or connection left behind, on every path, with all options.
func TestNothingLeftBehind(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		release := make(chan struct{})
		defer close(release)
		srv := newFuncServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
			switch n % 5 {
			case 0:
				w.WriteHeader(200)
			case 1:
				w.WriteHeader(503)
			case 2: // slow: hedged or canceled
				select {
				case <-release:
				case <-r.Context().Done():
				case <-time.After(200 * time.Millisecond):
				}
				w.WriteHeader(200)
			case 3:
				hj, ok := w.(http.Hijacker)
				if ok {
					c, _, _ := hj.Hijack()
					_ = c.Close()
				}
			case 4:
				w.WriteHeader(429)
			}
		})
		tr := newTracing(t)
		reg, m := promAndMeter(t)
		rt := retryhttp.New(retryhttpotel.NewBase(nil, otelOpts(tr)...), retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil),
			retryhttp.WithHedging(retryhttp.Hedging{Delay: 20 * time.Millisecond}), retryhttpotel.WithEvents(),
			mustMetrics(t, m), retryhttp.WithMetrics(promMetrics(t, reg)))
		for i := 0; i < 40; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(300))*time.Millisecond)
			resp, err := rt.RoundTrip(get(t, ctx, srv.URL))
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
			cancel()
		}
		tr.waitAllEnded(t)
		requireSeriesAgree(t, reg, m)
		rt.CloseIdleConnections()
		srv.Close()
	}()
	requireGoroutinesBack(t, before)
}

// NewBase(nil) is the same default base as retryhttp.New(nil): it uses the
// proxy from the environment like cleanhttp's pooled transport.
func TestNilBaseIsTheDefaultPooledTransport(t *testing.T) {
	if os.Getenv("BLACKBOX_CHILD") != t.Name() {
		// The proxy: a loopback server that answers any absolute-form request.
		var proxied atomic.Int32
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func(c net.Conn) {
					defer c.Close()
					br := bufio.NewReader(c)
					for {
						req, err := http.ReadRequest(br)
						if err != nil {
							return
						}
						_, _ = io.Copy(io.Discard, req.Body)
						if req.URL.IsAbs() {
							proxied.Add(1)
						}
						_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
					}
				}(c)
			}
		}()
		defer l.Close()
		t.Setenv("HTTP_PROXY", "http://"+l.Addr().String())
		t.Setenv("BLACKBOX_CHILD", t.Name())
		inChildWithEnv(t)
		return
	}
	u := "http://retryhttp-blackbox.invalid/x"
	for _, rt := range []http.RoundTripper{retryhttp.New(nil), retryhttp.New(retryhttpotel.NewBase(nil))} {
		resp, _, err := do(t, rt, get(t, context.Background(), u))
		require.NoError(t, err, "%T through HTTP_PROXY", rt)
		require.Equal(t, 200, resp.StatusCode)
	}
}

func inChildWithEnv(t *testing.T) {
	t.Helper()
	out, err := runSelf(t)
	if err != nil {
		t.Fatalf("child failed: %v\n%s", err, out)
	}
}

var _ = errors.New
var _ = url.Parse
