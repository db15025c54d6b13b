package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReportTakesMediansAndRatiosToBare(t *testing.T) {
	in := `goos: linux
cpu: Test CPU
BenchmarkX/lib=bare-2         	10	100 ns/op	10 B/op	1 allocs/op
BenchmarkX/lib=retryhttp-2    	10	110 ns/op	10 B/op	1 allocs/op
BenchmarkX/lib=bare-2         	10	300 ns/op	10 B/op	1 allocs/op
BenchmarkX/lib=retryhttp-2    	10	90 ns/op	10 B/op	1 allocs/op
BenchmarkX/lib=bare-2         	10	200 ns/op	10 B/op	1 allocs/op
BenchmarkX/lib=retryhttp-2    	10	400 ns/op	10 B/op	1 allocs/op
BenchmarkStreamUpload/lib=rehttp-2 	1	5 ns/op	1037 peak-RSS-MiB
PASS
`
	var out strings.Builder
	require.NoError(t, run(strings.NewReader(in), &out))
	got := out.String()
	assert.Contains(t, got, "goos: linux; cpu: Test CPU")
	assert.Contains(t, got, "**X** (median of 3 runs; in brackets, the median ratio to bare in the same run)")
	assert.Contains(t, got, "| bare | 200 ns | 10 B | 1 |")
	// Per-run ratios 1.1, 0.3 and 2.0: their median, not the ratio of medians (0.55).
	assert.Contains(t, got, "| retryhttp | 110 ns (1.10×) | 10 B (1.00×) | 1 (1.00×) |")
	assert.Contains(t, got, "**StreamUpload** (median of 1 runs)", "no bare row, no ratio")
	assert.Contains(t, got, "| rehttp | 5 ns | 1037.0 MiB |")

	assert.Error(t, run(strings.NewReader("PASS\n"), &out))
}
