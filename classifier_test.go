package retryhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// awsError answers like S3: an XML-free JSON error document with a code.
func awsError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"Code": code, "Message": "details"})
}

// awsClassifier retries the error codes S3 documents as transient, reading
// them from the first bytes of the body without consuming it.
func awsClassifier(t *testing.T) Classifier {
	return func(req *http.Request, resp *http.Response, err error) Decision {
		if resp == nil || resp.StatusCode == http.StatusNotFound {
			return UseDefault
		}
		head, perr := PeekBody(resp, 512)
		if !assert.NoError(t, perr) {
			return UseDefault
		}
		var doc struct{ Code string }
		if json.Unmarshal(head, &doc) != nil {
			return UseDefault
		}
		switch doc.Code {
		case "RequestTimeout", "InternalError", "SlowDown":
			return Retry
		}
		return UseDefault
	}
}

func TestClassifierAddsAnAPIsRules(t *testing.T) {
	tests := []struct {
		name      string
		first     func(w http.ResponseWriter)
		wantTries int
		reason    string // of the retry
	}{
		{"S3 400 RequestTimeout", func(w http.ResponseWriter) { awsError(w, 400, "RequestTimeout") }, 2, "400"},
		{"CopyObject 200 with InternalError", func(w http.ResponseWriter) { awsError(w, 200, "InternalError") }, 2, "200"},
		{"400 with another code is final", func(w http.ResponseWriter) { awsError(w, 400, "InvalidArgument") }, 1, ""},
		{"503 still retried by the default rules", func(w http.ResponseWriter) { w.WriteHeader(503) }, 2, "503"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					tt.first(w)
					return
				}
				_, _ = io.WriteString(w, `{"ETag":"abc"}`)
			})
			var seen []Attempt
			tr, _ := newTestTransport(t, WithClassifier(awsClassifier(t)), WithObserver(func(a Attempt) { seen = append(seen, a) }))
			resp, err := tr.RoundTrip(mustRequest(t, http.MethodPut, up.URL, strings.NewReader("object")))
			require.NoError(t, err)
			body := readAll(t, resp)
			assert.Equal(t, tt.wantTries, int(up.attempts.Load()))
			require.Len(t, seen, tt.wantTries)
			if tt.wantTries == 2 {
				assert.Equal(t, `{"ETag":"abc"}`, body, "the peeked body arrives whole")
				assert.True(t, seen[0].Retry)
				assert.Equal(t, tt.reason, seen[0].Reason)
			} else {
				assert.Contains(t, body, "InvalidArgument", "the peeked body arrives whole")
			}
		})
	}
}

func TestClassifierDoNotRetryReturnsAtOnce(t *testing.T) {
	up := newUpstream(t, statuses(503, 200))
	var last Attempt
	tr, clock := newTestTransport(t,
		WithClassifier(func(*http.Request, *http.Response, error) Decision { return DoNotRetry }),
		WithObserver(func(a Attempt) { last = a }))
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, int32(1), up.attempts.Load())
	assert.Empty(t, clock.recorded())
	assert.Equal(t, ReasonClassifier, last.Reason)

	// An error the classifier stops says so in the *Error.
	_, err = tr.RoundTrip(mustRequest(t, http.MethodGet, "http://"+closedAddr(t)+"/", nil))
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, ReasonClassifier, rerr.Reason)
	assert.Equal(t, 1, rerr.Attempts)
	assert.Contains(t, err.Error(), "Classifier said DoNotRetry")

	// DoNotRetry on a success is no give-up.
	ok := newUpstream(t, statuses(200))
	resp, err = tr.RoundTrip(mustRequest(t, http.MethodGet, ok.URL, nil))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Empty(t, last.Reason)
}

func TestClassifierSeesTheRequestAsSent(t *testing.T) {
	up := newUpstream(t, statuses(503, 503, 200))
	var numbers []int
	var reqs []*http.Request
	tr, _ := newTestTransport(t, WithClassifier(func(req *http.Request, resp *http.Response, err error) Decision {
		numbers = append(numbers, AttemptFromContext(req.Context()))
		reqs = append(reqs, req)
		return UseDefault
	}))
	req := mustRequest(t, http.MethodGet, up.URL, nil)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, []int{1, 2, 3}, numbers)
	assert.Same(t, req, reqs[0], "the first attempt sends the caller's request")
	assert.NotSame(t, req, reqs[1], "a retry sends a copy")
}

func TestClassifierPanicPropagates(t *testing.T) {
	up := newUpstream(t, statuses(200))
	tr, _ := newTestTransport(t, WithClassifier(func(*http.Request, *http.Response, error) Decision { panic("sdk bug") }))
	assert.PanicsWithValue(t, "sdk bug", func() {
		_, _ = tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
	})
}

func TestClassifierRetryOfAnErrorTheTransportNeverRetries(t *testing.T) {
	// A TLS certificate error is permanent by default; a Classifier may
	// still ask for a retry of a GET (reason "error"), never of a POST.
	tlsUp := newTLSUpstream(t)
	always := func(*http.Request, *http.Response, error) Decision { return Retry }
	var reasons []string
	tr, _ := newTestTransport(t, WithClassifier(always), WithObserver(func(a Attempt) { reasons = append(reasons, a.Reason) }))
	_, err := tr.RoundTrip(mustRequest(t, http.MethodGet, tlsUp.URL, nil))
	require.Error(t, err)
	assert.Equal(t, []string{"error", "error", ReasonExhausted}, reasons)

	reasons = nil
	_, err = tr.RoundTrip(mustRequest(t, http.MethodPost, tlsUp.URL, strings.NewReader("x")))
	require.Error(t, err)
	assert.Equal(t, []string{ReasonMethod}, reasons)
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.Contains(t, err.Error(), "POST is not idempotent")
}

func TestAlwaysRetryClassifierKeepsTheSafetyGuarantees(t *testing.T) {
	always := WithClassifier(func(*http.Request, *http.Response, error) Decision { return Retry })

	t.Run("a POST the server saw is never sent again", func(t *testing.T) {
		for _, fault := range []func(*net.TCPConn){reset, hangUp} {
			up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					conn, _, err := http.NewResponseController(w).Hijack()
					require.NoError(t, err)
					fault(conn.(*net.TCPConn))
					return
				}
				w.WriteHeader(http.StatusCreated)
			})
			tr, _ := newTestTransport(t, always)
			_, err := tr.RoundTrip(mustRequest(t, http.MethodPost, up.URL, strings.NewReader("order")))
			require.Error(t, err)
			assert.Equal(t, int32(1), up.attempts.Load())
		}
		up := newUpstream(t, statuses(409, 201))
		tr, _ := newTestTransport(t, always)
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodPost, up.URL, strings.NewReader("order")))
		require.NoError(t, err)
		readAll(t, resp)
		assert.Equal(t, 409, resp.StatusCode)
		assert.Equal(t, int32(1), up.attempts.Load())
	})

	t.Run("a POST over HTTP/2 reset with PROTOCOL_ERROR reaches the server once", func(t *testing.T) {
		srv := newH2Server(t, firstThen(1, h2ResetProtocol))
		tr, _ := newTestTransport(t, always)
		tr.base = srv.Client
		_, err := tr.RoundTrip(mustRequest(t, http.MethodPost, srv.URL, onlyReader{strings.NewReader("order")}))
		require.Error(t, err)
		requests, _, _ := h2Stats(srv)
		assert.Equal(t, 1, requests)
	})

	t.Run("a body past the replay buffer is not retried", func(t *testing.T) {
		up := newUpstream(t, statuses(500, 200))
		var last Attempt
		tr, _ := newTestTransport(t, always, WithReplayBuffer(10), WithObserver(func(a Attempt) { last = a }))
		payload := bytes.Repeat([]byte("p"), 100)
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodPut, up.URL, onlyReader{bytes.NewReader(payload)}))
		require.NoError(t, err)
		readAll(t, resp)
		assert.Equal(t, int32(1), up.attempts.Load())
		assert.Equal(t, ReasonBody, last.Reason)
	})

	t.Run("bodies are replayed byte for byte and MaxAttempts holds", func(t *testing.T) {
		up := newUpstream(t, statuses(200))
		tr, _ := newTestTransport(t, always, WithPolicy(Policy{MaxAttempts: 4}), WithBudget(nil)) // a quiet client's budget holds two retries
		payload := bytes.Repeat([]byte("0123456789"), 3000)
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodPut, up.URL, onlyReader{bytes.NewReader(payload)}))
		require.NoError(t, err)
		readAll(t, resp)
		assert.Equal(t, [][32]byte{sha(payload), sha(payload), sha(payload), sha(payload)}, up.bodyHashes())
	})

	t.Run("nothing after the context ended", func(t *testing.T) {
		up := newUpstream(t, statuses(200))
		tr, clock := newTestTransport(t, always)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil).WithContext(ctx))
		assert.ErrorIs(t, err, context.Canceled)
		assert.Empty(t, clock.recorded())
	})
}

func TestDefaultClassifierIsTheTransportsOwnRules(t *testing.T) {
	tests := []struct {
		resp *http.Response
		err  error
		want Decision
	}{
		{&http.Response{StatusCode: 503}, nil, Retry},
		{&http.Response{StatusCode: 429}, nil, Retry},
		{&http.Response{StatusCode: 404}, nil, DoNotRetry},
		{&http.Response{StatusCode: 200}, nil, DoNotRetry},
		{nil, &net.OpError{Op: "dial", Err: errors.New("refused")}, Retry},
		{nil, errors.New(`unsupported protocol scheme "ftp"`), DoNotRetry},
		{nil, nil, DoNotRetry},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, DefaultClassifier(nil, tt.resp, tt.err), "%v %v", tt.resp, tt.err)
	}

	// As a Classifier, it changes nothing.
	up := newUpstream(t, statuses(503, 404, 200))
	tr, _ := newTestTransport(t, WithClassifier(DefaultClassifier))
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, 404, resp.StatusCode)
	assert.Equal(t, int32(2), up.attempts.Load())
}

func TestClassifiersAskEachInTurn(t *testing.T) {
	var asked []string
	named := func(name string, d Decision) Classifier {
		return func(*http.Request, *http.Response, error) Decision { asked = append(asked, name); return d }
	}
	c := Classifiers(named("a", UseDefault), nil, named("b", DoNotRetry), named("c", Retry))
	assert.Equal(t, DoNotRetry, c(nil, nil, nil))
	assert.Equal(t, []string{"a", "b"}, asked)
	assert.Equal(t, UseDefault, Classifiers()(nil, nil, nil))
	assert.Equal(t, "Retry", Retry.String())
	assert.Equal(t, "Decision(7)", Decision(7).String())
}
