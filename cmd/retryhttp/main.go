// Command retryhttp shows and uses the retryhttp library from a shell:
//
//	retryhttp demo      a flaky upstream, concurrent clients, live metrics (the main job)
//	retryhttp do        one HTTP request with retries, like curl; safe to run from cron
//	retryhttp sim       the AWS "Exponential Backoff And Jitter" simulation, with this library's backoff
//	retryhttp storm     a fleet of clients and one server through an outage: does each policy recover?
//	retryhttp version   the version of the command and of Go
//
// Exit codes: 0 success; 2 usage error; 1 the command failed. retryhttp do
// uses curl's numbers where curl has one (retryhttp do -h lists them).
//
// Each subcommand is a package of its own under internal/ (do, demo, sim, storm),
// with what they share in internal/cli; this file is only the command
// table.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/retryhttp/retryhttp/cmd/retryhttp/internal/cli"
	"github.com/retryhttp/retryhttp/cmd/retryhttp/internal/demo"
	docmd "github.com/retryhttp/retryhttp/cmd/retryhttp/internal/do"
	"github.com/retryhttp/retryhttp/cmd/retryhttp/internal/sim"
	"github.com/retryhttp/retryhttp/cmd/retryhttp/internal/storm"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

var commands = []command{
	{"demo", "run a flaky upstream and concurrent clients through a Transport, with live metrics", demo.Run},
	{"do", "send one HTTP request with retries, like curl (cron-safe with -start-jitter)", docmd.Run},
	{"sim", "simulate clients contending with each jitter mode, as in AWS's backoff study", sim.Run},
	{"storm", "simulate a fleet of clients through a server's outage: which retry policies recover", storm.Run},
	{"version", "print the version of the command", runVersion},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return cli.ExitUsage
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
			return cli.ExitUsage
		}
		usage(stdout)
		return cli.ExitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:], stdin, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "retryhttp: unknown command %q (see retryhttp help)\n", args[0])
	return cli.ExitUsage
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

// runVersion prints the command's version: its module version (or
// "(devel)" when built from a checkout) and VCS revision, and Go's.
func runVersion(_ []string, _ io.Reader, stdout, _ io.Writer) int {
	fmt.Fprintln(stdout, cli.Version())
	return cli.ExitOK
}
