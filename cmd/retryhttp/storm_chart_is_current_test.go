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
	assert.Equal(t, 6, strings.Count(svg, "<polyline"), "offered load and goodput for each of three policies")
}
