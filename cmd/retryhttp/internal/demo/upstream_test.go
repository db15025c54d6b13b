package demo

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUpstreamSwitchesItsFaults(t *testing.T) {
	t.Parallel()
	steady := faults{latency: time.Millisecond}
	up, err := startUpstream(steady)
	require.NoError(t, err)
	defer up.Close()
	status := func() int {
		resp, err := http.Get(up.URL)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	ok := up.handler()
	for i, tt := range []struct {
		serve http.HandlerFunc
		want  int
	}{{nil, 200}, {steady.outage().handler(), 503}, {ok, 200}} {
		if tt.serve != nil {
			up.serve(tt.serve)
		}
		for range 5 {
			assert.Equal(t, tt.want, status(), "step %d", i)
		}
	}
}

func TestFaultsString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		f    faults
		want string
	}{
		{faults{errorRate: 0.1, resetRate: 0.02, latency: 5 * time.Millisecond}, "503 10%, resets 2%, latency 5ms"},
		{faults{errorRate: 0.5, throttleRate: 0.1, retryAfter: time.Second, resetRate: 0.025, latency: time.Millisecond, slowRate: 0.05, slowLatency: 100 * time.Millisecond},
			"503 50%, 429 10% with Retry-After 1s, resets 2.5%, latency 1ms, 5% take 100ms"},
		{faults{}.outage(), "503 100%, latency 0s"},
		{faults{errorRate: 0.07, resetRate: 0.29, latency: time.Millisecond}, "503 7%, resets 29%, latency 1ms"},
		{faults{errorRate: 0.00125, latency: time.Millisecond}, "503 0.125%, latency 1ms"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.f.String())
	}
}
