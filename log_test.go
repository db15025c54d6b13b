package retryhttp

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLogsOneRecordPerRetryWithoutSecrets(t *testing.T) {
	up := newUpstream(t, statuses(503, 502, 200))
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tr, clock := newTestTransport(t, WithLogger(logger))
	u := strings.Replace(up.URL, "http://", "http://user:hunter2@", 1) + "/items/7?token=s3cret#frag"
	resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, u, nil))
	require.NoError(t, err)
	readAll(t, resp)

	assert.NotContains(t, buf.String(), "hunter2")
	assert.NotContains(t, buf.String(), "s3cret")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2, "one record per retry")
	waits := clock.recorded()
	for i, line := range lines {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec))
		assert.Equal(t, "INFO", rec["level"])
		assert.Equal(t, "GET", rec["method"])
		assert.Equal(t, up.URL+"/items/7", rec["url"])
		assert.Equal(t, float64(i+1), rec["attempt"])
		assert.Equal(t, []string{"503", "502"}[i], rec["reason"])
		assert.Equal(t, float64(waits[i]), rec["wait"])
		assert.Equal(t, []float64{503, 502}[i], rec["status"])
	}
}

func TestLogsTransportErrors(t *testing.T) {
	var buf bytes.Buffer
	tr, _ := newTestTransport(t, WithLogger(slog.New(slog.NewTextHandler(&buf, nil))), WithPolicy(Policy{MaxAttempts: 2}))
	_, err := tr.RoundTrip(mustRequest(t, http.MethodGet, "http://"+closedAddr(t)+"/", nil))
	require.Error(t, err)
	assert.Contains(t, buf.String(), "reason=connect")
	assert.Contains(t, buf.String(), "connection refused")
}

func TestNilLoggerAndDisabledLevelsLogNothing(t *testing.T) {
	up := newUpstream(t, statuses(503, 200))
	var buf bytes.Buffer
	quiet := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	for _, opt := range []Option{WithLogger(nil), WithLogger(quiet)} {
		up.attempts.Store(0)
		tr, _ := newTestTransport(t, opt)
		resp, err := tr.RoundTrip(mustRequest(t, http.MethodGet, up.URL, nil))
		require.NoError(t, err)
		readAll(t, resp)
		assert.Equal(t, int32(2), up.attempts.Load())
	}
	assert.Empty(t, buf.String())
}

func TestConcurrentRequests(t *testing.T) {
	// Many goroutines share one Transport; each request fails once and then
	// succeeds with its own body echoed back.
	var mu sync.Mutex
	failed := map[string]bool{}
	up := newUpstream(t, func(n int, w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		mu.Lock()
		first := !failed[id]
		failed[id] = true
		mu.Unlock()
		if first {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("X-Id", id)
	})
	// Every request fails once: to a budget that is an outage. This test is
	// about concurrency, so it turns the budget off.
	tr, _ := newTestTransport(t, WithBudget(nil))
	client := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 10 {
				id := strings.Repeat("x", g) + "-" + string(rune('a'+i))
				req := mustRequest(t, http.MethodPut, up.URL+"/?id="+id, strings.NewReader(id))
				resp, err := client.Do(req)
				if !assert.NoError(t, err) {
					return
				}
				readAll(t, resp)
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				assert.Equal(t, id, resp.Header.Get("X-Id"), "the response belongs to its request")
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int32(320), up.attempts.Load())
}
