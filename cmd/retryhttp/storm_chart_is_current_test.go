package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// docs/storm.svg, in the README, is what retryhttp storm draws now.
func TestCommittedStormChartIsCurrent(t *testing.T) {
	t.Parallel()
	svg := assertChartIsCurrent(t, "storm")
	panels := strings.Count(svg, "peak amplification") // in each policy's title
	assert.GreaterOrEqual(t, panels, 3, "none, naive and default at least")
	assert.Equal(t, 2*panels, strings.Count(svg, "<polyline"), "offered load and goodput for each policy")
}
