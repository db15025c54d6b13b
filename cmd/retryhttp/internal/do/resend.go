package do

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/cmd/retryhttp/internal/cli"
)

// mayResend reports whether a body that failed with err may be asked for
// again: cut short (io.ErrUnexpectedEOF) while going to -o's temporary
// file, which nobody has seen, for a request do may send again (an
// idempotent method or an Idempotency-Key, as the Transport's rule) whose
// body, if any, can be sent again unchanged. On standard output the bytes
// are already out, and a resend would repeat them.
func (f *doFlags) mayResend(req *http.Request, out *output, body *requestBody, err error) bool {
	var we *writeError
	if !errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &we) || out.temporary() == "" || body.changed() != nil {
		return false
	}
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return req.Header.Get("Idempotency-Key") != "" || req.Header.Get("X-Idempotency-Key") != ""
}

// whyNoResend says why a body cut short is not asked for again (see
// mayResend).
func whyNoResend(req *http.Request, out *output, body *requestBody) string {
	switch {
	case out.temporary() == "":
		return "its bytes were already written out (only -o FILE is written aside and can start over)"
	case body.changed() != nil:
		return "the -data-binary file changed"
	case req.Body != nil && req.Body != http.NoBody && req.GetBody == nil:
		return "the request body cannot be sent again"
	}
	return req.Method + " is not idempotent and the server may have processed it; -idempotency-key allows it"
}

// resend prepares to send req again from the start after its body was cut
// short after n bytes: when attempts are left, it waits the backoff's next
// wait, gives -o a fresh temporary file and returns the request to send,
// with a Policy for the attempts left. It returns nil and 0 when none is
// left, and nil with an exit code when the wait was cut short (-timeout,
// a signal).
func (f *doFlags) resend(ctx context.Context, req *http.Request, resp *http.Response, n int64, out *output, story *transcript, signaled *signals, stderr io.Writer) (*http.Request, int) {
	used := story.hopAttempts()
	left := f.policy.Attempts - used
	if left <= 0 {
		return nil, 0
	}
	resp.Body.Close()
	policy, _ := f.policy.Policy() // checked
	wait := policy.Delay(used-1, 0, nil)
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
		return nil, 0 // as the Transport: no wait that would pass -timeout
	}
	if story.verbose != nil {
		fmt.Fprintf(story.verbose, "retryhttp: the body was cut short after %d bytes; sending again in %v (backoff)\n", n, wait.Round(time.Millisecond))
	}
	if err := cli.SleepCtx(ctx, wait); err != nil {
		if c := signaled.code(nil); c != 0 {
			return nil, c
		}
		return nil, cli.ExitTimeout
	}
	if err := out.fresh(); err != nil {
		fmt.Fprintln(stderr, "retryhttp do:", err)
		return nil, cli.ExitWrite
	}
	if tmp := out.temporary(); tmp != "" {
		signaled.atExit(func() { os.Remove(tmp) })
	}
	policy.MaxAttempts = left
	again := req.WithContext(retryhttp.ContextWithPolicy(ctx, policy))
	if req.GetBody != nil {
		b, err := req.GetBody()
		if err != nil {
			return nil, 0
		}
		again.Body = b
	}
	return again, 0
}

// attemptsFlag names the flag that set the attempts: -attempts, or
// --retry N when it was given.
func (f *doFlags) attemptsFlag() string {
	if f.retried() {
		return fmt.Sprintf("--retry %d", f.policy.Attempts-1)
	}
	return "-attempts"
}
