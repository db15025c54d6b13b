package retryhttp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tricklingBody yields chunks of size bytes, every gap, n times: a slow
// upload that keeps going.
type tricklingBody struct {
	n, size int
	gap     time.Duration
	sent    int
}

func (b *tricklingBody) Read(p []byte) (int, error) {
	if b.sent == b.n {
		return 0, io.EOF
	}
	time.Sleep(b.gap)
	b.sent++
	return copy(p, strings.Repeat("u", min(b.size, len(p)))), nil
}

func (b *tricklingBody) Close() error { return nil }

func TestAttemptTimeoutNeverCutsAnUploadThatGoesOn(t *testing.T) {
	// An upload that takes 1.5 times the attempt timeout, a chunk every
	// 10 ms (a gap a hundred times shorter than the timeout's 1 s, which no
	// scheduling delay stretches that far): it is one attempt, and it
	// succeeds.
	up := newUpstream(t, statuses(200))
	base := cleanhttp.DefaultPooledTransport()
	t.Cleanup(base.CloseIdleConnections)
	var seen []Attempt
	tr := New(base, WithPolicy(Policy{AttemptTimeout: time.Second}),
		WithObserver(func(a Attempt) { seen = append(seen, a) }))
	body := &tricklingBody{n: 150, size: 1024, gap: 10 * time.Millisecond}
	req := mustRequest(t, http.MethodPut, up.URL, nil)
	req.Body, req.ContentLength = body, 150*1024
	start := time.Now()
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, int32(1), up.attempts.Load(), "never cut and sent again")
	assert.Greater(t, time.Since(start), time.Second, "the upload outlived the attempt timeout") // 150 gaps of 10 ms at least
	require.Len(t, seen, 1)
	assert.NoError(t, seen[0].Err)
	u := up.sizes
	require.Len(t, u, 1)
	assert.Equal(t, int64(150*1024), u[0], "the whole body arrived")
}

func TestAttemptTimeoutEndsAStalledUpload(t *testing.T) {
	// A server that reads a request's first bytes and then nothing: the
	// transport takes no more of the body once the socket buffers are
	// full. (net/http's server would read on for a handler that does not.)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			_, _ = c.Read(make([]byte, 512))
		}
	}()
	deaf := "http://" + ln.Addr().String() + "/"
	tests := []struct {
		name string
		url  string
		body func(ctx context.Context) (io.ReadCloser, int64)
		serv func(w http.ResponseWriter, r *http.Request)
	}{{
		// The source of the body stops: a pipe whose writer went quiet.
		name: "the body's source stalls",
		body: func(ctx context.Context) (io.ReadCloser, int64) {
			r, w := io.Pipe()
			go func() {
				_, _ = w.Write([]byte("first chunk"))
				<-ctx.Done()
				w.CloseWithError(ctx.Err())
			}()
			return r, -1
		},
		serv: func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) },
	}, {
		name: "the server stops reading",
		url:  deaf,
		body: func(context.Context) (io.ReadCloser, int64) {
			return io.NopCloser(io.LimitReader(zeros{}, 1<<30)), 1 << 30
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := tt.url
			if url == "" {
				url = newUpstream(t, func(_ int, w http.ResponseWriter, r *http.Request) { tt.serv(w, r) }).URL
			}
			base := cleanhttp.DefaultPooledTransport()
			t.Cleanup(base.CloseIdleConnections)
			tr := New(base, WithPolicy(Policy{AttemptTimeout: 300 * time.Millisecond, MaxAttempts: 1}))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			body, size := tt.body(ctx)
			req := mustRequest(t, http.MethodPut, url, nil).WithContext(ctx)
			req.Body, req.ContentLength = body, size
			_, err := tr.RoundTrip(req)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrAttemptTimeout, "the attempt timeout ended it, not the caller's deadline")
			assert.False(t, errors.Is(err, context.DeadlineExceeded))
			assert.ErrorContains(t, err, "its request body made no progress for 300ms")
		})
	}
}

func TestAttemptTimeoutBoundsTheWaitForHeadersAfterTheBody(t *testing.T) {
	// The body is sent in full, then the server never answers: the
	// timeout counts from the body's end, and the error says headers.
	up := newUpstream(t, func(_ int, w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	base := cleanhttp.DefaultPooledTransport()
	t.Cleanup(base.CloseIdleConnections)
	tr := New(base, WithPolicy(Policy{AttemptTimeout: 300 * time.Millisecond, MaxAttempts: 1}))
	req := mustRequest(t, http.MethodPut, up.URL, strings.NewReader(strings.Repeat("x", 1<<16)))
	_, err := tr.RoundTrip(req)
	require.ErrorIs(t, err, ErrAttemptTimeout)
	assert.ErrorContains(t, err, "before its response headers")
}

func TestAStalledUploadIsNotSentAgainFromTheReplayBuffer(t *testing.T) {
	// With retries on, a streamed body goes through the replay buffer. Its
	// source stalls mid-body: the attempt times out, the source is closed
	// (once), and no retry follows, since the rest of the body will not
	// come.
	up := newUpstream(t, statuses(200))
	base := cleanhttp.DefaultPooledTransport()
	t.Cleanup(base.CloseIdleConnections)
	tr := New(base, WithPolicy(Policy{AttemptTimeout: 300 * time.Millisecond, BaseDelay: time.Millisecond}))
	r, w := io.Pipe()
	go func() { _, _ = w.Write([]byte("first chunk")) }() // then nothing
	// Closing the pipe ends its Read, as closing a file or a socket does.
	// (A source whose Close does not end a blocked Read blocks net/http's
	// RoundTrip too, which waits for its write loop, whatever the context.)
	body := &pipeBody{PipeReader: r}
	req := mustRequest(t, http.MethodPut, up.URL, nil)
	req.Body, req.ContentLength = body, -1
	_, err := tr.RoundTrip(req)
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.ErrorIs(t, err, ErrAttemptTimeout)
	assert.Equal(t, 1, rerr.Attempts)
	assert.Equal(t, ReasonBody, rerr.Reason)
	assert.Eventually(t, func() bool { return body.closes.Load() == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, int32(1), body.closes.Load(), "closed once")
}

// pipeBody is a pipe's reading end that counts its closes.
type pipeBody struct {
	*io.PipeReader
	closes atomic.Int32
}

func (p *pipeBody) Close() error {
	p.closes.Add(1)
	return p.PipeReader.Close()
}
