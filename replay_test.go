package retryhttp

import (
	"bytes"
	"io"
	"runtime"
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

	v1, err := b.attemptView()
	require.NoError(t, err)
	p := make([]byte, 5)
	_, err = io.ReadFull(v1, p) // the first attempt read "hello" and failed
	require.NoError(t, err)
	require.NoError(t, v1.Close())
	assert.Zero(t, src.closes.Load(), "the source stays open for a retry")

	v2, err := b.attemptView()
	require.NoError(t, err)
	all, err := io.ReadAll(v2)
	require.NoError(t, err)
	assert.Equal(t, "hello, world", string(all), "the buffered part, then the rest of the source")

	_, err = v1.Read(p)
	assert.ErrorIs(t, err, errSuperseded, "an older attempt may not read on")

	require.NoError(t, v2.Close())
	b.finish(true)
	assert.Equal(t, int32(1), src.closes.Load())
	_, err = b.attemptView()
	assert.Error(t, err, "no view after the request is over")
	_, err = b.copyView()
	assert.Error(t, err)
}

func TestReplayOverflowEndsReplay(t *testing.T) {
	src := &closeTracker{Reader: strings.NewReader(strings.Repeat("a", 100))}
	b := newReplayBody(src, 10)
	v1, _ := b.attemptView()
	all, err := io.ReadAll(v1)
	require.NoError(t, err)
	assert.Len(t, all, 100, "the attempt in flight still streams everything")
	_, err = b.attemptView()
	var rerr *replayError
	require.ErrorAs(t, err, &rerr)
	assert.Contains(t, err.Error(), "replay buffer of 10 bytes")
	assert.Contains(t, err.Error(), "GetBody")
	assert.Nil(t, b.buf, "nothing kept once the only reader passed the limit")
	require.NoError(t, v1.Close())
	b.finish(true)
	assert.Equal(t, int32(1), src.closes.Load())
}

func TestReplaySourceClosedByTheLastAttempt(t *testing.T) {
	// The transport still holds the last attempt's body when RoundTrip
	// returns (it may close it later, from its write loop): the source must
	// stay open until then, and be closed exactly once.
	src := &closeTracker{Reader: strings.NewReader("abc")}
	b := newReplayBody(src, 64)
	v1, _ := b.attemptView()
	v2, _ := b.attemptView()
	b.finish(true)
	assert.Zero(t, src.closes.Load())
	require.NoError(t, v1.Close())
	assert.Zero(t, src.closes.Load(), "a superseded view does not close the source")
	all, err := io.ReadAll(v2)
	require.NoError(t, err)
	assert.Equal(t, "abc", string(all))
	assert.Equal(t, int32(1), src.closes.Load(), "read to its end, the last view holds the source no more")
	require.NoError(t, v2.Close())
	require.NoError(t, v2.Close())
	assert.Equal(t, int32(1), src.closes.Load())
}

func TestReplaySourceErrorIsStickyAndEndsReplay(t *testing.T) {
	b := newReplayBody(io.NopCloser(io.MultiReader(strings.NewReader("ab"), errReader{errTestBody})), 64)
	v1, _ := b.attemptView()
	_, err := io.ReadAll(v1)
	assert.ErrorIs(t, err, errTestBody)
	_, err = b.attemptView()
	assert.ErrorIs(t, err, errTestBody)
	_, err = v1.Read(make([]byte, 1))
	assert.ErrorIs(t, err, errTestBody)
}

func TestReplayCopyDoesNotSupersedeTheAttempt(t *testing.T) {
	// A signing middleware calls GetBody and hashes the copy before the
	// attempt's own body is sent: both read the whole body, and nothing
	// fails although no retry happened.
	payload := bytes.Repeat([]byte("0123456789"), 500)
	src := &closeTracker{Reader: iotest.HalfReader(bytes.NewReader(payload))}
	b := newReplayBody(src, len(payload))
	v1, err := b.attemptView()
	require.NoError(t, err)
	c, err := b.copyView()
	require.NoError(t, err)
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, payload, got, "the copy")
	require.NoError(t, c.Close())
	got, err = io.ReadAll(v1)
	require.NoError(t, err)
	assert.Equal(t, payload, got, "the attempt's own body, after the copy")
	b.finish(true)
	assert.Equal(t, int32(1), src.closes.Load())

	// Past the replay buffer, the copy and the body compete for the source:
	// the one behind fails with a clear error instead of sending less.
	b = newReplayBody(io.NopCloser(bytes.NewReader(payload)), 100)
	v1, _ = b.attemptView()
	c, _ = b.copyView()
	_, err = io.ReadAll(c)
	require.NoError(t, err)
	_, err = io.ReadAll(v1)
	var rerr *replayError
	assert.ErrorAs(t, err, &rerr)
}

func TestReplayDroppedCopyStillClosesTheSource(t *testing.T) {
	// net/http's HTTP/2 client calls GetBody for its own retry, then gives
	// up during its backoff (the context ended) and drops the copy without
	// closing it. The request ends without a response: the source is
	// closed anyway, once.
	src := &closeTracker{Reader: strings.NewReader("abc")}
	b := newReplayBody(src, 64)
	v1, _ := b.attemptView()
	_, _ = io.ReadAll(v1)
	require.NoError(t, v1.Close())
	dropped, err := b.copyView()
	require.NoError(t, err)
	b.finish(false)
	assert.Equal(t, int32(1), src.closes.Load())
	_, err = dropped.Read(make([]byte, 1))
	assert.ErrorIs(t, err, errSuperseded, "a retired copy reads nothing")
	require.NoError(t, dropped.Close())
	assert.Equal(t, int32(1), src.closes.Load())

	// With a response, a copy still unread may yet be sent (net/http's
	// resend whose response came first): the source waits for it.
	src = &closeTracker{Reader: strings.NewReader("abc")}
	b = newReplayBody(src, 64)
	v1, _ = b.attemptView()
	require.NoError(t, v1.Close())
	resend, _ := b.copyView()
	b.finish(true)
	assert.Zero(t, src.closes.Load())
	got, err := io.ReadAll(resend)
	require.NoError(t, err)
	assert.Equal(t, "abc", string(got))
	assert.Equal(t, int32(1), src.closes.Load())
}

func TestReplayUnreadCopyReplacedByAnotherIsDropped(t *testing.T) {
	// Over HTTP/2 after a GOAWAY, net/http makes a copy for its resend,
	// finds no cached connection for it, and makes another from the
	// original request; the first is never read nor closed. The request
	// succeeds with the second: the source is closed when that one is done.
	src := &closeTracker{Reader: strings.NewReader("abc")}
	b := newReplayBody(src, 64)
	v1, _ := b.attemptView()
	_, _ = io.ReadAll(v1)
	require.NoError(t, v1.Close())
	_, _ = b.copyView() // dropped
	c2, _ := b.copyView()
	got, err := io.ReadAll(c2)
	require.NoError(t, err)
	assert.Equal(t, "abc", string(got))
	b.finish(true)
	assert.Equal(t, int32(1), src.closes.Load())
	require.NoError(t, c2.Close())
	assert.Equal(t, int32(1), src.closes.Load())
}

func TestReplaySourceClosedAtItsEndWhateverViewsAreOpen(t *testing.T) {
	// A base that read the body whole but closed nothing, and a copy it
	// made and kept unread: once the request is over, nothing needs the
	// source (the copy is served from the buffer), so it is closed.
	src := &closeTracker{Reader: strings.NewReader("abc")}
	b := newReplayBody(src, 64)
	v1, _ := b.attemptView()
	_, err := io.ReadAll(v1)
	require.NoError(t, err)
	kept, _ := b.copyView()
	b.finish(true)
	assert.Equal(t, int32(1), src.closes.Load())
	got, err := io.ReadAll(kept)
	require.NoError(t, err)
	assert.Equal(t, "abc", string(got), "the copy still reads the whole body")
}

func TestReplayDroppedViewIsReleasedWhenCollected(t *testing.T) {
	// A middleware makes a copy and drops it untouched; the attempt's own
	// view is closed before the source reached its end (the server
	// answered early). The dropped copy is all that holds the source: the
	// garbage collector finds it unreachable, and the source is closed.
	src := &closeTracker{Reader: strings.NewReader("a body the server did not wait for")}
	b := newReplayBody(src, 64)
	v1, _ := b.attemptView()
	_, err := v1.Read(make([]byte, 4))
	require.NoError(t, err)
	func() { _, _ = b.copyView() }() // dropped
	require.NoError(t, v1.Close())
	b.finish(true)
	assert.Zero(t, src.closes.Load(), "a copy might still be read")
	assert.Eventually(t, func() bool {
		runtime.GC()
		return src.closes.Load() == 1
	}, 5*time.Second, 10*time.Millisecond, "the dropped copy was released")
}

func TestReplayConcurrentStaleReader(t *testing.T) {
	// A superseded attempt's write loop may still be reading while the next
	// attempt reads: each view gets either the exact bytes or an error, and
	// the newest view gets the whole body.
	payload := bytes.Repeat([]byte("0123456789"), 1000)
	for range 50 {
		b := newReplayBody(io.NopCloser(iotest.HalfReader(bytes.NewReader(payload))), len(payload))
		v1, _ := b.attemptView()
		var wg sync.WaitGroup
		var got1 []byte
		var err1 error
		wg.Go(func() { got1, err1 = io.ReadAll(v1) })
		v2, err := b.attemptView()
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
	v1, _ := b.attemptView()
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
	v2, err := b.attemptView()
	require.NoError(t, err)
	go func() { _, _ = pw.Write(payload[40:]); pw.Close() }()
	assert.ErrorIs(t, <-staleDone, errSuperseded)

	got, err := io.ReadAll(v2)
	require.NoError(t, err)
	assert.Equal(t, payload, got, "the allowed retry sent the whole body")
	_, err = b.attemptView()
	assert.Error(t, err, "but no further retry is possible")
	assert.Nil(t, b.buf, "the buffer is gone once the newest view caught up")
	require.NoError(t, v2.Close())
	b.finish(true)
	assert.Equal(t, int32(1), src.closes.Load())
}
