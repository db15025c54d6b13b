package do

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/cmd/retryhttp/internal/cli"
)

// transcript is what the attempts of a request told their observer: how
// many there were, the last one, and the redirects; with -v it prints each.
type transcript struct {
	verbose io.Writer          // nil: quiet
	words   func(error) string // an attempt's error in the command's words

	mu        sync.Mutex
	attempts  int // sent, over every redirect
	hop       int // sent since the last redirect
	redirects int
	lastHop   *http.Request // the request of the last redirect
	last      retryhttp.Attempt
	status    int // the last status code received, 0 before one
}

func (s *transcript) observe(a retryhttp.Attempt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.Err == nil || !errors.Is(a.Err, retryhttp.ErrThrottled) {
		s.attempts++
		s.hop++
	}
	if a.Response != nil {
		s.status = a.Response.StatusCode
	}
	last := a
	last.Response = nil // not kept past the call
	last.Request = nil
	s.last = last
	if s.verbose == nil {
		return
	}
	line := fmt.Sprintf("retryhttp: attempt %d", a.Number)
	if a.Hedge {
		line += " (hedge)"
	}
	line += fmt.Sprintf(": %s %s: ", a.Request.Method, cli.Redact(a.Request.URL.String()))
	if a.Response != nil {
		line += a.Response.Status
	} else {
		line += s.words(a.Err)
	}
	line += " in " + a.Duration.Round(100*time.Microsecond).String()
	if a.Held > 0 {
		line += fmt.Sprintf(" (held %v for the host's quota)", a.Held.Round(time.Millisecond))
	}
	if a.Retry {
		source := "backoff"
		if a.ServerWait {
			source = "Retry-After"
		}
		line += fmt.Sprintf("; retrying in %v (%s)", a.Wait.Round(time.Millisecond), source)
	}
	fmt.Fprintln(s.verbose, printable(line))
}

func (s *transcript) redirected(req *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.redirects++
	s.hop = 0
	s.lastHop = req
	if s.verbose != nil {
		fmt.Fprintf(s.verbose, "retryhttp: redirected to %s\n", cli.Redact(req.URL.String()))
	}
}

// lastStatus returns the last status code received, or 0.
func (s *transcript) lastStatus() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// lastRequest returns the request of the last redirect followed, or nil.
func (s *transcript) lastRequest() *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastHop
}

// hopAttempts returns the attempts sent since the last redirect: those of
// the request that failed.
func (s *transcript) hopAttempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hop
}

func (s *transcript) counts() (attempts, redirects int, last retryhttp.Attempt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts, s.redirects, s.last
}
