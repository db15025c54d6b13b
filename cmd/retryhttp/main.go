// Command retryhttp shows and uses the retryhttp library from a shell:
//
//	retryhttp demo      a flaky upstream, concurrent clients, live metrics (the main job)
//	retryhttp do        one HTTP request with retries, like curl; safe to run from cron
//	retryhttp sim       the AWS "Exponential Backoff And Jitter" simulation, with this library's backoff
//	retryhttp version   the version of the command and of Go
//
// Exit codes: 0 success; 2 usage error; 1 the command failed. retryhttp do
// uses curl's numbers where curl has one (see exitCodeHelp).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// Exit codes: curl's numbers where curl has one.
const (
	exitOK          = 0
	exitFailed      = 1  // anything else
	exitUsage       = 2  // a bad flag or argument
	exitResolve     = 6  // the host name could not be resolved
	exitConnect     = 7  // no connection could be made
	exitPartial     = 18 // the body was cut short
	exitWrite       = 23 // the body could not be written
	exitHTTP        = 22 // the final status was 400 or more
	exitRead        = 26 // a -data-binary file changed while being sent
	exitTimeout     = 28 // -timeout, -attempt-timeout or -connect-timeout passed
	exitRedirects   = 47 // more redirects than -max-redirects
	exitCertificate = 60 // the server's certificate could not be verified
	exitSIGINT      = 130
	exitSIGTERM     = 143
)

// exitCodeHelp documents the exit codes of retryhttp do.
const exitCodeHelp = `Exit codes (curl's numbers where curl has one):
  0    success: a final status below 400
  1    anything else (a file could not be read or written, ...)
  2    usage error
  6    the host name could not be resolved
  7    no connection could be made (refused, unreachable)
  18   the response body was cut short
  23   the body could not be written (-o's disk full; a closed pipe on
       standard output ends the command with SIGPIPE instead, as it ends cat)
  22   the final status was 400 or more (the body is not printed; -w is)
  26   the -data-binary file changed (its size or modification time) while
       being sent: no retry is sent with other bytes than the first attempt's
  28   -timeout, -attempt-timeout or -connect-timeout passed
  47   more redirects than -max-redirects
  60   the server's certificate could not be verified (-cacert FILE trusts
       other authorities; so does the SSL_CERT_FILE environment variable)
  130  interrupted (SIGINT); 143 terminated (SIGTERM): within a second even
       when blocked (on a pipe nobody reads, say); a second signal exits at once`

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

var commands = []command{
	{"demo", "run a flaky upstream and concurrent clients through a Transport, with live metrics", runDemo},
	{"do", "send one HTTP request with retries, like curl (cron-safe with -start-jitter)", runDo},
	{"sim", "simulate clients contending with each jitter mode, as in AWS's backoff study", runSim},
	{"version", "print the version of the command", runVersion},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-version", "--version":
		return runVersion(nil, stdin, stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			for _, c := range commands {
				if c.name == args[1] {
					return c.run([]string{"-h"}, stdin, stdout, stdout)
				}
			}
			fmt.Fprintf(stderr, "retryhttp: unknown command %q\n", args[1])
			usage(stderr)
			return exitUsage
		}
		usage(stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:], stdin, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "retryhttp: unknown command %q (see retryhttp help)\n", args[0])
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "retryhttp: HTTP with retries, exponential backoff and jitter.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: retryhttp <command> [flags] [arguments]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'retryhttp help <command>' or 'retryhttp <command> -h' for its flags.")
	fmt.Fprintln(w, "Exit codes: 0 success, 2 usage error, 1 failure; retryhttp do uses curl's (see retryhttp do -h).")
}

// newFlagSet returns a flag set for a subcommand that reports errors itself:
// a usage error is one line with a hint, and -h prints the flags (see
// parse).
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("retryhttp "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: retryhttp %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args into fs, for a subcommand that takes no positional
// arguments beyond what fs.Args reports. -h prints the flags to the flag
// set's output.
func parse(fs *flag.FlagSet, args []string) (code int, done bool) {
	rest, code, done := parseArgs(fs, args, fs.Output())
	if !done && len(rest) > 0 {
		_ = fs.Parse(append([]string{"--"}, rest...)) // fs.Args() is the positional arguments
	}
	return code, done
}

// parseArgs parses args into fs. Flags may follow the positional arguments,
// as curl allows (retryhttp do URL -v); "--" ends the flags. It returns
// the positional arguments, or done with the exit code: exitOK after -h
// printed the flags to stdout, exitUsage after one line on the flag set's
// output.
func parseArgs(fs *flag.FlagSet, args []string, stdout io.Writer) (positional []string, code int, done bool) {
	out := fs.Output()
	fs.SetOutput(io.Discard) // the flag package would print the whole usage
	defer fs.SetOutput(out)
	for {
		err := fs.Parse(args)
		switch {
		case errors.Is(err, flag.ErrHelp):
			fs.SetOutput(stdout)
			fs.Usage()
			return nil, exitOK, true
		case err != nil:
			fmt.Fprintf(out, "%s: %v (see %s -h)\n", fs.Name(), err, fs.Name())
			return nil, exitUsage, true
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, exitOK, false
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(positional, rest...), exitOK, false
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// usageError prints a one-line message with a hint, for exit code 2.
func usageError(fs *flag.FlagSet, format string, args ...any) int {
	msg := strings.TrimPrefix(fmt.Sprintf(format, args...), "retryhttp: ") // the library's prefix would double ours
	fmt.Fprintf(fs.Output(), "%s: %s (see %s -h)\n", fs.Name(), msg, fs.Name())
	return exitUsage
}

// runVersion prints the command's version: its module version (or
// "(devel)" when built from a checkout) and VCS revision, and Go's.
func runVersion(_ []string, _ io.Reader, stdout, _ io.Writer) int {
	fmt.Fprintln(stdout, version())
	return exitOK
}

func version() string {
	v := "retryhttp (unknown version)"
	if info, ok := debug.ReadBuildInfo(); ok {
		v = "retryhttp " + info.Main.Version
		var rev, modified string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = "+modified"
				}
			}
		}
		if rev != "" {
			v += " (" + rev[:min(12, len(rev))] + modified + ")"
		}
	}
	return v + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}
