package blackbox_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/retryhttp/retryhttp"
	retryhttpotel "github.com/retryhttp/retryhttp/otel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The server answers 503 before reading the body, then 200 after reading
// it all: the retry's body is the caller's, byte for byte, through otelhttp's
// body wrapper; the caller's body is closed once.
func TestEarlyAnswerStreamedBodyThroughNewBase(t *testing.T) {
	for _, withOtel := range []bool{false, true} {
		for _, size := range []int{10, 40 << 10} {
			payload := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
			var mu sync.Mutex
			var sums [][32]byte
			srv := newFuncServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					w.Header().Set("Connection", "close")
					w.WriteHeader(503)
					return
				}
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				sums = append(sums, sha256.Sum256(b))
				mu.Unlock()
				w.WriteHeader(200)
			})
			var base http.RoundTripper
			if withOtel {
				base = retryhttpotel.NewBase(nil, otelOpts(newTracing(t))...)
			}
			rt := retryhttp.New(base, retryhttp.WithPolicy(fast), retryhttp.WithBudget(nil))
			req, err := http.NewRequest(http.MethodPut, srv.URL, nil)
			require.NoError(t, err)
			body := &countingBody{r: bytes.NewReader(payload)}
			req.Body = body
			req.ContentLength = int64(size)
			resp, err := rt.RoundTrip(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			t.Logf("otel=%v size=%d: err %v, status %v", withOtel, size, err, statusOf(resp))
			requireClosedOnce(t, body)
			mu.Lock()
			for _, s := range sums {
				assert.Equal(t, sha256.Sum256(payload), s, "otel=%v size=%d: a retry's body differs from the caller's", withOtel, size)
			}
			mu.Unlock()
			rt.CloseIdleConnections()
		}
	}
}

func statusOf(resp *http.Response) any {
	if resp == nil {
		return nil
	}
	return resp.StatusCode
}
