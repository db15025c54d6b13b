// Package testkit holds what the black-box suites under blackbox/ share:
// loopback servers that misbehave on demand (raw HTTP/1 over TCP, raw
// HTTP/2 frames over TLS: internal/rawhttp's), bodies that count their
// Close calls, fake bases, and a goroutine settle for leak checks. Tests
// only.
package testkit

import (
	"bytes"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/internal/rawhttp"
	"github.com/stretchr/testify/require"
)

// fast is a policy that retries quickly, so tests need no fake clock.
var Fast = retryhttp.Policy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}

// newRT returns a Transport over a fresh pooled transport with fast retries
// and no budget, unless opts say otherwise.
func NewRT(t *testing.T, base http.RoundTripper, opts ...retryhttp.Option) *retryhttp.Transport {
	t.Helper()
	if base == nil {
		b := cleanhttp.DefaultPooledTransport()
		t.Cleanup(b.CloseIdleConnections)
		base = b
	}
	all := append([]retryhttp.Option{retryhttp.WithPolicy(Fast), retryhttp.WithBudget(nil)}, opts...)
	return retryhttp.New(base, all...)
}

// countingBody is a request body without GetBody that counts Close calls
// (and any Read after Close).
type CountingBody struct {
	r          io.Reader
	Closes     atomic.Int32
	readsAfter atomic.Int32
}

func NewCountingBody(b []byte) *CountingBody { return &CountingBody{r: bytes.NewReader(b)} }

func (c *CountingBody) Read(p []byte) (int, error) {
	if c.Closes.Load() > 0 {
		c.readsAfter.Add(1)
	}
	return c.r.Read(p)
}

func (c *CountingBody) Close() error {
	c.Closes.Add(1)
	return nil
}

// requireClosedOnce waits up to a second for the body to be closed, then
// checks that it stays closed exactly once.
func RequireClosedOnce(t *testing.T, c *CountingBody) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for c.Closes.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, int32(1), c.Closes.Load(), "the caller's body must be closed exactly once")
}

// req builds a request whose body (if any) has no GetBody.
func NewReq(t *testing.T, method, url string, body io.ReadCloser) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	if body != nil {
		r.Body = body
	}
	return r
}

type RoundTripFunc func(*http.Request) (*http.Response, error)

func (f RoundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// resp makes a response for a fake base.
func Resp(code int, body string) *http.Response {
	return &http.Response{StatusCode: code, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
}

// ---------------------------------------------------------------------------
// The raw HTTP/1 and HTTP/2 servers live in internal/rawhttp, which the
// root package's tests use too; these names keep the suites' spelling.

type (
	H1Server = rawhttp.H1Server
	H2Server = rawhttp.H2Server
	H2Kind   = rawhttp.H2Kind
	H2Action = rawhttp.H2Action
)

const (
	H2Respond          = rawhttp.H2Respond
	H2Reset            = rawhttp.H2Reset
	H2GoAway           = rawhttp.H2GoAway
	H2GoAwayKeep       = rawhttp.H2GoAwayKeep
	H2Close            = rawhttp.H2Close
	H2RST              = rawhttp.H2RST
	H2Silent           = rawhttp.H2Silent
	H2RespondThenReset = rawhttp.H2RespondThenReset
)

var (
	NewH1Server   = rawhttp.NewH1Server
	NewH2Server   = rawhttp.NewH2Server
	Reset         = rawhttp.Reset
	WriteResponse = rawhttp.WriteResponse
	WriteFrame    = rawhttp.WriteFrame
	H2Status      = rawhttp.H2Status
	FirstThen     = rawhttp.FirstThen
)

// ---------------------------------------------------------------------------
// Goroutines.

// settleGoroutines waits up to d for the goroutine count to fall to at most
// want, and returns the last count.
func SettleGoroutines(want int, d time.Duration) int {
	deadline := time.Now().Add(d)
	n := runtime.NumGoroutine()
	for n > want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		runtime.GC()
		n = runtime.NumGoroutine()
	}
	return n
}

func GoroutineDump() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
