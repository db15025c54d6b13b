package retryhttp

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// onlyReader hides every method but Read, so http.NewRequest sets no GetBody
// and the Transport must replay the body from its buffer.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestBodiesAreReplayedByteForByte(t *testing.T) {
	payload := make([]byte, 40_000)
	_, _ = rand.Read(payload)
	tests := []struct {
		name string
		body func() io.Reader
	}{
		{"GetBody from bytes.Reader", func() io.Reader { return bytes.NewReader(payload) }},
		{"stream replayed from the buffer", func() io.Reader { return onlyReader{bytes.NewReader(payload)} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, statuses(503, 500, 200))
			tr, _ := newTestTransport(t)
			body := &closeTracker{Reader: tt.body()}
			req := mustRequest(t, http.MethodPut, up.URL, body)
			if _, ok := tt.body().(*bytes.Reader); ok {
				req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(payload)), nil }
			}
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			readAll(t, resp)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			want := sha(payload)
			assert.Equal(t, [][32]byte{want, want, want}, up.bodyHashes())
			assert.Equal(t, int32(1), body.closes.Load(), "the caller's body is closed once")
		})
	}
}

func TestBodyPastTheReplayBufferIsNotRetried(t *testing.T) {
	payload := bytes.Repeat([]byte("z"), 1000)
	tests := []struct {
		name      string
		limit     int
		wantTries int
	}{
		{"fits", 1000, 3},
		{"one byte too many", 999, 1},
		{"no buffer", 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, statuses(503))
			tr, _ := newTestTransport(t, WithReplayBuffer(tt.limit))
			body := &closeTracker{Reader: bytes.NewReader(payload)}
			req := mustRequest(t, http.MethodPut, up.URL, onlyReader{body})
			req.Body = body
			req.ContentLength = int64(len(payload))
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			readAll(t, resp)
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "the last response, unchanged")
			assert.Equal(t, tt.wantTries, int(up.attempts.Load()))
			for _, h := range up.bodyHashes() {
				assert.Equal(t, sha(payload), h, "every attempt sent the whole body")
			}
			assert.Equal(t, int32(1), body.closes.Load())
		})
	}
}

func TestGetBodyFailureStopsRetries(t *testing.T) {
	up := newUpstream(t, statuses(503, 200))
	tr, _ := newTestTransport(t)
	req := mustRequest(t, http.MethodPut, up.URL, bytes.NewReader([]byte("abc")))
	req.GetBody = func() (io.ReadCloser, error) { return nil, errTestBody }
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	readAll(t, resp)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, int32(1), up.attempts.Load())
}

func TestBodyReadErrorIsNotRetried(t *testing.T) {
	up := newUpstream(t, statuses(200))
	tr, clock := newTestTransport(t)
	body := &closeTracker{Reader: io.MultiReader(bytes.NewReader([]byte("partial")), errReader{errTestBody})}
	req := mustRequest(t, http.MethodPut, up.URL, onlyReader{body})
	req.Body = body
	resp, err := tr.RoundTrip(req)
	require.Error(t, err)
	assert.Nil(t, resp)
	assert.ErrorIs(t, err, errTestBody)
	assert.Empty(t, clock.recorded())
	assert.Equal(t, int32(1), body.closes.Load())
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestStreamingUploadMemoryIsBounded sends 256 MiB through a Transport from
// a reader without GetBody, and checks that the heap never held more than a
// few MiB of it: the body streams; only the replay buffer is kept.
func TestStreamingUploadMemoryIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 256 MiB over loopback")
	}
	const size = 256 << 20
	up := newUpstream(t, statuses(200))
	tr, _ := newTestTransport(t)
	req := mustRequest(t, http.MethodPut, up.URL, onlyReader{io.LimitReader(zeros{}, size)})

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	readAll(t, resp)
	runtime.ReadMemStats(&after)

	up.mu.Lock()
	assert.Equal(t, []int64{size}, up.sizes)
	up.mu.Unlock()
	allocated := after.TotalAlloc - before.TotalAlloc
	assert.Less(t, allocated, uint64(16<<20), "allocated %d MiB for a %d MiB body", allocated>>20, size>>20)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// signingRT is a middleware that signs each request with a hash of its
// body, read from a copy that GetBody makes before the body itself is
// sent, as request-signing middlewares do.
type signingRT struct{ next http.RoundTripper }

func (s signingRT) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.GetBody != nil {
		copyBody, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		_, err = io.Copy(h, copyBody)
		copyBody.Close()
		if err != nil {
			return nil, err
		}
		req = req.Clone(req.Context())
		req.Header.Set("X-Body-Sha256", hex.EncodeToString(h.Sum(nil)))
	}
	return s.next.RoundTrip(req)
}

func TestGetBodyCopyDoesNotBreakTheBodyInFlight(t *testing.T) {
	payload := bytes.Repeat([]byte("signed "), 5000)
	sum := sha(payload)
	want := hex.EncodeToString(sum[:])
	for _, codes := range [][]int{{200}, {503, 200}} {
		up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Body-Sha256") != want {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			statuses(codes...)(n, w, r)
		})
		tr, _ := newTestTransport(t)
		tr.base = signingRT{tr.base}
		body := &closeTracker{Reader: bytes.NewReader(payload)}
		req := mustRequest(t, http.MethodPut, up.URL, onlyReader{body}) // no GetBody of its own
		req.Body = body
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err, "no retry replaced the body: it must not fail")
		readAll(t, resp)
		assert.Equal(t, http.StatusOK, resp.StatusCode, "signed with the hash of the whole body")
		assert.Equal(t, len(codes), int(up.attempts.Load()))
		for _, h := range up.bodyHashes() {
			assert.Equal(t, sha(payload), h)
		}
		assert.Eventually(t, func() bool { return body.closes.Load() == 1 }, 5*time.Second, time.Millisecond)
	}
}
