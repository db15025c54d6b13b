package storm

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/retryhttp/retryhttp/internal/fleet"
)

// showProgress draws, every 200 ms until stop is called, a line on w (a
// terminal) that says how far each policy's run has come, redrawn in place
// and erased at the end, as curl's progress meter is.
func showProgress(w io.Writer, c *fleet.Config, runs []*fleet.Run) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		drawn := false
		for {
			select {
			case <-done:
				if drawn {
					fmt.Fprint(w, "\r\x1b[K")
				}
				return
			case <-tick.C:
				var b strings.Builder
				b.WriteString("\rretryhttp storm: simulating")
				for _, r := range runs {
					fmt.Fprintf(&b, "  %s %3.0f%%", r.Policy.Name, 100*float64(r.Done())/float64(c.Duration))
				}
				b.WriteString("\x1b[K")
				fmt.Fprint(w, b.String())
				drawn = true
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
