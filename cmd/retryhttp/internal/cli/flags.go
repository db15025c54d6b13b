// Package cli holds what the subcommands of retryhttp share: their exit
// codes, flag parsing with one-line usage errors, the flag types that
// mirror retryhttp.Policy and take curl's bare seconds, a wait that a
// context ends, the redaction of URLs in messages, and the version.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/retryhttp/retryhttp"
)

// NewFlagSet returns a flag set for a subcommand that reports errors itself:
// a usage error is one line with a hint, and -h prints the flags (see
// Parse).
func NewFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("retryhttp "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: retryhttp %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses args into fs, for a subcommand that takes no positional
// arguments beyond what fs.Args reports. -h prints the flags to the flag
// set's output.
func Parse(fs *flag.FlagSet, args []string) (code int, done bool) {
	rest, code, done := ParseArgs(fs, args, fs.Output())
	if !done && len(rest) > 0 {
		_ = fs.Parse(append([]string{"--"}, rest...)) // fs.Args() is the positional arguments
	}
	return code, done
}

// ParseArgs parses args into fs. Flags may follow the positional arguments,
// as curl allows (retryhttp do URL -v); "--" ends the flags. It returns
// the positional arguments, or done with the exit code: ExitOK after -h
// printed the flags to stdout, ExitUsage after one line on the flag set's
// output.
func ParseArgs(fs *flag.FlagSet, args []string, stdout io.Writer) (positional []string, code int, done bool) {
	out := fs.Output()
	fs.SetOutput(io.Discard) // the flag package would print the whole usage
	defer fs.SetOutput(out)
	for {
		err := fs.Parse(args)
		switch {
		case errors.Is(err, flag.ErrHelp):
			fs.SetOutput(stdout)
			fs.Usage()
			return nil, ExitOK, true
		case err != nil:
			fmt.Fprintf(out, "%s: %v (see %s -h)\n", fs.Name(), err, fs.Name())
			return nil, ExitUsage, true
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, ExitOK, false
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(positional, rest...), ExitOK, false
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// UsageError prints a one-line message with a hint, for exit code 2.
func UsageError(fs *flag.FlagSet, format string, args ...any) int {
	msg := strings.TrimPrefix(fmt.Sprintf(format, args...), "retryhttp: ") // the library's prefix would double ours
	fmt.Fprintf(fs.Output(), "%s: %s (see %s -h)\n", fs.Name(), msg, fs.Name())
	return ExitUsage
}

// Headers collects repeated -H flags.
type Headers []string

func (h *Headers) String() string     { return strings.Join(*h, ", ") }
func (h *Headers) Set(v string) error { *h = append(*h, v); return nil }

// Strings collects a repeated string flag.
type Strings []string

func (s *Strings) String() string     { return strings.Join(*s, "&") }
func (s *Strings) Set(v string) error { *s = append(*s, v); return nil }

// Seconds is a duration flag that also takes a bare number of seconds, as
// curl's -m does: "5", "0.5", "2m".
type Seconds time.Duration

func (s *Seconds) String() string { return time.Duration(*s).String() }
func (s *Seconds) Set(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if !(f >= 0 && f <= float64(1<<62)/float64(time.Second)) { // NaN too
			return fmt.Errorf("%v seconds is out of range", v)
		}
		*s = Seconds(f * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is neither seconds (5, 0.5) nor a duration (2m, 500ms)", v)
	}
	if d < 0 {
		return fmt.Errorf("%v is negative", d)
	}
	*s = Seconds(d)
	return nil
}

// PolicyFlags are the flags that mirror retryhttp.Policy.
type PolicyFlags struct {
	Attempts      int
	BaseDelay     time.Duration
	MaxDelay      time.Duration
	Jitter        string
	MaxRetryAfter time.Duration
}

// PolicyDefaults are the defaults a command gives the policy flags.
type PolicyDefaults struct {
	Attempts            int
	BaseDelay, MaxDelay time.Duration
	Jitter              string
}

// LibraryDefaults are the library's own.
var LibraryDefaults = PolicyDefaults{Attempts: retryhttp.DefaultMaxAttempts, BaseDelay: retryhttp.DefaultBaseDelay, MaxDelay: retryhttp.DefaultMaxDelay, Jitter: "full"}

// Register adds the policy flags to fs, with the library's defaults unless
// others are given.
func (p *PolicyFlags) Register(fs *flag.FlagSet, defaults ...PolicyDefaults) {
	d := LibraryDefaults
	if len(defaults) > 0 {
		d = defaults[0]
	}
	fs.IntVar(&p.Attempts, "attempts", d.Attempts, "attempts in all, the first included; 1 disables retries")
	fs.DurationVar(&p.BaseDelay, "base-delay", d.BaseDelay, "first backoff step")
	fs.DurationVar(&p.MaxDelay, "max-delay", d.MaxDelay, "cap on one backoff wait")
	fs.StringVar(&p.Jitter, "jitter", d.Jitter, "backoff jitter: full, equal, decorrelated or none")
	fs.DurationVar(&p.MaxRetryAfter, "max-retry-after", retryhttp.DefaultMaxRetryAfter, "longest Retry-After wait honored; longer ones end the request")
}

// Policy returns the Policy the flags describe, or an error naming the flag.
func (p *PolicyFlags) Policy() (retryhttp.Policy, error) {
	j, err := retryhttp.ParseJitter(p.Jitter)
	if err != nil {
		return retryhttp.Policy{}, fmt.Errorf("-jitter: %q is not full, equal, decorrelated or none", p.Jitter)
	}
	if p.Attempts < 1 {
		return retryhttp.Policy{}, fmt.Errorf("-attempts: %d is less than 1", p.Attempts)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"-base-delay", p.BaseDelay}, {"-max-delay", p.MaxDelay}, {"-max-retry-after", p.MaxRetryAfter}} {
		if d.v <= 0 {
			return retryhttp.Policy{}, fmt.Errorf("%s: %v is not positive", d.name, d.v)
		}
	}
	if p.MaxDelay < p.BaseDelay {
		return retryhttp.Policy{}, fmt.Errorf("-max-delay: %v is below -base-delay %v", p.MaxDelay, p.BaseDelay)
	}
	pol := retryhttp.Policy{MaxAttempts: p.Attempts, BaseDelay: p.BaseDelay, MaxDelay: p.MaxDelay, Jitter: j, MaxRetryAfter: p.MaxRetryAfter}
	if err := pol.Validate(); err != nil {
		return retryhttp.Policy{}, err
	}
	return pol, nil
}
