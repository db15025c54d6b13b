package do

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// fileBody is -data-binary @file when the file is a regular one: every
// attempt (a retry, a hedge, a redirect that keeps the body) reads it from
// the descriptor opened first, from its start, so a file replaced by
// rename meanwhile (as any atomic writer does, retryhttp do -o included)
// is not what a retry sends. It streams: nothing is read into memory.
//
// A file changed in place cannot be sent again as it was. Before each
// attempt but the first, the file's size and modification time are
// checked against those it had when opened; and an attempt that finds it
// ends before its size fails. Either way the attempt fails with a
// *changedError, which changed returns afterwards: the retry is not sent.
// A change of the same size within the filesystem's timestamp granularity
// goes unseen.
//
// Each attempt's reader has its own offset (ReadAt), so that net/http may
// read one while the write loop of a superseded attempt still reads
// another. Closing a reader does not close the file: the command closes it
// once, when it ends.
type fileBody struct {
	file *os.File
	name string
	size int64
	mod  time.Time

	mu  sync.Mutex
	err error // the first change found
}

// changedError says that a -data-binary file changed while the request
// was being sent, so that no attempt can send the bytes the first did.
type changedError struct {
	name string
	how  string
}

func (e *changedError) Error() string {
	return fmt.Sprintf("-data-binary @%s changed while being sent: %s", e.name, e.how)
}

func newFileBody(file *os.File, name string, info os.FileInfo) *fileBody {
	return &fileBody{file: file, name: name, size: info.Size(), mod: info.ModTime()}
}

// first returns the first attempt's body.
func (b *fileBody) first() io.ReadCloser {
	return &fileReader{b: b, r: io.NewSectionReader(b.file, 0, b.size)}
}

// getBody is the request's GetBody: the body again, from its start, for
// another attempt; a *changedError when the file changed.
func (b *fileBody) getBody() (io.ReadCloser, error) {
	info, err := b.file.Stat()
	switch {
	case err != nil:
		return nil, b.fail(fmt.Errorf("-data-binary @%s: %w", b.name, err))
	case info.Size() != b.size:
		return nil, b.fail(&changedError{b.name, fmt.Sprintf("its size is now %d bytes, not %d", info.Size(), b.size)})
	case !info.ModTime().Equal(b.mod):
		return nil, b.fail(&changedError{b.name, "it was modified (its size is the same, its modification time is not)"})
	}
	return b.first(), nil
}

// fail records err, when it is the first change found, and returns it.
func (b *fileBody) fail(err error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = err
	}
	return err
}

// changed returns the first change found, or nil.
func (b *fileBody) changed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// fileReader is one attempt's reader of a fileBody.
type fileReader struct {
	b    *fileBody
	r    *io.SectionReader
	read int64
}

func (r *fileReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.read += int64(n)
	if err == io.EOF && r.read < r.b.size {
		err = r.b.fail(&changedError{r.b.name, fmt.Sprintf("it ended after %d of its %d bytes", r.read, r.b.size)})
	}
	return n, err
}

// Close does not close the file, which other attempts share.
func (r *fileReader) Close() error { return nil }
