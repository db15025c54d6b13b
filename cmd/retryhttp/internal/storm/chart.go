package storm

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/retryhttp/retryhttp/cmd/retryhttp/internal/svg"
	"github.com/retryhttp/retryhttp/internal/fleet"
)

// The chart's colors, as sim's: offered load red, goodput blue.
const (
	offeredColor  = "#d62728"
	goodputColor  = "#1f77b4"
	capacityColor = "#555"
	outageColor   = "#fbe3e3"
)

// chart returns an SVG image with a panel per policy, two to a row, each
// with the offered load (attempts sent per second) and the goodput
// (requests answered 200 in time, per second) over the run, the server's
// capacity and the outage; every panel has the same scale.
func chart(c *fleet.Config, runs []*fleet.Run) string {
	const (
		w      = 960
		panelW = 400
		panelH = 150
		left   = 60  // the first panel's plot area
		gapX   = 480 // from one column's plot area to the next
		top    = 78
		gapY   = 210 // from one row's plot area to the next
	)
	rows := (len(runs) + 1) / 2
	h := top + rows*gapY + 10
	var b strings.Builder
	svg.Start(&b, w, h, fmt.Sprintf("Goodput and offered load through a %v %s: %d clients, %g%% of capacity, attempt timeout %v",
		c.Outage, outageWord(c), c.Clients, 100*c.Load, c.AttemptTimeout))
	legend(&b, w, 44)

	step := time.Second
	maxY := c.Capacity
	series := make([][2][]float64, len(runs))
	for i, r := range runs {
		good, offered := r.Series.PerSecond(step)
		series[i] = [2][]float64{good, offered}
		for _, v := range offered {
			maxY = max(maxY, v)
		}
	}
	tickY := svg.NiceCeil(maxY / 5)
	maxY = math.Ceil(maxY/tickY) * tickY
	for i, r := range runs {
		x0, y0 := left+(i%2)*gapX, top+(i/2)*gapY
		panel(&b, c, r, series[i][0], series[i][1], step, x0, y0, panelW, panelH, maxY, tickY)
	}
	svg.End(&b)
	return b.String()
}

func outageWord(c *fleet.Config) string {
	switch c.Trigger {
	case fleet.Unavailable:
		return "outage of 503s"
	case fleet.Drop:
		return "outage of dropped connections"
	}
	return "stall"
}

// legend draws the key of the lines, centered at y.
func legend(b *strings.Builder, w, y int) {
	items := []struct{ color, dash, label string }{
		{offeredColor, "", "offered load (attempts/s)"},
		{goodputColor, "", "goodput (requests/s answered 200 in time)"},
		{capacityColor, ` stroke-dasharray="4 3"`, "capacity"},
	}
	x := w/2 - 330
	for _, it := range items {
		fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`, x, y, x+24, y, it.color, it.dash)
		fmt.Fprintf(b, `<text x="%d" y="%d">%s</text>`+"\n", x+30, y+4, it.label)
		x += 40 + 7*len(it.label)
	}
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="24" height="10" fill="%s"/><text x="%d" y="%d">outage</text>`+"\n", x, y-5, outageColor, x+30, y+4)
}

// panel draws one policy's chart with its plot area at (x0, y0), w by h
// pixels, y from 0 to maxY with a line every tickY.
func panel(b *strings.Builder, c *fleet.Config, r *fleet.Run, good, offered []float64, step time.Duration, x0, y0, w, h int, maxY, tickY float64) {
	dur := c.Duration.Seconds()
	px := func(s float64) float64 { return float64(x0) + s/dur*float64(w) }
	py := func(v float64) float64 { return float64(y0+h) - v/maxY*float64(h) }

	recovered := "never recovered"
	if s := r.Result.RecoveredAfterS; s != nil {
		recovered = fmt.Sprintf("recovered %.1f s after the outage", *s)
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="13" text-anchor="middle">%s: %s, peak amplification %.2f×</text>`+"\n",
		x0+w/2, y0-10, r.Policy.Name, recovered, r.Result.PeakAmplification)
	fmt.Fprintf(b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n",
		px(c.OutageAt.Seconds()), y0, px((c.OutageAt+c.Outage).Seconds())-px(c.OutageAt.Seconds()), h, outageColor)
	for v := 0.0; v <= maxY; v += tickY { // horizontal grid and y labels
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`, x0, py(v), x0+w, py(v))
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-6, py(v)+4, svg.Compact(v))
	}
	tick := svg.NiceCeil(dur / 6)
	for s := 0.0; s <= dur; s += tick { // x labels
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%g</text>`, px(s), y0+h+16, s)
	}
	fmt.Fprintf(b, "\n"+`<text x="%d" y="%d" text-anchor="middle">seconds</text>`+"\n", x0+w/2, y0+h+32)
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n",
		x0, y0, x0, y0+h, x0, y0+h, x0+w, y0+h)
	fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-dasharray="4 3"/>`+"\n", x0, py(c.Capacity), x0+w, py(c.Capacity), capacityColor)
	for _, line := range []struct {
		values []float64
		color  string
	}{{offered, offeredColor}, {good, goodputColor}} {
		pts := make([]string, len(line.values))
		for i, v := range line.values {
			mid := (float64(i) + 0.5) * step.Seconds() // each value is the rate over its step
			pts[i] = fmt.Sprintf("%.1f,%.1f", px(mid), py(v))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", line.color, strings.Join(pts, " "))
	}
}
