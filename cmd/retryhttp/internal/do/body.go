package do

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// requestBody is the body of retryhttp do's request, from -d or
// -data-binary.
type requestBody struct {
	r        io.Reader                     // nil: no body
	getBody  func() (io.ReadCloser, error) // a fresh copy, for retries; nil for a stream
	length   int64                         // -1: unknown
	form     bool                          // -d: form data, with curl's default Content-Type
	file     *fileBody                     // -data-binary @file, a regular file
	closeFns []func()
}

// body reads -d (whole, with CR and LF removed, as curl does; repeated -d
// joined with &) or opens -data-binary (a regular file streams, and each
// retry reads it again from the same descriptor: see fileBody; standard
// input or a pipe streams, and is replayed only while it fits the
// Transport's replay buffer).
func (f *doFlags) body(stdin io.Reader) (*requestBody, error) {
	b := &requestBody{length: 0}
	switch {
	case len(f.data) > 0:
		var parts []string
		for _, d := range f.data {
			if d.raw {
				parts = append(parts, d.text)
				continue
			}
			text, err := readData(d.text, stdin)
			if err != nil {
				return nil, err
			}
			parts = append(parts, strings.NewReplacer("\r", "", "\n", "").Replace(text))
		}
		data := []byte(strings.Join(parts, "&"))
		b.setBytes(data)
		b.form = true
	case f.dataBinary == "@-":
		b.r, b.length, b.form = stdin, -1, true
	case strings.HasPrefix(f.dataBinary, "@"):
		name := f.dataBinary[1:]
		file, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("-data-binary: %w", err)
		}
		info, err := file.Stat()
		if err != nil {
			file.Close()
			return nil, fmt.Errorf("-data-binary: %w", err)
		}
		if !info.Mode().IsRegular() { // a pipe or a device cannot be read twice
			b.r, b.length = file, -1
		} else {
			b.file = newFileBody(file, name, info)
			b.r, b.length, b.getBody = b.file.first(), info.Size(), b.file.getBody
		}
		b.form = true
		b.closeFns = append(b.closeFns, func() { file.Close() })
	case f.hasDataBinary: // text, empty included
		b.setBytes([]byte(f.dataBinary))
		b.form = true
	}
	return b, nil
}

// bodyUnlessSignaled is body, given up on when ctx ends (a signal) while
// it reads: standard input that does not end must not make the command
// deaf to Ctrl-C and SIGTERM.
func (f *doFlags) bodyUnlessSignaled(ctx context.Context, stdin io.Reader) (*requestBody, error) {
	type result struct {
		b   *requestBody
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := f.body(stdin)
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-ctx.Done(): // the reader is left blocked: the command exits
		return nil, ctx.Err()
	}
}

func (b *requestBody) setBytes(data []byte) {
	b.r, b.length = bytes.NewReader(data), int64(len(data))
	b.getBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
}

// readData returns what one -d names: the text, a file's content (@file),
// or standard input (@-).
func readData(d string, stdin io.Reader) (string, error) {
	switch {
	case d == "@-":
		data, err := io.ReadAll(stdin)
		if err != nil {
			return "", fmt.Errorf("-d @-: reading standard input: %w", err)
		}
		return string(data), nil
	case strings.HasPrefix(d, "@"):
		data, err := os.ReadFile(d[1:])
		if err != nil {
			return "", fmt.Errorf("-d: %w", err)
		}
		return string(data), nil
	}
	return d, nil
}

// attach sets the body on req, and curl's form Content-Type unless the
// -H headers set one.
func (b *requestBody) attach(req *http.Request) {
	if b.r == nil {
		return
	}
	req.Body = io.NopCloser(b.r)
	if rc, ok := b.r.(io.ReadCloser); ok {
		req.Body = rc
	}
	req.GetBody = b.getBody
	req.ContentLength = b.length
	if b.length == 0 {
		req.Body = http.NoBody
	}
	if b.form && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
}

// changed returns how a -data-binary file changed while the request was
// being sent (a *changedError), or nil.
func (b *requestBody) changed() error {
	if b.file == nil {
		return nil
	}
	return b.file.changed()
}

func (b *requestBody) close() {
	for _, f := range b.closeFns {
		f()
	}
}

// randomKey returns a random idempotency key: 128 bits in hex.
func randomKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
