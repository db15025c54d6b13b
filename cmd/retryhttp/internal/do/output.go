package do

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"
)

// output is where the body of a successful response goes: standard output;
// or with -o a temporary file beside the target that commit renames over
// it, so that a reader never sees half a file and a failure leaves the
// target as it was; or, when the target is not a regular file (/dev/null,
// /dev/stdout, a FIFO), the target itself, opened when the first byte of a
// successful body is written, which cannot be atomic but is still never
// touched on a failure.
type output struct {
	ctx    context.Context // ends the wait to open a target written directly
	w      io.Writer
	file   *os.File // the temporary file, with -o onto a regular file
	direct bool     // -o onto something that is not a regular file
	target string   // with -o: the file written, symlinks followed
	name   string   // with -o: as given, for messages
	done   bool
}

// writeError is an error writing the output (not reading the response).
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// openOutput opens the output: for -o onto a regular file (or a new one),
// a temporary file in the target's folder now, so that a folder that
// cannot be written is an error before the request is sent. A symlink is
// followed, as curl does, so that the file it points to is replaced and
// the link stays. When ctx ends (a signal), a target written directly
// that is still being opened (a FIFO waits for a reader) is given up on.
func openOutput(ctx context.Context, name string, stdout io.Writer) (*output, error) {
	if name == "" || name == "-" || name == "/dev/stdout" { // curl's -o - too; /dev/stdout is not reopened
		return &output{w: stdout}, nil
	}
	target, special, err := followLinks(name)
	if err != nil {
		return nil, fmt.Errorf("-o %s: %w", name, err)
	}
	o := &output{ctx: ctx, target: target, name: name}
	info, err := os.Stat(name)
	if err == nil && info.IsDir() { // found now, not after the request was sent and answered
		return nil, fmt.Errorf("-o %s: is a directory", name)
	}
	if special || err == nil && !info.Mode().IsRegular() {
		o.target, o.direct = name, true
		return o, nil
	}
	file, err := createTemp(target)
	if err != nil {
		return nil, fmt.Errorf("-o %s: %w", name, err)
	}
	o.file, o.w = file, file
	return o, nil
}

// followLinks returns the file that name stands for when it is a symlink
// (to any depth, dangling or not), or name itself; special when the name
// or a link leads into /dev or /proc (/dev/stdout, /proc/self/fd/1), whose
// files are written in place, never replaced.
func followLinks(name string) (target string, special bool, err error) {
	for range 40 { // as the kernel's limit on nested links
		if abs, err := filepath.Abs(name); err == nil && (strings.HasPrefix(abs, "/dev/") || strings.HasPrefix(abs, "/proc/")) {
			return name, true, nil
		}
		info, err := os.Lstat(name)
		if err != nil || info.Mode()&os.ModeSymlink == 0 {
			return name, false, nil // not a link (or not there: created)
		}
		link, err := os.Readlink(name)
		if err != nil {
			return "", false, err
		}
		if !filepath.IsAbs(link) {
			link = filepath.Join(filepath.Dir(name), link)
		}
		name = link
	}
	return "", false, errors.New("too many levels of symbolic links")
}

// createTemp creates a new file beside target, with a name that stays
// within the 255 bytes a file name may have however long target's is, and
// the mode 0666 that the umask then narrows, as for any file a command
// creates.
func createTemp(target string) (*os.File, error) {
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	if len(base) > 200 {
		cut := 200
		for cut > 0 && !utf8.RuneStart(base[cut]) {
			cut--
		}
		base = base[:cut]
	}
	for range 100 {
		name := filepath.Join(dir, "."+base+".retryhttp-"+strconv.FormatUint(uint64(mrand.Uint32()), 10))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		var pe *fs.PathError
		if errors.As(err, &pe) && !errors.Is(err, fs.ErrExist) {
			// Not the temporary file's name: the user named another.
			return nil, pe.Err // the caller names -o's path
		}
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, errors.New("no unused temporary file name")
}

func (o *output) Write(p []byte) (int, error) {
	if o.direct && o.w == nil {
		if err := o.openDirect(); err != nil {
			return 0, err
		}
	}
	n, err := o.w.Write(p)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

// openDirect opens a target that is not a regular file. Opening a FIFO
// waits for a reader, which may never come: when o.ctx ends first (a
// signal), the open is left to finish (and closed then) in its own
// goroutine, and openDirect fails with an error that wraps o.ctx.Err().
func (o *output) openDirect() error {
	type opened struct {
		f   *os.File
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		f, err := os.OpenFile(o.target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
		ch <- opened{f, err}
	}()
	var r opened
	select {
	case r = <-ch:
	case <-o.ctx.Done():
		go func() {
			if r := <-ch; r.f != nil {
				r.f.Close()
			}
		}()
		return fmt.Errorf("-o %s: stopped while waiting to open it (a FIFO that no one reads?): %w", o.name, o.ctx.Err())
	}
	if r.err != nil {
		return &writeError{fmt.Errorf("-o %s: %w", o.name, r.err)}
	}
	o.file, o.w = r.f, r.f
	return nil
}

// errStopped is why a finished body is not renamed over -o's target: a
// signal came.
var errStopped = errors.New("stopped by a signal before the file was replaced")

// temporary returns the name of the temporary file, or "" when there is
// none (standard output, a target written directly).
func (o *output) temporary() string {
	if o.file == nil || o.direct {
		return ""
	}
	return o.file.Name()
}

// fresh replaces the temporary file with a new, empty one, for a body
// sent again from its start: the bytes of the one cut short are not kept.
func (o *output) fresh() error {
	old := o.file
	file, err := createTemp(o.target)
	if err != nil {
		return &writeError{fmt.Errorf("-o %s: %w", o.name, err)}
	}
	old.Close()
	os.Remove(old.Name())
	o.file, o.w = file, file
	return nil
}

// commit makes the output final: the temporary file, synced, takes the
// target's name (and its mode, when it existed), unless stopped reports
// true just before (a signal came: errStopped); a target written directly
// is closed (and opened first when the body was empty).
func (o *output) commit(stopped func() bool) error {
	if o.direct {
		if o.w == nil {
			if err := o.openDirect(); err != nil {
				return err
			}
		}
		o.done = true
		if err := o.file.Close(); err != nil {
			return &writeError{fmt.Errorf("-o %s: %w", o.name, err)}
		}
		return nil
	}
	if o.file == nil {
		return nil
	}
	var err error
	if info, serr := os.Stat(o.target); serr == nil {
		err = o.file.Chmod(info.Mode().Perm())
	}
	if err == nil {
		err = o.file.Sync()
	}
	if cerr := o.file.Close(); err == nil {
		err = cerr
	}
	if err == nil && stopped() {
		return errStopped
	}
	if err == nil {
		err = os.Rename(o.file.Name(), o.target)
	}
	if err != nil {
		return &writeError{fmt.Errorf("-o %s: %w", o.name, err)}
	}
	o.done = true
	return nil
}

// discard removes the temporary file unless it was committed, and closes
// a target written directly.
func (o *output) discard() {
	if o.file == nil || o.done {
		return
	}
	o.file.Close()
	if !o.direct {
		os.Remove(o.file.Name())
	}
}

// writeHead writes the status line and the headers, as curl -i does.
func writeHead(w io.Writer, resp *http.Response) {
	bw := bufio.NewWriter(w)
	if resp.ProtoMajor >= 2 { // as curl: HTTP/2 has no minor version and no reason phrase
		fmt.Fprintf(bw, "HTTP/%d %d\r\n", resp.ProtoMajor, resp.StatusCode)
	} else {
		fmt.Fprintf(bw, "%s %s\r\n", resp.Proto, resp.Status)
	}
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
	line = printable(line)
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

// printable returns s, from a server, with what a terminal would act on
// made harmless: C0 and C1 controls (ESC and CSI start escape sequences
// that retitle, clear or recolor it) and DEL become spaces, invalid UTF-8
// becomes U+FFFD.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r >= 0x7f && r <= 0x9f {
			return ' '
		}
		return r
	}, s)
}
