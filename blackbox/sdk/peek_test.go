package sdk_test

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"testing"
	"testing/iotest"

	"github.com/retryhttp/retryhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type closeCounter struct {
	io.Reader
	closes int
}

func (c *closeCounter) Close() error { c.closes++; return nil }

// Random bodies, random readers (one byte at a time, half reads, data with
// EOF), random peeks (0, small, past the end, huge) interleaved with random
// partial reads: the body comes out byte for byte, each peek returns the
// bytes at the read position, and Close closes the original once.
func TestPeekBodyIsByteIdentical(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 3000 {
		size := rng.IntN(3000)
		if iter%50 == 0 {
			size = rng.IntN(200000)
		}
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.IntN(256))
		}
		var r io.Reader = bytes.NewReader(data)
		switch rng.IntN(4) {
		case 1:
			r = iotest.OneByteReader(r)
		case 2:
			r = iotest.HalfReader(r)
		case 3:
			r = iotest.DataErrReader(r)
		}
		src := &closeCounter{Reader: r}
		resp := &http.Response{Body: src}
		var out []byte
		for step := 0; step < 8; step++ {
			var n int
			switch rng.IntN(5) {
			case 0:
				n = 0
			case 1:
				n = rng.IntN(16)
			case 2:
				n = rng.IntN(size + 10)
			case 3:
				n = math.MaxInt
			case 4:
				n = 1 << 40
			}
			peek, err := retryhttp.PeekBody(resp, n)
			require.NoError(t, err)
			want := data[len(out):]
			if n < len(want) {
				want = want[:n]
			}
			require.True(t, bytes.Equal(want, peek), "iter %d step %d: peek of %d after %d bytes read: %d bytes, want %d", iter, step, n, len(out), len(peek), len(want))
			// a partial read
			buf := make([]byte, 1+rng.IntN(50)) // never empty: iotest.DataErrReader spins on an empty read
			k, err := resp.Body.Read(buf)
			out = append(out, buf[:k]...)
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
		}
		rest, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		out = append(out, rest...)
		require.True(t, bytes.Equal(data, out), "iter %d: body differs after peeking (len %d, got %d)", iter, len(data), len(out))
		require.NoError(t, resp.Body.Close())
		require.Equal(t, 1, src.closes)
	}
}

func TestPeekBodyEdges(t *testing.T) {
	// A nil Body is an empty one.
	resp := &http.Response{}
	b, err := retryhttp.PeekBody(resp, 10)
	require.NoError(t, err)
	assert.Empty(t, b)
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Empty(t, got)
	assert.NoError(t, resp.Body.Close())

	// nil response, negative n: errors, no panic.
	_, err = retryhttp.PeekBody(nil, 1)
	assert.Error(t, err)
	_, err = retryhttp.PeekBody(&http.Response{Body: io.NopCloser(bytes.NewReader([]byte("x")))}, -1)
	assert.Error(t, err)

	// Peeking twice gives the same bytes; a longer second peek extends.
	resp = &http.Response{Body: io.NopCloser(iotest.OneByteReader(bytes.NewReader([]byte("hello world"))))}
	b1, _ := retryhttp.PeekBody(resp, 5)
	b2, _ := retryhttp.PeekBody(resp, 5)
	b3, _ := retryhttp.PeekBody(resp, 100)
	assert.Equal(t, "hello", string(b1))
	assert.Equal(t, "hello", string(b2))
	assert.Equal(t, "hello world", string(b3))
	b1[0] = 'J' // the returned slice is the caller's
	all, _ := io.ReadAll(resp.Body)
	assert.Equal(t, "hello world", string(all))
}

// A read error mid-body: the peek returns the bytes before it with the
// error; the body yields those bytes and then the same error.
func TestPeekBodyErrorMidBody(t *testing.T) {
	boom := errors.New("boom")
	src := &closeCounter{Reader: io.MultiReader(bytes.NewReader([]byte("0123456789")), iotest.ErrReader(boom))}
	resp := &http.Response{Body: src}
	b, err := retryhttp.PeekBody(resp, 100)
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, "0123456789", string(b))
	got, err := io.ReadAll(resp.Body)
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, "0123456789", string(got))

	// An error past the peek is the body's to report later.
	src = &closeCounter{Reader: io.MultiReader(bytes.NewReader([]byte("0123456789")), iotest.ErrReader(boom))}
	resp = &http.Response{Body: src}
	b, err = retryhttp.PeekBody(resp, 4)
	assert.NoError(t, err)
	assert.Equal(t, "0123", string(b))
	got, err = io.ReadAll(resp.Body)
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, "0123456789", string(got))
}

// "closing it closes the original": once. A caller closing twice (a defer
// and an explicit Close, as much code does) must not close the original
// twice.
func TestPeekBodyClosesTheOriginalOnce(t *testing.T) {
	src := &closeCounter{Reader: bytes.NewReader([]byte("abc"))}
	resp := &http.Response{Body: src}
	_, _ = retryhttp.PeekBody(resp, 2)
	_ = resp.Body.Close()
	_ = resp.Body.Close()
	assert.Equal(t, 1, src.closes, "closing the peeked body twice closed the original %d times", src.closes)
}

// A 101 response's body is an io.ReadWriteCloser; peeking at it must not
// take its Write away.
func TestPeekBodyKeepsA101BodyWritable(t *testing.T) {
	type rwc struct {
		io.Reader
		io.Writer
		io.Closer
	}
	var w bytes.Buffer
	resp := &http.Response{StatusCode: 101, Body: rwc{bytes.NewReader([]byte("hi")), &w, io.NopCloser(nil)}}
	_, _ = retryhttp.PeekBody(resp, 0)
	_, ok := resp.Body.(io.ReadWriteCloser)
	assert.True(t, ok, "PeekBody turned a 101 body into %T, which has no Write", resp.Body)
}
