package retryhttp

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNilResponseBodyIsAnEmptyBody(t *testing.T) {
	// Test doubles, SDK mocks and middlewares return responses without a
	// Body; http.Client takes that as an empty body, and so does the
	// Transport, whether the response is retried, returned, or comes with
	// an error.
	tests := []struct {
		name      string
		resps     []*http.Response
		errs      []error
		wantCode  int
		wantTries int
	}{
		{"503 retried, then 200", []*http.Response{{StatusCode: 503}, {StatusCode: 200}}, []error{nil, nil}, 200, 2},
		{"final 503", []*http.Response{{StatusCode: 503}}, []error{nil}, 503, 3},
		{"404 returned", []*http.Response{{StatusCode: 404}}, []error{nil}, 404, 1},
		{"with an error", []*http.Response{{StatusCode: 503}, {StatusCode: 200}}, []error{errTestBody, nil}, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := 0
			base := roundTripFunc(func(*http.Request) (*http.Response, error) {
				i := min(n, len(tt.resps)-1)
				n++
				r := *tt.resps[i] // a fresh response, Body nil
				return &r, tt.errs[i]
			})
			tr, _ := newTestTransport(t)
			tr.base = base
			resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://example.invalid/", nil))
			assert.Equal(t, tt.wantTries, n)
			if tt.wantCode == 0 {
				assert.Nil(t, resp)
				assert.ErrorIs(t, err, errTestBody)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantCode, resp.StatusCode)
			require.NotNil(t, resp.Body)
			assert.Empty(t, readAll(t, resp))
		})
	}
}

func TestZeroTransportIsUsable(t *testing.T) {
	up := newUpstream(t, statuses(503, 200))
	var tr Transport // as a zero http.Transport is usable
	t.Cleanup(tr.CloseIdleConnections)
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 4 { // first uses race to set the defaults up
		wg.Go(func() {
			resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
			if assert.NoError(t, err) {
				readAll(t, resp)
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int32(4), ok.Load(), "the 503 was retried with the default policy")
	assert.Equal(t, DefaultReplayBuffer, tr.replayLimit)
	assert.NotNil(t, tr.budget, "the default budget")
	new(Transport).CloseIdleConnections() // no panic either
}

func TestStalledBodyOfADiscardedResponseIsCutShort(t *testing.T) {
	// A server sends 503 headers and then nothing: the drain before the
	// retry gives up after maxDrainTime, closes the body, and the retry
	// goes on, long before the caller's deadline.
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "partial")
			http.NewResponseController(w).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	tr, clock := newTestTransport(t)
	done := make(chan struct{})
	var resp *http.Response
	var err error
	go func() {
		defer close(done)
		resp, err = tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil)) // no deadline: only the drain's bound ends it
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("RoundTrip still draining a stalled body")
	}
	require.NoError(t, err)
	assert.Equal(t, "ok", readAll(t, resp))
	assert.Equal(t, int32(2), up.attempts.Load())
	assert.Len(t, clock.recorded(), 1, "a backoff wait, not a wait for the body")
	assert.Equal(t, int32(2), up.conns.Load(), "the stalled connection was given up")
}

func TestInvalidPortIsAMalformedURL(t *testing.T) {
	tr, clock := newTestTransport(t)
	_, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://127.0.0.1:99999/", nil))
	var rerr *Error
	require.ErrorAs(t, err, &rerr)
	assert.Equal(t, 1, rerr.Attempts, "not a dial failure to retry")
	assert.Empty(t, clock.recorded())
	assert.ErrorContains(t, err, "invalid port")
}
