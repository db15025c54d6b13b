package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// output is where the body of a successful response goes: standard output,
// or with -o a temporary file beside the target that commit renames over
// it, so that a reader never sees half a file and a failure leaves the
// target as it was.
type output struct {
	w      io.Writer
	file   *os.File // the temporary file, with -o
	target string
	done   bool
}

// writeError is an error writing the output (not reading the response).
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// openOutput opens the output: for -o, a temporary file in the target's
// folder now, so that a folder that cannot be written is an error before
// the request is sent.
func openOutput(target string, stdout io.Writer) (*output, error) {
	if target == "" {
		return &output{w: stdout}, nil
	}
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	file, err := os.CreateTemp(dir, "."+base+".retryhttp-*")
	if err != nil {
		return nil, fmt.Errorf("-o %s: %w", target, err)
	}
	return &output{w: file, file: file, target: target}, nil
}

func (o *output) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

// commit makes the output final: the temporary file, synced, takes the
// target's name (and its mode, when it existed; 0644 otherwise).
func (o *output) commit() error {
	if o.file == nil {
		return nil
	}
	mode := os.FileMode(0o644)
	if info, err := os.Stat(o.target); err == nil {
		mode = info.Mode().Perm()
	}
	err := o.file.Chmod(mode)
	if err == nil {
		err = o.file.Sync()
	}
	if cerr := o.file.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(o.file.Name(), o.target)
	}
	if err != nil {
		return &writeError{fmt.Errorf("-o %s: %w", o.target, err)}
	}
	o.done = true
	return nil
}

// discard removes the temporary file unless it was committed.
func (o *output) discard() {
	if o.file != nil && !o.done {
		o.file.Close()
		os.Remove(o.file.Name())
	}
}

// writeHead writes the status line and the headers, as curl -i does.
func writeHead(w io.Writer, resp *http.Response) {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%s %s\r\n", resp.Proto, resp.Status)
	_ = resp.Header.Write(bw)
	bw.WriteString("\r\n")
	_ = bw.Flush()
}

// showErrorBody prints the body of a failing response to w: whole with
// all, or else its first line (up to 200 bytes) when it is text.
func showErrorBody(w io.Writer, resp *http.Response, all bool) {
	if all {
		fmt.Fprintln(w, "retryhttp do: the response body follows")
		_, _ = io.Copy(w, resp.Body)
		fmt.Fprintln(w)
		return
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if len(head) == 0 || !looksLikeText(resp.Header.Get("Content-Type"), head) {
		return
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(head)), "\n")
	line = strings.TrimSpace(line)
	if len(line) > 200 {
		cut := 200
		for cut > 0 && !utf8.RuneStart(line[cut]) {
			cut--
		}
		line = line[:cut] + "..."
	}
	line = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, line)
	if line != "" {
		fmt.Fprintf(w, "retryhttp do: the body begins: %s (-error-body prints it whole)\n", line)
	}
}

// looksLikeText reports whether a body with this Content-Type and these
// first bytes is text worth showing on a terminal.
func looksLikeText(contentType string, head []byte) bool {
	ct := strings.ToLower(contentType)
	switch {
	case strings.HasPrefix(ct, "text/"), strings.Contains(ct, "json"), strings.Contains(ct, "xml"):
	case ct == "":
		if http.DetectContentType(head)[:5] != "text/" {
			return false
		}
	default:
		return false
	}
	for i := 0; i < utf8.UTFMax-1 && len(head) > 0 && !utf8.Valid(head); i++ {
		head = head[:len(head)-1] // a rune cut at the end of what was read
	}
	return utf8.Valid(head)
}
