package main

// Raw loopback servers and the command runner for the tests of do.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// runExec runs a prepared command (the binary, with its own stdin, dir,
// credentials...) within 40 s and returns its exit code and output.
func runExec(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &stdout
	}
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(40 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("still running after 40 s; stderr:\n%s", stderr.String())
	}
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return result{code, stdout.String(), stderr.String()}
}

// serveConns listens on a loopback port and hands each connection to
// handle, in its own goroutine, until the test ends; it returns the
// listener's URL.
func serveConns(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return "http://" + ln.Addr().String()
}

// readHead reads a request's head, up to its blank line, and returns it.
func readHead(br *bufio.Reader) string {
	var head strings.Builder
	for {
		line, err := br.ReadString('\n')
		head.WriteString(line)
		if err != nil || line == "\r\n" {
			return head.String()
		}
	}
}

// rawServer answers every connection with resp, byte for byte, then closes
// it: for responses net/http would not write.
func rawServer(t *testing.T, resp string) string {
	t.Helper()
	return serveConns(t, func(c net.Conn) {
		defer c.Close()
		readHead(bufio.NewReader(c))
		_, _ = io.WriteString(c, resp)
	})
}

func lastRequest(s *server) (method, body string, h http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.methods) - 1
	return s.methods[n], s.bodies[n], s.headers[n]
}
