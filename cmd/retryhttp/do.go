package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/retryhttp/retryhttp"
)

// headers collects repeated -H flags.
type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

// policyFlags are the flags that mirror retryhttp.Policy.
type policyFlags struct {
	attempts      int
	baseDelay     time.Duration
	maxDelay      time.Duration
	jitter        string
	maxRetryAfter time.Duration
}

func (p *policyFlags) register(fs interface {
	IntVar(*int, string, int, string)
	DurationVar(*time.Duration, string, time.Duration, string)
	StringVar(*string, string, string, string)
}) {
	fs.IntVar(&p.attempts, "attempts", retryhttp.DefaultMaxAttempts, "attempts in all, the first included; 1 disables retries")
	fs.DurationVar(&p.baseDelay, "base-delay", retryhttp.DefaultBaseDelay, "first backoff step")
	fs.DurationVar(&p.maxDelay, "max-delay", retryhttp.DefaultMaxDelay, "cap on one backoff wait")
	fs.StringVar(&p.jitter, "jitter", "full", "backoff jitter: full, equal, decorrelated or none")
	fs.DurationVar(&p.maxRetryAfter, "max-retry-after", retryhttp.DefaultMaxRetryAfter, "longest Retry-After wait honored; longer ones end the request")
}

// policy returns the Policy the flags describe, or an error naming the flag.
func (p *policyFlags) policy() (retryhttp.Policy, error) {
	j, err := retryhttp.ParseJitter(p.jitter)
	if err != nil {
		return retryhttp.Policy{}, fmt.Errorf("-jitter: %q is not full, equal, decorrelated or none", p.jitter)
	}
	if p.attempts < 1 {
		return retryhttp.Policy{}, fmt.Errorf("-attempts: %d is less than 1", p.attempts)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"-base-delay", p.baseDelay}, {"-max-delay", p.maxDelay}, {"-max-retry-after", p.maxRetryAfter}} {
		if d.v <= 0 {
			return retryhttp.Policy{}, fmt.Errorf("%s: %v is not positive", d.name, d.v)
		}
	}
	pol := retryhttp.Policy{MaxAttempts: p.attempts, BaseDelay: p.baseDelay, MaxDelay: p.maxDelay, Jitter: j, MaxRetryAfter: p.maxRetryAfter}
	if err := pol.Validate(); err != nil {
		return retryhttp.Policy{}, err
	}
	return pol, nil
}

func runDo(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("do", "[flags] URL", stderr)
	method := fs.String("X", "", "request method (default GET, or POST with -d)")
	var hdrs headers
	fs.Var(&hdrs, "H", "request header 'Name: value' (repeatable)")
	data := fs.String("d", "", "request body: text, @file, or @- for standard input")
	output := fs.String("o", "", "write the response body to this file instead of standard output")
	timeout := fs.Duration("timeout", 0, "limit for the whole request, retries and waits included (0: none)")
	key := fs.String("idempotency-key", "", "send this Idempotency-Key on every attempt ('auto': a random one), so a POST may be retried")
	verbose := fs.Bool("v", false, "print one line per attempt to standard error")
	startJitter := fs.Duration("start-jitter", 0, "sleep a random time in [0, D) before the first attempt, so hosts sharing a crontab do not all call at once")
	hedge := fs.Duration("hedge", 0, "send a second copy of an idempotent request that has no response headers after this delay, and take the first answer (0: no hedging)")
	var pf policyFlags
	pf.register(fs)
	if code, done := parse(fs, args); done {
		return code
	}
	if fs.NArg() != 1 {
		return usageError(fs, "want exactly one URL, got %d arguments", fs.NArg())
	}
	target := fs.Arg(0)
	if !isHTTPURL(target) {
		return usageError(fs, "%q is not an http or https URL", target)
	}
	policy, err := pf.policy()
	if err != nil {
		return usageError(fs, "%v", err)
	}
	if *timeout < 0 || *startJitter < 0 {
		return usageError(fs, "-timeout and -start-jitter must not be negative")
	}
	if *hedge < 0 {
		return usageError(fs, "-hedge: %v is negative; give the delay after which to send a second copy", *hedge)
	}
	var h http.Header = http.Header{}
	for _, line := range hdrs {
		name, value, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return usageError(fs, "-H %q is not 'Name: value'", line)
		}
		h.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	if *key != "" {
		k := *key
		if k == "auto" {
			k = randomKey()
		}
		h.Set("Idempotency-Key", k)
	}
	if *method == "" {
		*method = http.MethodGet
		if *data != "" {
			*method = http.MethodPost
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	body, getBody, length, closeData, err := requestBody(*data, stdin)
	if err != nil {
		fmt.Fprintln(stderr, "retryhttp do:", err)
		return exitFailed
	}
	defer closeData()

	if *startJitter > 0 {
		wait := time.Duration(mrand.Int64N(int64(*startJitter)))
		if *verbose {
			fmt.Fprintf(stderr, "retryhttp: start jitter: waiting %v\n", wait.Round(time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			fmt.Fprintln(stderr, "retryhttp do: interrupted")
			return exitFailed
		}
	}
	if *timeout > 0 { // the whole request: attempts, waits and the body
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}

	req, err := http.NewRequestWithContext(ctx, *method, target, body)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	if host := h.Get("Host"); host != "" { // as curl does: -H 'Host: x' names the virtual host
		req.Host = host
		h.Del("Host")
	}
	req.Header = h
	req.GetBody = getBody
	req.ContentLength = length

	base := cleanhttp.DefaultPooledTransport()
	defer base.CloseIdleConnections()
	var rt http.RoundTripper = base
	if *verbose {
		rt = &attemptPrinter{next: base, w: stderr}
	}
	opts := []retryhttp.Option{retryhttp.WithPolicy(policy)}
	if *hedge > 0 { // a single request has no latencies to adapt to: the delay is required
		opts = append(opts, retryhttp.WithHedging(retryhttp.Hedging{Delay: *hedge}))
	}
	client := &http.Client{Transport: retryhttp.New(rt, opts...)}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "retryhttp do:", err)
		return exitFailed
	}
	defer resp.Body.Close()

	out := stdout
	if *output != "" {
		f, err := os.Create(*output)
		if err != nil {
			fmt.Fprintln(stderr, "retryhttp do:", err)
			return exitFailed
		}
		defer f.Close()
		out = f
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		fmt.Fprintln(stderr, "retryhttp do: reading the response:", err)
		return exitFailed
	}
	if f, ok := out.(*os.File); ok && *output != "" {
		if err := f.Close(); err != nil {
			fmt.Fprintln(stderr, "retryhttp do:", err)
			return exitFailed
		}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		fmt.Fprintf(stderr, "retryhttp do: %s %s: %s\n", *method, redact(target), resp.Status)
		return exitFailed
	}
	return exitOK
}

// requestBody returns the body for -d: nil for none, the text itself, a file
// (reopened for each retry, so it streams and replays), or standard input
// (streamed; a retry replays it only while it fits the Transport's replay
// buffer, 64 KiB).
func requestBody(data string, stdin io.Reader) (body io.Reader, getBody func() (io.ReadCloser, error), length int64, closeFn func(), err error) {
	closeFn = func() {}
	switch {
	case data == "":
		return nil, nil, 0, closeFn, nil
	case data == "@-":
		return io.NopCloser(stdin), nil, -1, closeFn, nil
	case strings.HasPrefix(data, "@"):
		name := data[1:]
		f, err := os.Open(name)
		if err != nil {
			return nil, nil, 0, closeFn, err
		}
		info, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, nil, 0, closeFn, err
		}
		reopen := func() (io.ReadCloser, error) { return os.Open(name) }
		return f, reopen, info.Size(), func() { f.Close() }, nil
	}
	r := strings.NewReader(data)
	return r, func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(data)), nil }, int64(len(data)), closeFn, nil
}

// randomKey returns a random idempotency key: 128 bits in hex.
func randomKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// isHTTPURL reports whether s is an absolute http or https URL with a host.
func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// redact drops userinfo and query from a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<bad URL>"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// attemptPrinter prints one line per attempt: its number, the wait before
// it, and how it ended. It sits under the retrying Transport, so it sees
// every attempt.
type attemptPrinter struct {
	next http.RoundTripper
	w    io.Writer

	mu    sync.Mutex
	n     int
	ended time.Time // when the previous attempt ended
}

func (p *attemptPrinter) RoundTrip(req *http.Request) (*http.Response, error) {
	p.mu.Lock()
	p.n++
	n, prev := p.n, p.ended
	p.mu.Unlock()
	after := ""
	if !prev.IsZero() {
		after = fmt.Sprintf(" (after %v)", time.Since(prev).Round(time.Millisecond))
	}
	start := time.Now()
	resp, err := p.next.RoundTrip(req)
	took := time.Since(start).Round(100 * time.Microsecond)
	p.mu.Lock()
	p.ended = time.Now()
	p.mu.Unlock()
	switch {
	case err != nil:
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		fmt.Fprintf(p.w, "retryhttp: attempt %d%s: %s %s: %v in %v\n", n, after, req.Method, redact(req.URL.String()), err, took)
	default:
		fmt.Fprintf(p.w, "retryhttp: attempt %d%s: %s %s: %s in %v\n", n, after, req.Method, redact(req.URL.String()), resp.Status, took)
	}
	return resp, err
}
