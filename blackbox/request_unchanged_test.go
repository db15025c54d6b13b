package blackbox_test

// The request passed to RoundTrip is never modified: fields, headers, Body,
// GetBody.

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type reqSnapshot struct {
	method, url, proto, host, requestURI, remoteAddr, pattern string
	urlPtr                                                    *url.URL
	urlCopy                                                   url.URL
	header                                                    http.Header
	headerPtr                                                 uintptr
	trailer                                                   http.Header
	body                                                      io.ReadCloser
	getBody                                                   uintptr
	contentLength                                             int64
	te                                                        []string
	close                                                     bool
	ctx                                                       context.Context
	cancel                                                    <-chan struct{}
	response                                                  *http.Response
}

func snapshot(r *http.Request) reqSnapshot {
	s := reqSnapshot{
		method: r.Method, proto: r.Proto, host: r.Host, requestURI: r.RequestURI, remoteAddr: r.RemoteAddr, pattern: r.Pattern,
		urlPtr: r.URL, header: r.Header.Clone(), trailer: r.Trailer.Clone(), body: r.Body,
		contentLength: r.ContentLength, te: append([]string(nil), r.TransferEncoding...), close: r.Close,
		ctx: r.Context(), cancel: r.Cancel, response: r.Response,
	}
	if r.URL != nil {
		s.url = r.URL.String()
		s.urlCopy = *r.URL
	}
	if r.Header != nil {
		s.headerPtr = reflect.ValueOf(r.Header).Pointer()
	}
	if r.GetBody != nil {
		s.getBody = reflect.ValueOf(r.GetBody).Pointer()
	}
	return s
}

func requireUnchanged(t *testing.T, before reqSnapshot, r *http.Request) {
	t.Helper()
	after := snapshot(r)
	assert.Equal(t, before.method, after.method)
	assert.Equal(t, before.url, after.url)
	assert.Same(t, before.urlPtr, after.urlPtr)
	assert.Equal(t, before.urlCopy, after.urlCopy)
	assert.Equal(t, before.header, after.header)
	assert.Equal(t, before.headerPtr, after.headerPtr)
	assert.Equal(t, before.trailer, after.trailer)
	assert.True(t, before.body == after.body, "Body replaced")
	assert.Equal(t, before.getBody, after.getBody, "GetBody replaced")
	assert.Equal(t, before.contentLength, after.contentLength)
	assert.Equal(t, before.te, after.te)
	assert.Equal(t, before.close, after.close)
	assert.Equal(t, before.host, after.host)
	assert.True(t, before.ctx == after.ctx, "context replaced")
	assert.Equal(t, before.response, after.response)
	assert.Equal(t, before.proto, after.proto)
}

func TestRequestIsNeverModified(t *testing.T) {
	payload := bytes.Repeat([]byte("q"), 3000)
	type scenario struct {
		name    string
		codes   []int // 0: reset error
		policy  retryhttp.Policy
		getBody bool
		method  string
		body    bool
		cancel  time.Duration
		hdr     http.Header
	}
	scenarios := []scenario{
		{name: "503 503 200 replay PUT", codes: []int{503, 503, 200}, body: true, method: http.MethodPut},
		{name: "503 503 200 GetBody PUT", codes: []int{503, 503, 200}, body: true, getBody: true, method: http.MethodPut},
		{name: "reset then 200 GET", codes: []int{0, 200}, method: http.MethodGet},
		{name: "exhausted PUT", codes: []int{503}, body: true, method: http.MethodPut},
		{name: "POST with key", codes: []int{503, 200}, body: true, method: http.MethodPost, hdr: http.Header{"Idempotency-Key": {"k"}}},
		{name: "POST not retried", codes: []int{503}, body: true, method: http.MethodPost},
		{name: "canceled in the wait", codes: []int{503}, body: true, method: http.MethodPut, cancel: 30 * time.Millisecond,
			policy: retryhttp.Policy{BaseDelay: time.Second, Jitter: retryhttp.NoJitter}},
		{name: "Retry-After too long", codes: []int{429}, body: true, method: http.MethodPut,
			hdr: http.Header{"X-Want-Retry-After": {"3600"}}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			var n atomic.Int32
			base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
				i := int(n.Add(1))
				if r.Body != nil {
					_, _ = io.Copy(io.Discard, r.Body)
					r.Body.Close()
				}
				c := sc.codes[min(i, len(sc.codes))-1]
				if c == 0 {
					return nil, errReset
				}
				res := testkit.Resp(c, "x")
				if v := r.Header.Get("X-Want-Retry-After"); v != "" {
					res.Header.Set("Retry-After", v)
				}
				res.Request = r
				return res, nil
			})
			p := sc.policy
			if p == (retryhttp.Policy{}) {
				p = testkit.Fast
			}
			rt := retryhttp.New(base, retryhttp.WithPolicy(p), retryhttp.WithBudget(nil))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var rd io.Reader
			if sc.getBody {
				rd = bytes.NewReader(payload)
			}
			req, err := http.NewRequestWithContext(ctx, sc.method, "http://user:pw@example.invalid/a%2Fb?q=1#frag", rd)
			require.NoError(t, err)
			if sc.body && !sc.getBody {
				req.Body = io.NopCloser(bytes.NewReader(payload))
				req.ContentLength = int64(len(payload))
			}
			req.Header.Set("X-Custom", "v")
			for k, v := range sc.hdr {
				req.Header[k] = v
			}
			req.Trailer = http.Header{"X-Trailer": nil}
			before := snapshot(req)
			if sc.cancel > 0 {
				time.AfterFunc(sc.cancel, cancel)
			}
			res, err := rt.RoundTrip(req)
			if err == nil {
				assert.Same(t, req, res.Request, "the final response points at the caller's request")
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
			time.Sleep(20 * time.Millisecond)
			requireUnchanged(t, before, req)
		})
	}
}

func TestRequestIsNeverModifiedOverRealTransports(t *testing.T) {
	var n atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if n.Add(1)%3 != 0 {
			w.WriteHeader(503)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	for _, h2 := range []bool{false, true} {
		srv := httptest.NewUnstartedServer(h)
		srv.EnableHTTP2 = h2
		if h2 {
			srv.StartTLS()
		} else {
			srv.Start()
		}
		t.Cleanup(srv.Close)
		base := srv.Client().Transport
		rt := testkit.NewRT(t, base)
		for _, getBody := range []bool{false, true} {
			var rd io.Reader
			if getBody {
				rd = bytes.NewReader([]byte("body"))
			}
			req, err := http.NewRequest(http.MethodPut, srv.URL+"/x?y=1", rd)
			require.NoError(t, err)
			if !getBody {
				req.Body = io.NopCloser(bytes.NewReader([]byte("body")))
				req.ContentLength = 4
			}
			req.Header.Set("X-A", "b")
			before := snapshot(req)
			res, err := rt.RoundTrip(req)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			assert.Equal(t, 200, res.StatusCode)
			time.Sleep(20 * time.Millisecond)
			requireUnchanged(t, before, req)
		}
	}
}
