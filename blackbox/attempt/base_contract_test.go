package attempt_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// closeCount is a response body that counts its Close calls.
type closeCount struct {
	io.Reader
	n int
}

func (c *closeCount) Close() error { c.n++; return nil }

// The RoundTripper contract holds over a base that breaks it, with metrics
// and observers on: a nil response with a nil error is an error and the
// caller's body is closed once; a response with an error is the error, and
// the response's body is closed; a nil Body is an empty one; any status
// the base makes up (0, 1xx, 600, -1) is returned as it came, never
// retried, and one outside 100-599 is counted under the code label "other".
func TestMisbehavingBase(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := retryhttp.NewMetrics(reg)
	require.NoError(t, err)
	var attempts []retryhttp.Attempt
	mk := func(f rtFunc) *retryhttp.Transport {
		return retryhttp.New(f, retryhttp.WithMetrics(m), retryhttp.WithPolicy(fast),
			retryhttp.WithObserver(func(a retryhttp.Attempt) { attempts = append(attempts, a) }))
	}

	// nil, nil
	b := testkit.NewCountingBody([]byte("payload"))
	req := mustReq(t, http.MethodPut, "http://x.example/", nil)
	req.Body = b
	_, err = mk(func(r *http.Request) (*http.Response, error) { io.Copy(io.Discard, r.Body); return nil, nil }).RoundTrip(req)
	assert.Error(t, err)
	requireClosedOnce(t, &b.Closes, "the caller's body")

	// response and error: the response's body is closed, the error wins
	rb := &closeCount{Reader: strings.NewReader("x")}
	resp, err := mk(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: rb, Header: http.Header{}}, errors.New("both")
	}).RoundTrip(mustReq(t, http.MethodPost, "http://x.example/", nil))
	assert.Error(t, err)
	assert.Nil(t, resp)
	assert.Equal(t, 1, rb.n)

	// nil Body
	resp, err = mk(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{}}, nil
	}).RoundTrip(mustReq(t, http.MethodGet, "http://x.example/", nil))
	require.NoError(t, err)
	require.NotNil(t, resp.Body)
	resp.Body.Close()

	// odd codes: returned as they came, never retried, no panic
	for _, code := range []int{0, 99, 100, 101, 103, 199, 600, 999, -1} {
		calls := 0
		resp, err := mk(func(r *http.Request) (*http.Response, error) {
			calls++
			return &http.Response{StatusCode: code, Header: http.Header{"Retry-After": {"0"}}, Body: io.NopCloser(strings.NewReader(""))}, nil
		}).RoundTrip(mustReq(t, http.MethodGet, "http://x.example/", nil))
		require.NoError(t, err, "%d", code)
		assert.Equal(t, code, resp.StatusCode)
		assert.Equal(t, 1, calls, "%d not retried", code)
		resp.Body.Close()
	}
	assert.NotEmpty(t, attempts, "the observer saw the attempts")
	mfs, err := reg.Gather()
	require.NoError(t, err)
	labels := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() == "retryhttp_attempts_total" {
			for _, mm := range mf.GetMetric() {
				for _, l := range mm.GetLabel() {
					if l.GetName() == "code" {
						v := l.GetValue()
						labels[v] = true
						assert.True(t, v == "other" || v == "error" || (len(v) == 3 && v >= "100" && v <= "599"), "code label %q", v)
					}
				}
			}
		}
	}
	assert.True(t, labels["other"], "codes outside 100-599 are counted as other: %v", labels)
}
