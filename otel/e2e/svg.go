package e2e

import (
	"fmt"
	"html"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// WriteSVG draws the span tree of one trace as a timeline: the root span on
// top, each span under its parent, a bar from its start to its end, its
// name, resend count and status on the left, and the root's events as
// marks on its bar. spans must hold one trace with one root.
func WriteSVG(w io.Writer, spans []Span) error {
	byID := map[string]Span{}
	children := map[string][]Span{}
	var root *Span
	for i, s := range spans {
		byID[s.SpanID] = s
		if s.ParentID == "" {
			if root != nil {
				return fmt.Errorf("two root spans: %q and %q", root.Name, s.Name)
			}
			root = &spans[i]
		}
	}
	if root == nil {
		return fmt.Errorf("no root span among %d spans", len(spans))
	}
	for _, s := range spans {
		if s.ParentID != "" {
			if _, ok := byID[s.ParentID]; !ok {
				return fmt.Errorf("span %q has a parent that is not in the trace", s.Name)
			}
			children[s.ParentID] = append(children[s.ParentID], s)
		}
	}
	type row struct {
		s     Span
		depth int
	}
	var rows []row
	var walk func(s Span, depth int)
	walk = func(s Span, depth int) {
		rows = append(rows, row{s, depth})
		kids := children[s.SpanID]
		sort.Slice(kids, func(i, j int) bool { return kids[i].Start.Before(kids[j].Start) })
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	walk(*root, 0)

	const (
		width    = 960
		labelW   = 360
		rowH     = 34
		top      = 58
		barH     = 18
		rightPad = 30
	)
	start, end := root.Start, root.End
	for _, r := range rows {
		if r.s.End.After(end) {
			end = r.s.End
		}
	}
	total := end.Sub(start)
	if total <= 0 {
		total = time.Millisecond
	}
	x := func(t time.Time) float64 {
		return labelW + float64(t.Sub(start))/float64(total)*(width-labelW-rightPad)
	}
	height := top + rowH*len(rows) + 70

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="13">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="12" y="24" font-size="15" font-weight="bold">One request, %d attempts: the trace as the OpenTelemetry Collector received it</text>`+"\n", len(rows)-1)
	fmt.Fprintf(&b, `<text x="12" y="44" fill="#555">trace %s</text>`+"\n", esc(root.TraceID))

	// Time axis: five ticks.
	axisY := top + rowH*len(rows) + 8
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`+"\n", labelW, axisY, width-rightPad, axisY)
	for i := 0; i <= 4; i++ {
		t := start.Add(total * time.Duration(i) / 4)
		tx := x(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#999"/>`+"\n", tx, axisY, tx, axisY+5)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s</text>`+"\n", tx, axisY+20, esc(ms(t.Sub(start))))
	}

	for i, r := range rows {
		y := top + rowH*i
		s := r.s
		label := s.Name
		color := "#6c8ebf" // the caller's span
		if s.Client {
			status := s.Attrs["http.response.status_code"]
			if status == "" {
				status = s.Attrs["error.type"]
			}
			label = s.Name + " " + status
			if n := s.Attrs["http.request.resend_count"]; n != "" {
				label += "   resend_count=" + n
			} else {
				label += "   (no resend_count)"
			}
			color = "#82b366"
			if code, err := strconv.Atoi(s.Attrs["http.response.status_code"]); err != nil || code >= 500 || code == 429 {
				color = "#d96b6b"
			}
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", 12+18*r.depth, y+barH-4, esc(label))
		x0, x1 := x(s.Start), x(s.End)
		if x1-x0 < 2 {
			x1 = x0 + 2
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" rx="3" fill="%s"/>`+"\n", x0, y, x1-x0, barH, color)
		if s.SpanID == root.SpanID {
			for _, e := range s.Events {
				ex := x(e.Time)
				fmt.Fprintf(&b, `<path d="M%.1f %d l5 6 l-5 6 l-5 -6 z" fill="#333"/>`+"\n", ex, y+barH+1)
			}
		}
	}
	// The root's events, listed under the axis.
	var notes []string
	for _, e := range root.Events {
		text := e.Name
		if reason := e.Attrs["retryhttp.reason"]; reason != "" {
			text += " (" + reason
			if wait := e.Attrs["retryhttp.wait"]; wait != "" {
				if f, err := strconv.ParseFloat(wait, 64); err == nil {
					text += ", waited " + ms(time.Duration(f*float64(time.Second)))
				}
			}
			text += ")"
		}
		notes = append(notes, text+" at "+ms(e.Time.Sub(start)))
	}
	if len(notes) > 0 {
		fmt.Fprintf(&b, `<text x="12" y="%d" fill="#333">◆ events on %s: %s</text>`+"\n", axisY+45, esc(root.Name), esc(strings.Join(notes, "; ")))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func esc(s string) string { return html.EscapeString(s) }

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
}
