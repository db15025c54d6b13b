package sdk_test

// Helpers of the issue 11 review: an attempt recorder, goroutine ids, a
// log capture, simple loopback servers.

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/require"
)

// recorder keeps every Attempt an observer saw.
type recorder struct {
	mu sync.Mutex
	as []retryhttp.Attempt
	at []time.Time
}

func (r *recorder) observe(a retryhttp.Attempt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.as = append(r.as, a)
	r.at = append(r.at, time.Now())
}

func (r *recorder) all() []retryhttp.Attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]retryhttp.Attempt(nil), r.as...)
}

func (r *recorder) last(t *testing.T) retryhttp.Attempt {
	t.Helper()
	as := r.all()
	require.NotEmpty(t, as, "no Attempt was reported")
	return as[len(as)-1]
}

// goid returns the id of the calling goroutine.
func goid() int {
	var buf [64]byte
	n := runtime.Stack(buf[:], false)
	f := strings.Fields(strings.TrimPrefix(string(buf[:n]), "goroutine "))
	id, _ := strconv.Atoi(f[0])
	return id
}

// logBuf is a slog handler target safe for concurrent writes.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLogger() (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// statusServer answers the n-th request (1-based) with codes[n-1], or 200
// past the list, after reading the request body.
func statusServer(t *testing.T, codes ...int) (*httptest.Server, *int32Counter) {
	t.Helper()
	var c int32Counter
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		n := c.add()
		if n <= len(codes) {
			w.WriteHeader(codes[n-1])
			_, _ = io.WriteString(w, "status "+strconv.Itoa(codes[n-1]))
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(s.Close)
	return s, &c
}

type int32Counter struct {
	mu sync.Mutex
	n  int
}

func (c *int32Counter) add() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n
}

func (c *int32Counter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func always(d retryhttp.Decision) retryhttp.Classifier {
	return func(*http.Request, *http.Response, error) retryhttp.Decision { return d }
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
