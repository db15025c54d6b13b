package retryhttp

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReplayViewResumesWhereTheSourceStopped(t *testing.T) {
	src := &closeTracker{Reader: iotest.OneByteReader(strings.NewReader("hello, world"))}
	b := newReplayBody(src, 64)

	v1, err := b.view()
	require.NoError(t, err)
	p := make([]byte, 5)
	_, err = io.ReadFull(v1, p) // the first attempt read "hello" and failed
	require.NoError(t, err)
	require.NoError(t, v1.Close())
	assert.Zero(t, src.closes.Load(), "the source stays open for a retry")

	v2, err := b.view()
	require.NoError(t, err)
	all, err := io.ReadAll(v2)
	require.NoError(t, err)
	assert.Equal(t, "hello, world", string(all), "the buffered part, then the rest of the source")

	_, err = v1.Read(p)
	assert.ErrorIs(t, err, errSuperseded, "an older attempt may not read on")

	require.NoError(t, v2.Close())
	b.finish()
	assert.Equal(t, int32(1), src.closes.Load())
	_, err = b.view()
	assert.ErrorIs(t, err, errNotReplayable, "no view after the request is over")
}

func TestReplayOverflowEndsReplay(t *testing.T) {
	src := &closeTracker{Reader: strings.NewReader(strings.Repeat("a", 100))}
	b := newReplayBody(src, 10)
	v1, _ := b.view()
	all, err := io.ReadAll(v1)
	require.NoError(t, err)
	assert.Len(t, all, 100, "the attempt in flight still streams everything")
	assert.False(t, b.replayable())
	_, err = b.view()
	assert.ErrorIs(t, err, errNotReplayable)
	require.NoError(t, v1.Close())
	b.finish()
	assert.Equal(t, int32(1), src.closes.Load())
}

func TestReplaySourceClosedByTheLastAttempt(t *testing.T) {
	// The transport still holds the last attempt's body when RoundTrip
	// returns (it may close it later, from its write loop): the source must
	// stay open until then, and be closed exactly once.
	src := &closeTracker{Reader: strings.NewReader("abc")}
	b := newReplayBody(src, 64)
	v1, _ := b.view()
	v2, _ := b.view()
	b.finish()
	assert.Zero(t, src.closes.Load())
	require.NoError(t, v1.Close())
	assert.Zero(t, src.closes.Load(), "a superseded view does not close the source")
	all, err := io.ReadAll(v2)
	require.NoError(t, err)
	assert.Equal(t, "abc", string(all))
	require.NoError(t, v2.Close())
	require.NoError(t, v2.Close())
	assert.Equal(t, int32(1), src.closes.Load())
}

func TestReplaySourceErrorIsStickyAndEndsReplay(t *testing.T) {
	b := newReplayBody(io.NopCloser(io.MultiReader(strings.NewReader("ab"), errReader{errTestBody})), 64)
	v1, _ := b.view()
	_, err := io.ReadAll(v1)
	assert.ErrorIs(t, err, errTestBody)
	assert.False(t, b.replayable())
	_, err = v1.Read(make([]byte, 1))
	assert.ErrorIs(t, err, errTestBody)
}

func TestReplayConcurrentStaleReader(t *testing.T) {
	// A superseded attempt's write loop may still be reading while the next
	// attempt reads: each view gets either the exact bytes or an error, and
	// the newest view gets the whole body.
	payload := bytes.Repeat([]byte("0123456789"), 1000)
	for range 50 {
		b := newReplayBody(io.NopCloser(iotest.HalfReader(bytes.NewReader(payload))), len(payload))
		v1, _ := b.view()
		var wg sync.WaitGroup
		var got1 []byte
		var err1 error
		wg.Go(func() { got1, err1 = io.ReadAll(v1) })
		v2, err := b.view()
		require.NoError(t, err)
		got2, err := io.ReadAll(v2)
		wg.Wait()
		require.NoError(t, err)
		assert.Equal(t, payload, got2)
		if err1 == nil {
			assert.Equal(t, payload, got1)
		} else {
			assert.ErrorIs(t, err1, errSuperseded)
			assert.Equal(t, payload[:len(got1)], got1, "a stale view's bytes are a true prefix")
		}
	}
}

func TestReplayStaleReadPastTheLimitStillReplays(t *testing.T) {
	// Attempt 1 sent 40 bytes and got an early 503; its write loop is still
	// blocked reading the source when the retry starts (40 <= 64 bytes: a
	// retry is allowed). That read then returns 60 more bytes, past the
	// limit: the retry must still send all 100, since it was allowed.
	payload := bytes.Repeat([]byte("x"), 100)
	pr, pw := io.Pipe()
	src := &closeTracker{Reader: pr}
	b := newReplayBody(src, 64)
	v1, _ := b.view()
	go func() { _, _ = pw.Write(payload[:40]) }()
	_, err := io.ReadFull(v1, make([]byte, 40))
	require.NoError(t, err)

	staleDone := make(chan error)
	go func() {
		_, err := v1.Read(make([]byte, 32<<10))
		staleDone <- err
	}()
	require.Eventually(t, func() bool { // the stale read holds the source
		if !b.readMu.TryLock() {
			return true
		}
		b.readMu.Unlock()
		return false
	}, 5*time.Second, time.Millisecond)
	require.True(t, b.replayable())
	v2, err := b.view()
	require.NoError(t, err)
	go func() { _, _ = pw.Write(payload[40:]); pw.Close() }()
	assert.ErrorIs(t, <-staleDone, errSuperseded)

	got, err := io.ReadAll(v2)
	require.NoError(t, err)
	assert.Equal(t, payload, got, "the allowed retry sent the whole body")
	assert.False(t, b.replayable(), "but no further retry is possible")
	assert.Nil(t, b.buf, "the buffer is gone once the newest view caught up")
	require.NoError(t, v2.Close())
	b.finish()
	assert.Equal(t, int32(1), src.closes.Load())
}
