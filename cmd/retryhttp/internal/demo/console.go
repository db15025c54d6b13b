package demo

import (
	"fmt"
	"io"
	"time"
)

// progressEvery returns the interval of the progress line: every, or by
// default 250ms on a terminal and 5s otherwise.
func progressEvery(every time.Duration, tty bool) time.Duration {
	switch {
	case every > 0:
		return every
	case tty:
		return 250 * time.Millisecond
	}
	return 5 * time.Second
}

// console writes the demo's lines. On a terminal the progress line is
// redrawn in place, and a line written after it replaces it; otherwise
// each progress line is a line of its own.
type console struct {
	w    io.Writer
	tty  bool
	live bool // a progress line is on the screen, with no newline after it
}

// progress shows a progress line.
func (c *console) progress(line string) {
	if !c.tty {
		fmt.Fprintln(c.w, line)
		return
	}
	fmt.Fprint(c.w, "\r\x1b[K"+line)
	c.live = true
}

// println writes a line, in place of the progress line on a terminal.
func (c *console) println(line string) {
	if c.live {
		fmt.Fprint(c.w, "\r\x1b[K")
		c.live = false
	}
	fmt.Fprintln(c.w, line)
}
