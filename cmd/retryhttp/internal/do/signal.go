package do

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/retryhttp/retryhttp/cmd/retryhttp/internal/cli"
)

// signalGrace is how long retryhttp do has, after a first SIGINT or
// SIGTERM, to end by itself before it is made to exit; messageWait is how
// long a forced exit waits for standard error to take its line.
const (
	signalGrace = time.Second
	messageWait = 200 * time.Millisecond
)

// signals ends retryhttp do on SIGINT and SIGTERM, whatever it is blocked
// on, with the shell's exit status for the first signal that came (128 +
// its number: 130, 143).
//
// The first signal cancels the context: that ends the request, a wait
// before a retry, the read of standard input, the wait for a reader of a
// FIFO given to -o; the command then ends by itself, as on any failure:
// -o's temporary file is removed, the failure line and -w's line are
// printed. Some things no context ends: a write to a pipe nobody reads
// (standard output, standard error), the sync of -o's temporary file on a
// stalled disk. So when the command has not ended signalGrace after the
// first signal, or at once when a second signal comes, the process exits
// from the signal's goroutine, without waiting for the blocked one: the
// functions given to atExit run first (they remove the temporary file),
// then a line on standard error says why, if standard error takes it
// within messageWait; -w's line is not printed then.
type signals struct {
	ch     chan os.Signal
	cancel context.CancelFunc
	done   chan struct{}
	stderr io.Writer
	grace  time.Duration

	mu       sync.Mutex // guards the fields below
	got      os.Signal  // the first signal, nil before it
	cleanups []func()   // run before a forced exit
}

// interruptible returns a context that the first SIGINT or SIGTERM
// cancels, and what watches for them; stop ends the watch.
func interruptible(stderr io.Writer) (context.Context, *signals) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &signals{ch: make(chan os.Signal, 2), cancel: cancel, done: make(chan struct{}), stderr: stderr, grace: signalGrace}
	signal.Notify(s.ch, os.Interrupt, syscall.SIGTERM)
	go s.watch()
	return ctx, s
}

// watch waits for the first signal, cancels the context, then exits the
// process unless the command ends within the grace period and before a
// second signal.
func (s *signals) watch() {
	var first os.Signal
	select {
	case first = <-s.ch:
	case <-s.done:
		return
	}
	s.mu.Lock()
	s.got = first
	s.mu.Unlock()
	s.cancel()
	timer := time.NewTimer(s.grace)
	defer timer.Stop()
	select {
	case <-s.done:
	case second := <-s.ch:
		s.exit(first, fmt.Sprintf("%v: stopped at once by a second signal (%v)", first, second))
	case <-timer.C:
		s.exit(first, fmt.Sprintf("%v: stopped %v after the signal, still blocked (writing to a pipe nobody reads?)", first, s.grace))
	}
}

// exit runs the atExit functions and exits with first's status, after
// saying why on standard error if it takes the line within messageWait.
func (s *signals) exit(first os.Signal, why string) {
	s.mu.Lock()
	cleanups := s.cleanups
	s.mu.Unlock()
	for _, f := range cleanups {
		f()
	}
	printed := make(chan struct{})
	go func() {
		fmt.Fprintln(s.stderr, "retryhttp do:", why)
		close(printed)
	}()
	select {
	case <-printed:
	case <-time.After(messageWait):
	}
	os.Exit(exitStatus(first))
}

// atExit adds f to what a forced exit runs first. f must not block and
// may run while the command's own goroutine is still at work.
func (s *signals) atExit(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

// stop ends the watch: the command is ending by itself.
func (s *signals) stop() {
	signal.Stop(s.ch)
	close(s.done)
	s.cancel()
}

// came reports whether a signal came.
func (s *signals) came() bool { return s.code(nil) != 0 }

// code returns the exit status for the signal that came (130, 143), after
// saying so on w when it is not nil; 0 when none came.
func (s *signals) code(w io.Writer) int {
	s.mu.Lock()
	sig := s.got
	s.mu.Unlock()
	code := exitStatus(sig)
	if code != 0 && w != nil {
		fmt.Fprintf(w, "retryhttp do: %v: stopped\n", sig)
	}
	return code
}

// exitStatus returns the shell's status for a command that a signal
// ended: 128 + its number; 0 for none.
func exitStatus(sig os.Signal) int {
	switch sig {
	case os.Interrupt:
		return cli.ExitSIGINT
	case syscall.SIGTERM:
		return cli.ExitSIGTERM
	}
	return 0
}
