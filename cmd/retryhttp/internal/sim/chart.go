package sim

import (
	"fmt"
	"math"
	"strings"

	"github.com/retryhttp/retryhttp/cmd/retryhttp/internal/svg"
)

// chartColors are the series colors, one per jitter mode in simJitters order.
var chartColors = []string{"#d62728", "#1f77b4", "#2ca02c", "#9467bd"}

// simChart returns an SVG image with two line charts side by side: total
// calls and completion time against the number of clients, one line per
// jitter mode.
func simChart(results []Result, c simConfig) string {
	const w, h = 960, 420
	var b strings.Builder
	svg.Start(&b, w, h, fmt.Sprintf("Backoff with and without jitter: %d runs per point, network delay %v ± %v, base %v, cap %v",
		c.runs, c.delay, c.stddev, c.base, c.cap))
	plot(&b, results, c.clients, 60, 60, 400, 290, "total calls (writes sent)", false, func(r Result) float64 { return float64(r.Calls) })
	plot(&b, results, c.clients, 540, 60, 400, 290, "completion time (ms, log scale)", true, func(r Result) float64 { return r.CompletionMS })
	for i, j := range simJitters {
		x := 250 + i*130
		fmt.Fprintf(&b, `<line x1="%d" y1="398" x2="%d" y2="398" stroke="%s" stroke-width="3"/>`, x, x+24, chartColors[i])
		fmt.Fprintf(&b, `<text x="%d" y="402">%s jitter</text>`+"\n", x+30, j)
	}
	svg.End(&b)
	return b.String()
}

// plot draws one chart with its axes at (x0, y0), w by h pixels; logY
// draws the y axis in powers of ten.
func plot(b *strings.Builder, results []Result, clients []int, x0, y0, w, h int, title string, logY bool, value func(Result) float64) {
	maxX, minY, maxY := 0.0, math.Inf(1), 0.0
	for _, n := range clients {
		maxX = math.Max(maxX, float64(n))
	}
	for _, r := range results {
		maxY = math.Max(maxY, value(r))
		minY = math.Min(minY, value(r))
	}
	if maxX == 0 || maxY == 0 {
		return
	}
	px := func(v float64) float64 { return float64(x0) + v/maxX*float64(w) }
	var py func(float64) float64
	var ticks []float64
	if logY {
		lo := math.Floor(math.Log10(math.Max(minY, 1)))
		hi := math.Ceil(math.Log10(maxY))
		if hi == lo {
			hi++
		}
		py = func(v float64) float64 {
			return float64(y0+h) - (math.Log10(math.Max(v, 1))-lo)/(hi-lo)*float64(h)
		}
		for e := lo; e <= hi; e++ {
			ticks = append(ticks, math.Pow(10, e))
		}
	} else {
		maxY = svg.NiceCeil(maxY)
		py = func(v float64) float64 { return float64(y0+h) - v/maxY*float64(h) }
		for i := 0; i <= 4; i++ {
			ticks = append(ticks, maxY*float64(i)/4)
		}
	}

	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="13" text-anchor="middle">%s</text>`+"\n", x0+w/2, y0-10, title)
	for _, v := range ticks { // horizontal grid and y labels
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`, x0, py(v), x0+w, py(v))
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-6, py(v)+4, svg.Compact(v))
	}
	for _, n := range clients { // x labels
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`, px(float64(n)), y0+h+16, n)
	}
	fmt.Fprintf(b, "\n"+`<text x="%d" y="%d" text-anchor="middle">clients</text>`+"\n", x0+w/2, y0+h+34)
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n",
		x0, y0, x0, y0+h, x0, y0+h, x0+w, y0+h)
	for i, j := range simJitters {
		var pts []string
		for _, n := range clients {
			r := find(results, j.String(), n)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(float64(n)), py(value(r))))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", chartColors[i], strings.Join(pts, " "))
	}
}
