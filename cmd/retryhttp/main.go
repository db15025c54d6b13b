// Command retryhttp shows and uses the retryhttp library from a shell:
//
//	retryhttp demo   a flaky upstream, concurrent clients, live metrics (the main job)
//	retryhttp do     one HTTP request with retries, like curl; safe to run from cron
//	retryhttp sim    the AWS "Exponential Backoff And Jitter" simulation, with this library's backoff
//
// Exit codes: 0 success; 1 the request failed (a final status other than 2xx
// or 3xx, or a transport error) or the command could not run; 2 usage error.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

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
	fmt.Fprintf(stderr, "retryhttp: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "retryhttp: HTTP with retries, exponential backoff and jitter.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: retryhttp <command> [flags] [arguments]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-5s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'retryhttp help <command>' or 'retryhttp <command> -h' for its flags.")
	fmt.Fprintln(w, "Exit codes: 0 success, 1 the request failed, 2 usage error.")
}

// newFlagSet returns a flag set for a subcommand that reports errors itself
// (one line and the usage, exit 2) instead of exiting.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("retryhttp "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: retryhttp %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args into fs. It returns exitOK with done set for -h, or
// exitUsage after printing the error and the usage.
func parse(fs *flag.FlagSet, args []string) (code int, done bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return exitOK, false
	case errors.Is(err, flag.ErrHelp):
		return exitOK, true
	default:
		return exitUsage, true // the flag package printed the error and the usage
	}
}

// usageError prints a one-line message and the usage, for exit code 2.
func usageError(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(fs.Output(), "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return exitUsage
}
