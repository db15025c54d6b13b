package sdk_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/blackbox/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A request without GetBody whose own body fails mid-stream (a file on a
// broken disk, a pipe whose writer died): the give-up text must not claim
// that a GetBody failed, since there is none.
func TestBodyReadErrorIsNotReportedAsGetBodyFailure(t *testing.T) {
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		_, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err // as net/http reports a body read error
		}
		return testkit.Resp(200, ""), nil
	})
	logger, logs := newLogger()
	rt := testkit.NewRT(t, base, retryhttp.WithLogger(logger))
	body := io.NopCloser(io.MultiReader(strings.NewReader("partial"), iotest.ErrReader(io.ErrUnexpectedEOF)))
	_, err := rt.RoundTrip(testkit.NewReq(t, http.MethodPut, "http://x.invalid/", body))
	require.Error(t, err)
	var re *retryhttp.Error
	require.ErrorAs(t, err, &re)
	t.Logf("reason %q, error %q", re.Reason, err.Error())
	t.Logf("log: %s", logs.String())
	assert.NotContains(t, err.Error(), "GetBody failed", "a request without GetBody is said to have had its GetBody fail")
}

// A re-signing hook reads the next request's body through next.GetBody
// (as a signer that hashes the payload does) and signs it; the body sent
// is still whole, and the caller's body is closed once.
func TestBeforeRetrySignerReadsACopyOfTheBody(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789"), 3000)
	var n atomic.Int32
	base := testkit.RoundTripFunc(func(r *http.Request) (*http.Response, error) {
		defer r.Body.Close()
		if n.Add(1) == 1 {
			buf := make([]byte, 10)
			_, _ = io.ReadFull(r.Body, buf) // reads a little, then fails
			return testkit.Resp(503, ""), nil
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != r.Header.Get("X-Payload-Hash") {
			return testkit.Resp(400, "bad signature"), nil
		}
		return testkit.Resp(200, "ok"), nil
	})
	rt := testkit.NewRT(t, base, retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}),
		retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
			if next.GetBody == nil {
				return errors.New("no GetBody to sign with")
			}
			c, err := next.GetBody()
			if err != nil {
				return err
			}
			defer c.Close()
			b, err := io.ReadAll(c)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			next.Header.Set("X-Payload-Hash", hex.EncodeToString(sum[:]))
			return nil
		}))
	body := testkit.NewCountingBody(payload)
	resp, err := rt.RoundTrip(testkit.NewReq(t, http.MethodPut, "http://x.invalid/", body))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	testkit.RequireClosedOnce(t, body)
}
