// Package svg holds what the charts of retryhttp sim and retryhttp storm
// share: the frame of the image and the numbers of the axes.
package svg

import (
	"fmt"
	"math"
	"strings"
)

// Start begins an image w by h pixels on a white ground, with its title
// centered at the top.
func Start(b *strings.Builder, w, h int, title string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(b, `<text x="%d" y="22" font-size="15" text-anchor="middle">%s</text>`+"\n", w/2, title)
}

// End ends the image.
func End(b *strings.Builder) { b.WriteString("</svg>\n") }

// NiceCeil rounds v up to 1, 2 or 5 times a power of ten.
func NiceCeil(v float64) float64 {
	if v <= 0 {
		return 0
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// Compact writes an axis label: 1500 as 1.5k.
func Compact(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%gk", v/1000)
	}
	return fmt.Sprintf("%g", v)
}
