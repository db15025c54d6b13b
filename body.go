package retryhttp

import (
	"io"
	"net/http"
	"time"
)

// maxDrain is how much of a discarded response body is read so that its
// connection can carry the next attempt, and maxDrainTime how long that may
// take. A longer body, or one that does not arrive promptly, is cut off and
// its connection closed instead.
const (
	maxDrain     = 64 << 10
	maxDrainTime = 100 * time.Millisecond
)

// discard drains a bounded part of a response the caller will not see and
// closes it, so its keep-alive connection is reused. The drain runs in a
// goroutine of its own and is given maxDrainTime: a body that stalls is
// closed then (which ends a net/http body's read in progress), and the
// Transport goes on even if the body's Read does not return. A panic in the
// body's Read reaches the caller while the Transport waits for the drain;
// one that comes later ends only the drain.
func discard(resp *http.Response) {
	body := resp.Body
	drained := make(chan any, 1)
	go func() {
		defer func() { drained <- recover() }()
		_, _ = io.CopyN(io.Discard, body, maxDrain)
	}()
	timer := time.NewTimer(maxDrainTime)
	select {
	case p := <-drained:
		timer.Stop()
		if p != nil {
			panic(p)
		}
	case <-timer.C:
	}
	_ = body.Close()
}

// closeBody closes the body of a request that will not be sent, as the
// RoundTripper contract asks.
func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
