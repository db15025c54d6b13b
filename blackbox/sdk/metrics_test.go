package sdk_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A retry stopped by the hook is not counted as a retry, the request ends
// not_retryable; a timeout retry is labelled "timeout".
func TestMetricsOfTheSeam(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := retryhttp.NewMetrics(reg)
	require.NoError(t, err)
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) { return testkit.Resp(503, ""), nil })
	rt := testkit.NewRT(t, base, retryhttp.WithMetrics(m), retryhttp.WithBeforeRetry(func(*http.Request, retryhttp.Attempt) error { return errors.New("no") }))
	_, err = rt.RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil))
	require.Error(t, err)
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP retryhttp_requests_total Requests sent through a retryhttp Transport, by how they ended.
# TYPE retryhttp_requests_total counter
retryhttp_requests_total{method="GET",outcome="not_retryable"} 1
`), "retryhttp_requests_total"))
	assert.Equal(t, 0, testutil.CollectAndCount(m, "retryhttp_retries_total"))

	hang := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		if retryhttp.AttemptFromContext(r.Context()) == 1 {
			<-r.Context().Done()
			return nil, r.Context().Err()
		}
		return testkit.Resp(200, ""), nil
	})
	rt = testkit.NewRT(t, hang, retryhttp.WithMetrics(m), retryhttp.WithPolicy(retryhttp.Policy{AttemptTimeout: 20 * time.Millisecond, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	r, err := rt.RoundTrip(testkit.NewReq(t, http.MethodGet, "http://x.invalid/", nil))
	require.NoError(t, err)
	r.Body.Close()
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP retryhttp_retries_total Retries sent, by the status code or connection failure that caused them.
# TYPE retryhttp_retries_total counter
retryhttp_retries_total{method="GET",reason="timeout"} 1
`), "retryhttp_retries_total"))
}
