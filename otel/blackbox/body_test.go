package blackbox_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	retryhttpotel "github.com/retryhttp/retryhttp/otel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// countingBody is a request body that counts its Close calls.
type countingBody struct {
	r      io.Reader
	closes atomic.Int32
}

func (c *countingBody) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *countingBody) Close() error               { c.closes.Add(1); return nil }

func newBody(s string) *countingBody { return &countingBody{r: strings.NewReader(s)} }

// requireClosedOnce waits for the body to be closed and checks it is closed
// exactly once.
func requireClosedOnce(t *testing.T, c *countingBody) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.closes.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a second Close, if any, has had time
	require.Equal(t, int32(1), c.closes.Load(), "the caller's body must be closed exactly once")
}

func otelRT(t *testing.T, tr *tracing, opts ...retryhttp.Option) *retryhttp.Transport {
	t.Helper()
	all := append([]retryhttp.Option{retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil), retryhttpotel.WithEvents()}, opts...)
	rt := retryhttp.New(retryhttpotel.NewBase(nil, otelOpts(tr)...), all...)
	t.Cleanup(rt.CloseIdleConnections)
	return rt
}

func TestPutWithGetBodyThroughOtelhttp(t *testing.T) {
	srv := newScript(t, 503, 503, 200)
	tr := newTracing(t)
	rt := otelRT(t, tr)
	const payload = "the payload, byte for byte"
	req, err := http.NewRequest(http.MethodPut, srv.URL, strings.NewReader(payload))
	require.NoError(t, err)
	caller := newBody(payload)
	req.Body = caller
	var getBodies atomic.Int32
	var gotten []*countingBody
	req.GetBody = func() (io.ReadCloser, error) {
		getBodies.Add(1)
		b := newBody(payload)
		gotten = append(gotten, b)
		return b, nil
	}
	resp, _, err := do(t, rt, req)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	for i, r := range srv.seen() {
		assert.Equal(t, payload, r.Body, "attempt %d body", i+1)
	}
	requireClosedOnce(t, caller)
	for i, b := range gotten {
		assert.Equal(t, int32(1), b.closes.Load(), "GetBody's body %d closed once", i)
	}
	assert.Equal(t, []int64{-1, 1, 2}, resendCounts(tr.clientSpans()))
}

func TestStreamedPostWithIdempotencyKeyIsReplayedThroughOtelhttp(t *testing.T) {
	srv := newScript(t, 503, 503, 200)
	tr := newTracing(t)
	rt := otelRT(t, tr)
	const payload = "streamed payload"
	req, err := http.NewRequest(http.MethodPost, srv.URL, nil)
	require.NoError(t, err)
	caller := newBody(payload)
	req.Body = caller
	req.ContentLength = -1
	req.Header.Set("Idempotency-Key", "k1")
	resp, _, err := do(t, rt, req)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	got := srv.seen()
	require.Len(t, got, 3)
	for i, r := range got {
		assert.Equal(t, payload, r.Body, "attempt %d body", i+1)
	}
	requireClosedOnce(t, caller)
	assert.Equal(t, []int64{-1, 1, 2}, resendCounts(tr.clientSpans()))
}

func TestStreamedPostWithoutKeyIsNotRetried(t *testing.T) {
	srv := newScript(t, 503, 200)
	tr := newTracing(t)
	rt := otelRT(t, tr)
	req, err := http.NewRequest(http.MethodPost, srv.URL, nil)
	require.NoError(t, err)
	caller := newBody("once")
	req.Body = caller
	ctx, span := tr.caller(context.Background())
	req = req.WithContext(ctx)
	resp, _, err := do(t, rt, req)
	require.NoError(t, err)
	require.Equal(t, 503, resp.StatusCode)
	span.End()
	require.Len(t, srv.seen(), 1)
	requireClosedOnce(t, caller)
	g := eventsNamed(tr.named(t, "caller"), retryhttpotel.EventGiveUp)
	require.Len(t, g, 1)
	r, _ := eventAttr(g[0], retryhttpotel.ReasonKey)
	assert.Equal(t, retryhttp.ReasonMethod, r.AsString())
}

// A POST without GetBody must reach the base without one; with otelhttp in
// between, does the request net/http sees gain a GetBody?
func TestPostWithoutGetBodyReachesTheInnerBaseWithoutOne(t *testing.T) {
	srv := newScript(t, 200)
	var sawGetBody atomic.Int32
	inner := rtFunc(func(r *http.Request) (*http.Response, error) {
		if r.GetBody != nil {
			sawGetBody.Add(1)
		}
		return http.DefaultTransport.RoundTrip(r)
	})
	tr := newTracing(t)
	rt := retryhttp.New(retryhttpotel.NewBase(inner, otelOpts(tr)...), retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil))
	req, err := http.NewRequest(http.MethodPost, srv.URL, nil)
	require.NoError(t, err)
	req.Body = newBody("x")
	_, _, err = do(t, rt, req)
	require.NoError(t, err)
	assert.Zero(t, sawGetBody.Load())
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A streamed body past the replay buffer: give-up reason body.
func TestStreamedBodyPastTheBufferGivesUpWithReasonBody(t *testing.T) {
	srv := newScript(t, 503, 200)
	tr := newTracing(t)
	ev := &events{}
	rt := otelRT(t, tr, retryhttp.WithReplayBuffer(8), retryhttp.WithRecorder(ev.record))
	ctx, span := tr.caller(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, srv.URL, nil)
	require.NoError(t, err)
	caller := newBody(strings.Repeat("y", 4096))
	req.Body = caller
	resp, _, err := do(t, rt, req)
	require.NoError(t, err)
	require.Equal(t, 503, resp.StatusCode)
	span.End()
	requireClosedOnce(t, caller)
	g := eventsNamed(tr.named(t, "caller"), retryhttpotel.EventGiveUp)
	require.Len(t, g, 1)
	r, _ := eventAttr(g[0], retryhttpotel.ReasonKey)
	assert.Equal(t, retryhttp.ReasonBody, r.AsString())
	reqs := ev.kind(retryhttp.EventRequest)
	require.Len(t, reqs, 1)
	assert.Equal(t, "not_retryable", reqs[0].Outcome)
	assert.Equal(t, retryhttp.ReasonBody, reqs[0].Reason)
}

// Connection refused with a POST body: retried (never sent), body closed once.
func TestRefusedPostBodyClosedOnce(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	tr := newTracing(t)
	ev := &events{}
	rt := otelRT(t, tr, retryhttp.WithRecorder(ev.record))
	ctx, span := tr.caller(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/", nil)
	require.NoError(t, err)
	caller := newBody("data")
	req.Body = caller
	resp, err := rt.RoundTrip(req)
	require.Error(t, err)
	require.Nil(t, resp)
	span.End()
	requireClosedOnce(t, caller)
	var rerr *retryhttp.Error
	require.True(t, errors.As(err, &rerr))
	spans := tr.clientSpans()
	assert.Len(t, spans, rerr.Attempts)
	caller2 := tr.named(t, "caller")
	re := eventsNamed(caller2, retryhttpotel.EventRetry)
	assert.Len(t, re, rerr.Attempts-1)
	for _, e := range re {
		r, _ := eventAttr(e, retryhttpotel.ReasonKey)
		assert.Equal(t, "connect", r.AsString())
	}
	g := eventsNamed(caller2, retryhttpotel.EventGiveUp)
	require.Len(t, g, 1)
	r, _ := eventAttr(g[0], retryhttpotel.ReasonKey)
	assert.Equal(t, rerr.Reason, r.AsString())
	n, _ := eventAttr(g[0], retryhttpotel.AttemptsKey)
	assert.Equal(t, int64(rerr.Attempts), n.AsInt64())
}

// A request the base never sees (bad URL scheme) still has its body closed.
func TestUnsupportedSchemeBodyClosedOnce(t *testing.T) {
	tr := newTracing(t)
	rt := otelRT(t, tr)
	req, err := http.NewRequest(http.MethodPut, "ftp://127.0.0.1/x", bytes.NewReader([]byte("z")))
	require.NoError(t, err)
	caller := newBody("z")
	req.Body = caller
	resp, err := rt.RoundTrip(req)
	require.Error(t, err)
	require.Nil(t, resp)
	requireClosedOnce(t, caller)
}
