package retryhttp

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPeekBody(t *testing.T) {
	body := &closeTracker{Reader: iotest.OneByteReader(bytes.NewReader([]byte(`{"Code":"SlowDown"} and more`)))}
	resp := &http.Response{Body: body}
	head, err := PeekBody(resp, 8)
	require.NoError(t, err)
	assert.Equal(t, `{"Code":`, string(head))
	head, err = PeekBody(resp, 19)
	require.NoError(t, err)
	assert.Equal(t, `{"Code":"SlowDown"}`, string(head), "peeking further reads on")
	head[0] = 'X' // the caller's copy: the body is not affected
	all, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, `{"Code":"SlowDown"} and more`, string(all), "the whole body, from its first byte")
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, int32(1), body.closes.Load(), "closing it closes the original")

	short := &http.Response{Body: io.NopCloser(bytes.NewReader([]byte("ab")))}
	head, err = PeekBody(short, 100)
	require.NoError(t, err, "a body shorter than n is not an error")
	assert.Equal(t, "ab", string(head))

	empty := &http.Response{}
	head, err = PeekBody(empty, 10)
	require.NoError(t, err)
	assert.Empty(t, head)
	assert.NotNil(t, empty.Body, "a nil Body is an empty one")

	_, err = PeekBody(nil, 1)
	assert.Error(t, err)
	_, err = PeekBody(&http.Response{Body: http.NoBody}, -1)
	assert.Error(t, err)
}

func TestPeekBodyAfterPartialRead(t *testing.T) {
	resp := &http.Response{Body: io.NopCloser(bytes.NewReader([]byte("0123456789")))}
	_, err := PeekBody(resp, 4)
	require.NoError(t, err)
	p := make([]byte, 2)
	_, err = io.ReadFull(resp.Body, p)
	require.NoError(t, err)
	head, err := PeekBody(resp, 5)
	require.NoError(t, err)
	assert.Equal(t, "23456", string(head), "what the body yields next")
	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "23456789", string(rest))
}

func TestPeekBodyReadError(t *testing.T) {
	resp := &http.Response{Body: io.NopCloser(io.MultiReader(bytes.NewReader([]byte("abc")), errReader{errTestBody}))}
	head, err := PeekBody(resp, 10)
	assert.ErrorIs(t, err, errTestBody)
	assert.Equal(t, "abc", string(head))
	all, err := io.ReadAll(resp.Body)
	assert.ErrorIs(t, err, errTestBody, "the body yields the bytes, then the same error")
	assert.Equal(t, "abc", string(all))
}

// FuzzPeekBody checks that peeking any body, in any chunks, any number of
// times, leaves it byte-identical to the original.
func FuzzPeekBody(f *testing.F) {
	f.Add([]byte(`{"Code":"InternalError"}`), 8, 30, 3)
	f.Add([]byte(""), 0, 0, 1)
	f.Add(bytes.Repeat([]byte("x"), 5000), 4096, 10, 7)
	f.Fuzz(func(t *testing.T, data []byte, n1, n2, chunk int) {
		n1, n2 = abs(n1)%(len(data)+10), abs(n2)%(len(data)+10)
		chunk = abs(chunk)%64 + 1
		body := &closeTracker{Reader: &chunked{r: bytes.NewReader(data), n: chunk}}
		resp := &http.Response{Body: body}
		head, err := PeekBody(resp, n1)
		if err != nil || !bytes.Equal(head, data[:min(n1, len(data))]) {
			t.Fatalf("PeekBody(%d) = %q, %v", n1, head, err)
		}
		skip := min(chunk, len(data))
		got := make([]byte, skip)
		if _, err := io.ReadFull(resp.Body, got); err != nil {
			t.Fatal(err)
		}
		head, err = PeekBody(resp, n2)
		if err != nil || !bytes.Equal(head, data[skip:min(skip+n2, len(data))]) {
			t.Fatalf("second PeekBody(%d) = %q, %v", n2, head, err)
		}
		rest, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(append(got, rest...), data) {
			t.Fatalf("body after peeking = %q, %v; want %q", append(got, rest...), err, data)
		}
		_ = resp.Body.Close()
		if body.closes.Load() != 1 {
			t.Fatalf("original closed %d times", body.closes.Load())
		}
	})
}

func abs(n int) int {
	if n < 0 {
		if n == -n { // the most negative int
			return 0
		}
		return -n
	}
	return n
}

// chunked reads at most n bytes at a time.
type chunked struct {
	r io.Reader
	n int
}

func (c *chunked) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }
