package do

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/cmd/retryhttp/internal/cli"
)

// The defaults of retryhttp do, sized for scripts and cron jobs rather
// than for an interactive caller: with them a server that refuses
// connections for a few seconds (a restart) is reached, since the waits
// before the sixth attempt add up to at least 15.5 s; and a dead server is
// given up on within two minutes: the waits add up to at most 31 s, and
// each of the 6 attempts takes at most the connect timeout, 10 s, when its
// host does not answer at all, or the attempt timeout, 14 s, when it
// accepts connections and never answers (6 × 14 s + 31 s = 115 s).
const (
	DefaultAttempts       = 6
	DefaultBaseDelay      = time.Second
	DefaultMaxDelay       = 30 * time.Second
	DefaultJitter         = "equal"
	DefaultConnectTimeout = 10 * time.Second
	DefaultAttemptTimeout = 14 * time.Second
	DefaultMaxRedirects   = 10
)

// doFlags are the flags of retryhttp do.
type doFlags struct {
	method         string
	headers        cli.Headers
	data           []dataArg // -d and --data-raw, in order
	json           string    // --json
	hasJSON        bool
	dataBinary     string
	hasDataBinary  bool // -data-binary was given, even empty: curl POSTs an empty body
	output         string
	include        bool
	head           bool
	user           string
	writeOut       string
	verbose        bool
	errorBody      bool
	timeout        cli.Seconds
	attemptTimeout cli.Seconds
	connectTimeout cli.Seconds
	maxRedirects   int
	key            string
	startJitter    time.Duration
	hedge          time.Duration
	caCert         string
	insecure       bool
	userAgent      string
	hasUserAgent   bool // -A was given, even empty: curl then sends none
	retryMaxTime   cli.Seconds
	retryGiven     bool // --retry: messages name it rather than -attempts
	policy         cli.PolicyFlags
}

const doSynopsis = `[flags] URL [flags]

Sends one HTTP request, retrying what is safe to retry, like curl --retry
but with exponential backoff and jitter, Retry-After honored, and POSTs
never sent twice without an idempotency key. The body of a final response
below 400 goes to standard output (or -o, written whole or not at all);
on a final failure nothing goes to standard output but -w's line, and one
line on standard error says what failed and why retrying stopped.

The defaults are sized for scripts and cron: 6 attempts, the waits between
them doubling with equal jitter from 0.5-1 s (at least 15.5 s in all, at
most 31 s), a 10 s connect timeout and 14 s for each attempt to get its
response headers: a server that restarts within seconds is reached, a
dead one, or one that never starts answering, is given up on within two
minutes (a body that stalls midway is bounded only by -timeout).

SIGINT (Ctrl-C) and SIGTERM end the command with 130 and 143: the request
is canceled, -o is left as it was and its temporary file removed, and the
failure line and -w's line are printed. Whatever it is blocked on (a pipe
nobody reads on standard output or error, a FIFO given to -o that no one
opens), it exits within a second of the signal, then without those lines
if they cannot be written; a second signal makes it exit at once.`

func (f *doFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.method, "X", "", "request method (default GET, POST with -d, HEAD with -I)")
	fs.Var(&f.headers, "H", "request header 'Name: value' (repeatable)")
	fs.Var(dataFlag{list: &f.data}, "d", "form data, as curl: text, @file or @- (standard input), read whole with CR and LF removed; repeated -d are joined with &; Content-Type application/x-www-form-urlencoded unless -H sets one")
	fs.Var(dataFlag{list: &f.data, raw: true}, "data-raw", "as -d, but the text is sent as given: a leading @ is not a file, and CR and LF are kept (curl's --data-raw)")
	fs.StringVar(&f.json, "json", "", "JSON body, as curl's --json: as -data-binary (text, @file or @-), with Content-Type and Accept application/json unless -H sets them")
	fs.StringVar(&f.dataBinary, "data-binary", "", "request body exactly as given: text, @file (streamed; each retry reads it again from the descriptor opened first, so a file replaced meanwhile is not what a retry sends, and one changed in place ends the command with 26 rather than send other bytes) or @- (streamed; retried only while it fits the 64 KiB replay buffer)")
	fs.StringVar(&f.output, "o", "", "write the body to this file instead of standard output: to a temporary file beside it, renamed over it on success (a symlink is followed; /dev/null, a FIFO or a device is written in place); on a failure the file is left as it was; a body cut short is asked for again from the start, into a fresh temporary file, while attempts are left, for a request do may send again")
	fs.BoolVar(&f.include, "i", false, "print the status line and the headers before the body")
	fs.BoolVar(&f.head, "I", false, "send HEAD and print the status line and the headers")
	fs.StringVar(&f.user, "u", "", "basic authentication 'user:password'")
	fs.StringVar(&f.writeOut, "w", "", "print this after the transfer, also on a failure: %{http_code}, %{num_attempts}, %{num_retries} (attempts after the first), %{time_total} (seconds), %{url_effective}, %{num_redirects}, %{size_download}, %{exitcode}, %{reason} (why retrying stopped); \\n and \\t are escapes")
	fs.BoolVar(&f.verbose, "v", false, "print each attempt to standard error, with the wait after it and whether the server asked for it (Retry-After) or the backoff chose it")
	fs.BoolVar(&f.errorBody, "error-body", false, "on a final failure, print the whole response body to standard error (without it: its first line, when it is text)")
	f.timeout = 0
	fs.Var(&f.timeout, "timeout", "limit for the whole request: attempts, waits and the body, in seconds (5, 0.5) or a duration (2m); 0: none; -start-jitter does not count (curl's -m/--max-time)")
	f.attemptTimeout = cli.Seconds(DefaultAttemptTimeout)
	fs.Var(&f.attemptTimeout, "attempt-timeout", "limit for each attempt to get its response headers, then retried (seconds or a duration; 0: none); raise it for a server that takes longer to start answering")
	f.connectTimeout = cli.Seconds(DefaultConnectTimeout)
	fs.Var(&f.connectTimeout, "connect-timeout", "limit for each connection to be made, TLS included (seconds or a duration; 0: none)")
	fs.IntVar(&f.maxRedirects, "max-redirects", DefaultMaxRedirects, "redirects to follow; 0 does not follow them (a 3xx is then the final response)")
	fs.StringVar(&f.key, "idempotency-key", "", "send this Idempotency-Key on every attempt ('auto': a random one), so a POST may be retried")
	fs.DurationVar(&f.startJitter, "start-jitter", 0, "sleep a random time in [0, D) before the first attempt, so hosts sharing a crontab do not all call at once; it counts toward nothing else (not -timeout)")
	fs.BoolVar(&f.insecure, "k", false, "do not verify the server's certificate, its authority or its name (curl's -k/--insecure); the connection is still encrypted")
	fs.StringVar(&f.userAgent, "A", "", "User-Agent header, unless -H sets one; '' sends none (curl's -A/--user-agent)")
	fs.StringVar(&f.caCert, "cacert", "", "trust the certificate authorities in this PEM file instead of the system's (curl's --cacert)")
	fs.DurationVar(&f.hedge, "hedge", 0, "send a second copy of an idempotent request that has no response headers after this delay, and take the first answer (0: no hedging)")
	f.policy.Register(fs, cli.PolicyDefaults{Attempts: DefaultAttempts, BaseDelay: DefaultBaseDelay, MaxDelay: DefaultMaxDelay, Jitter: DefaultJitter})
	fs.Var(retryFlag{&f.policy.Attempts, &f.retryGiven}, "retry", "curl's --retry N: N retries, so N+1 attempts (sets -attempts)")
	fs.Var(retryDelayFlag{&f.policy.BaseDelay}, "retry-delay", "curl's --retry-delay: the first wait, in seconds or a duration, doubled (with jitter) for each retry after it, up to -max-delay, raised to it when not given (sets -base-delay; 0: the default)")
	fs.Var(&f.retryMaxTime, "retry-max-time", "curl's --retry-max-time: no retry once this long has passed since the first attempt began (seconds or a duration; 0: none); it cuts neither an attempt nor a wait: -m bounds the whole request")
}

func Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("do", doSynopsis, stderr)
	usage := fs.Usage
	fs.Usage = func() { usage(); fmt.Fprintln(fs.Output(), "\n"+curlHelp()+"\n\n"+exitCodeHelp) }
	var f doFlags
	f.register(fs)
	args, err := curlArgs(fs, args)
	if err != nil {
		return cli.UsageError(fs, "%v", err)
	}
	positional, code, done := cli.ParseArgs(fs, args, stdout)
	if done {
		return code
	}
	req, err := f.check(fs, positional)
	if err != nil {
		return cli.UsageError(fs, "%v", err)
	}

	var story transcript
	r := outcome{start: time.Now(), story: &story, url: req.URL.String()}
	// notSent ends the command before the request is sent: -w's line is
	// still written, as on every failure.
	notSent := func(code int) int {
		r.code = code
		f.printWriteOut(stdout, &r)
		return code
	}
	ctx, signaled := interruptible(stderr)
	defer signaled.stop()
	body, err := f.bodyUnlessSignaled(ctx, stdin)
	if c := signaled.code(stderr); c != 0 {
		return notSent(c)
	}
	if err != nil {
		fmt.Fprintln(stderr, "retryhttp do:", err)
		return notSent(cli.ExitFailed)
	}
	defer body.close()
	out, err := openOutput(ctx, f.output, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "retryhttp do:", err)
		return notSent(cli.ExitFailed)
	}
	defer out.discard() // unless committed
	if tmp := out.temporary(); tmp != "" {
		signaled.atExit(func() { os.Remove(tmp) }) // a forced exit skips the deferred discard
	}

	if f.startJitter > 0 {
		wait := time.Duration(mrand.Int64N(int64(f.startJitter)))
		if f.verbose {
			fmt.Fprintf(stderr, "retryhttp: start jitter: waiting %v\n", wait.Round(time.Millisecond))
		}
		if err := cli.SleepCtx(ctx, wait); err != nil {
			return notSent(signaled.code(stderr))
		}
	}
	r.start = time.Now() // -start-jitter counts toward nothing
	// -timeout bounds the whole request: attempts, waits and the body.
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(f.timeout))
		defer cancel()
	}
	req = req.WithContext(ctx)
	body.attach(req)

	client := f.client(&story, stderr)
	send := req
	for { // more than once only for a body cut short into -o (resend)
		resp, err := client.Do(send)
		if changed := body.changed(); changed != nil && (err != nil || resp.StatusCode >= 400) {
			// The attempt that failed may have been cut short by the change, and
			// the retry was not sent: a retry would have sent other bytes.
			if resp != nil {
				resp.Body.Close()
				r.resp, r.url = resp, resp.Request.URL.String()
			} else if hop := story.lastRequest(); hop != nil {
				r.url = hop.URL.String()
			}
			r.err, r.code = changed, cli.ExitRead
			if c := signaled.code(nil); c != 0 {
				r.code = c
			}
			attempts, _, _ := story.counts()
			fmt.Fprintln(stderr, printable(fmt.Sprintf("retryhttp do: %s %s: %v; stopped after %d %s rather than send other bytes",
				req.Method, cli.Redact(r.url), changed, attempts, plural(attempts, "attempt", "attempts"))))
			f.printWriteOut(stdout, &r)
			return r.code
		}
		if err != nil {
			if hop := story.lastRequest(); hop != nil {
				r.url = hop.URL.String() // the URL that failed, as curl's url_effective
			}
			if resp != nil { // too many redirects: the last one, closed, for -w as curl
				r.resp, r.url = resp, resp.Request.URL.String()
			}
			r.err = err
			r.code = exitCodeOf(err)
			if c := signaled.code(nil); c != 0 {
				r.code = c
				r.status = story.lastStatus() // -w's http_code: the last one received, as curl's
			}
			fmt.Fprintln(stderr, "retryhttp do:", failureLine(req, nil, err, &story, &f))
			f.printWriteOut(stdout, &r)
			return r.code
		}
		defer resp.Body.Close()
		r.resp = resp
		r.url = resp.Request.URL.String()
		if resp.StatusCode >= 400 {
			r.code = cli.ExitHTTP
			fmt.Fprintln(stderr, "retryhttp do:", failureLine(req, resp, nil, &story, &f))
			showErrorBody(stderr, resp, f.errorBody)
			f.printWriteOut(stdout, &r)
			return r.code
		}
		if f.maxRedirects > 0 && req.GetBody == nil && req.Body != nil && req.Body != http.NoBody &&
			(resp.StatusCode == http.StatusTemporaryRedirect || resp.StatusCode == http.StatusPermanentRedirect) &&
			resp.Header.Get("Location") != "" {
			// net/http does not follow a 307 or 308 whose body it cannot
			// send again, and returns it: it is not the answer.
			r.code = cli.ExitFailed
			fmt.Fprintln(stderr, printable(fmt.Sprintf("retryhttp do: %s %s: %s: not followed: the redirect needs the body sent again, "+
				"and it was streamed from standard input or a pipe (give a file with -data-binary @file, which is read again)", req.Method, cli.Redact(r.url), resp.Status)))
			f.printWriteOut(stdout, &r)
			return r.code
		}
		if f.include || f.head {
			writeHead(out, resp)
		}
		n, err := io.Copy(out, resp.Body)
		r.size = n
		cut := false
		if err != nil && f.mayResend(req, out, body, err) {
			cut = true
			if again, code := f.resend(ctx, req, resp, n, out, &story, signaled, stderr); again != nil {
				send = again
				continue
			} else if code != 0 {
				r.code, r.err = code, ctx.Err()
				fmt.Fprintln(stderr, printable(fmt.Sprintf("retryhttp do: %s %s: %s: the body was cut short; %s while waiting to send it again",
					req.Method, cli.Redact(r.url), resp.Status, f.words(ctx.Err()))))
				f.printWriteOut(stdout, &r)
				return r.code
			}
		}
		if err == nil {
			err = out.commit(signaled.came)
		}
		if err != nil {
			r.err = err
			r.code = exitCodeOf(err)
			if r.code == cli.ExitFailed || r.code == cli.ExitConnect || r.code == cli.ExitResolve {
				r.code = cli.ExitPartial
			}
			var we *writeError
			if errors.As(err, &we) {
				r.code = cli.ExitWrite
			}
			if c := signaled.code(nil); c != 0 {
				r.code = c
			}
			what := f.words(err)
			if what == "interrupted" || timeoutPassed(err) && strings.HasPrefix(what, "-timeout ") {
				what += " while the body was read"
			}
			if attempts := story.hopAttempts(); cut {
				what = fmt.Sprintf("the body was cut short (%s) after %d %s; gave up: that is all %s allows", what, attempts, plural(attempts, "attempt", "attempts"), f.attemptsFlag())
			} else if errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, &we) {
				what = fmt.Sprintf("the body was cut short (%s) after %d %s; not sent again: %s", what, attempts, plural(attempts, "attempt", "attempts"), whyNoResend(req, out, body))
			}
			fmt.Fprintln(stderr, printable(fmt.Sprintf("retryhttp do: %s %s: %s: %s", req.Method, cli.Redact(r.url), resp.Status, what)))
			f.printWriteOut(stdout, &r)
			return r.code
		}
		r.code = signaled.code(nil) // 0, or the status of a signal that came once the body was whole
		f.printWriteOut(stdout, &r)
		return r.code
	}
}

// errTooManyRedirects ends a request that was redirected more than
// -max-redirects times.
var errTooManyRedirects = errors.New("too many redirects")

// client returns the http.Client that sends the request: a retryhttp
// Transport with the flags' Policy over a base with the connect timeout,
// following at most -max-redirects redirects, and telling story about
// every attempt (and stderr too, with -v).
func (f *doFlags) client(story *transcript, stderr io.Writer) *http.Client {
	base := cleanhttp.DefaultPooledTransport()
	if ct := time.Duration(f.connectTimeout); ct > 0 {
		base.DialContext = (&net.Dialer{Timeout: ct, KeepAlive: 30 * time.Second}).DialContext
		base.TLSHandshakeTimeout = ct
	}
	if f.caCert != "" || f.insecure {
		base.TLSClientConfig = &tls.Config{InsecureSkipVerify: f.insecure} // -k asks for it, as curl's does
		if f.caCert != "" {
			base.TLSClientConfig.RootCAs, _ = loadCertPool(f.caCert) // checked
		}
	}
	policy, _ := f.policy.Policy() // checked
	policy.AttemptTimeout = time.Duration(f.attemptTimeout)
	// No retry budget: it bounds a process's stream of requests, and do
	// sends one. Its floor (two retries held) would cut the six attempts
	// of do's Policy short, and a hedge is paid only from what earlier
	// requests earned, which one request never has. What keeps a fleet of
	// cron jobs off a struggling server is -start-jitter and the backoff.
	opts := []retryhttp.Option{retryhttp.WithPolicy(policy), retryhttp.WithObserver(story.observe), retryhttp.WithBudget(nil)}
	if limit := time.Duration(f.retryMaxTime); limit > 0 {
		// curl's --retry-max-time: once the limit has passed since the
		// first attempt began, an attempt that ends is not retried.
		start := time.Now()
		opts = append(opts, retryhttp.WithClassifier(func(*http.Request, *http.Response, error) retryhttp.Decision {
			if time.Since(start) >= limit {
				return retryhttp.DoNotRetry
			}
			return retryhttp.UseDefault
		}))
	}
	story.words = f.words
	if f.verbose {
		story.verbose = stderr
	}
	if f.hedge > 0 { // a single request has no latencies to adapt to: the delay is required
		opts = append(opts, retryhttp.WithHedging(retryhttp.Hedging{Delay: f.hedge}))
	}
	maxRedirects := f.maxRedirects
	return &http.Client{
		Transport: retryhttp.New(base, opts...),
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if maxRedirects == 0 {
				return http.ErrUseLastResponse
			}
			if len(via) > maxRedirects {
				return errTooManyRedirects
			}
			if !sameOrigin(req.URL, via[0].URL) {
				// As curl: the credentials of -u and -H are for the
				// origin they were given for, not another host, port or
				// scheme (net/http keeps them for another port).
				for _, h := range []string{"Authorization", "Cookie", "Cookie2"} {
					req.Header.Del(h)
				}
			}
			story.redirected(req)
			return nil
		},
	}
}
