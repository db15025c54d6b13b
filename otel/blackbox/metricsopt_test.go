package blackbox_test

import (
	"testing"

	"github.com/retryhttp/retryhttp"
	retryhttpotel "github.com/retryhttp/retryhttp/otel"
	"github.com/stretchr/testify/require"
)

func mustMetrics(t *testing.T, m *meter) retryhttp.Option {
	t.Helper()
	o, err := retryhttpotel.NewMetrics(m.mp)
	require.NoError(t, err)
	return o
}
