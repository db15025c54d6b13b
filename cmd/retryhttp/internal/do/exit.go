package do

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/retryhttp/retryhttp"
	"github.com/retryhttp/retryhttp/cmd/retryhttp/internal/cli"
)

// exitCodeHelp documents the exit codes of retryhttp do.
const exitCodeHelp = `Exit codes (curl's numbers where curl has one):
  0    success: a final status below 400
  1    anything else (a file could not be read or written, ...)
  2    usage error
  6    the host name could not be resolved
  7    no connection could be made (refused, unreachable)
  18   the response body was cut short (with -o, a request do may send
       again is first asked for again from the start, while attempts are left)
  23   the body could not be written (-o's disk full; a closed pipe on
       standard output ends the command with SIGPIPE instead, as it ends cat)
  22   the final status was 400 or more (the body is not printed; -w is)
  26   the -data-binary file changed (its size or modification time) while
       being sent: no retry is sent with other bytes than the first attempt's
  28   -timeout (-m), -attempt-timeout or -connect-timeout passed
  47   more redirects than -max-redirects
  60   the server's certificate could not be verified (-cacert FILE trusts
       other authorities; so does the SSL_CERT_FILE environment variable)
  130  interrupted (SIGINT); 143 terminated (SIGTERM): within a second even
       when blocked (on a pipe nobody reads, say); a second signal exits at once`

// outcome is how retryhttp do's request went, for -w.
type outcome struct {
	start  time.Time
	story  *transcript
	url    string
	resp   *http.Response
	err    error
	size   int64
	code   int
	status int // with no response: the last status code received, after a signal
}

// exitCodeOf returns curl's exit code for a failed request: 6 (the host
// name could not be resolved), 7 (no connection), 28 (a timeout), 47 (too
// many redirects), 60 (a certificate that could not be verified), or 1.
func exitCodeOf(err error) int {
	var dns *net.DNSError
	var op *net.OpError
	var verify *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &verify), errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid):
		return cli.ExitCertificate
	case errors.Is(err, errTooManyRedirects):
		return cli.ExitRedirects
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, retryhttp.ErrAttemptTimeout):
		return cli.ExitTimeout
	case errors.As(err, &dns):
		return cli.ExitResolve
	case anyTimeout(err):
		return cli.ExitTimeout
	case errors.As(err, &op) && op.Op == "dial":
		return cli.ExitConnect
	}
	return cli.ExitFailed
}

// anyTimeout reports whether an error in err's chain says it is a timeout
// (a TLS handshake's, a dial's). errors.As would stop at the first
// net.Error, http.Client's *url.Error, which asks only its own Err.
func anyTimeout(err error) bool {
	for err != nil {
		if t, ok := err.(interface{ Timeout() bool }); ok && t.Timeout() {
			return true
		}
		if m, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range m.Unwrap() {
				if anyTimeout(e) {
					return true
				}
			}
			return false
		}
		err = errors.Unwrap(err)
	}
	return false
}

// failureLine says what failed and why retrying stopped: the request, the
// final status or error, the attempts, and the reason in words.
func failureLine(req *http.Request, resp *http.Response, err error, story *transcript, f *doFlags) string {
	_, redirects, last := story.counts()
	attempts := story.hopAttempts()
	reason := last.Reason
	var rerr *retryhttp.Error
	if errors.As(err, &rerr) {
		reason = rerr.Reason
		attempts = max(attempts, rerr.Attempts)
	}
	if hop := story.lastRequest(); hop != nil { // redirected: the request that failed is the last one
		req = hop
	}
	cause := err
	if rerr != nil && rerr.Err != nil {
		cause = rerr.Err
	}
	what := ""
	if resp != nil {
		what = resp.Status
		req = resp.Request
	} else {
		what = f.words(cause)
	}
	before := ""
	if redirects > 0 {
		before = fmt.Sprintf(" (and %d %s before)", redirects, plural(redirects, "redirect", "redirects"))
	}
	head := fmt.Sprintf("%s %s: ", req.Method, cli.Redact(req.URL.String()))
	switch {
	case resp == nil && errors.Is(cause, context.Canceled) && attempts > 0:
		// Interrupted: during an attempt, or while waiting after one
		// whose answer, when it had one, is the last code received.
		if last.Retry {
			answer := "the last attempt failed"
			if code := story.lastStatus(); code != 0 {
				answer = fmt.Sprintf("%d %s", code, http.StatusText(code))
			}
			return printable(fmt.Sprintf("%s%s after %d %s%s; interrupted while waiting to retry", head, answer, attempts, plural(attempts, "attempt", "attempts"), before))
		}
		return printable(fmt.Sprintf("%sinterrupted during attempt %d%s", head, attempts, before))
	case resp == nil && timeoutPassed(cause) && attempts > 0:
		return printable(fmt.Sprintf("%s-timeout %v passed during attempt %d%s, before its response headers", head, time.Duration(f.timeout), attempts, before))
	}
	line := head + what
	if attempts > 0 {
		line += fmt.Sprintf(" after %d %s%s", attempts, plural(attempts, "attempt", "attempts"), before)
	}
	if why := whyStopped(reason, req, resp, err, f); why != "" {
		line += "; " + why
	}
	return printable(line)
}

// timeoutPassed reports whether err is -timeout's (the whole request's
// context), not -attempt-timeout's.
func timeoutPassed(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, retryhttp.ErrAttemptTimeout)
}

// words says what err is in the command's words: its flags rather than
// the library's fields, and no context errors.
func (f *doFlags) words(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, retryhttp.ErrAttemptTimeout):
		if strings.Contains(err.Error(), "made no progress") {
			return fmt.Sprintf("the request body made no progress for -attempt-timeout %v", time.Duration(f.attemptTimeout))
		}
		return fmt.Sprintf("no response headers within -attempt-timeout %v", time.Duration(f.attemptTimeout))
	}
	msg := trimPrefix(unwrapURLError(err))
	for _, c := range []struct {
		err error
		say string
	}{{context.DeadlineExceeded, fmt.Sprintf("-timeout %v passed", time.Duration(f.timeout))}, {context.Canceled, "interrupted"}} {
		if errors.Is(err, c.err) && strings.HasSuffix(msg, c.err.Error()) {
			if head := strings.TrimSuffix(msg, c.err.Error()); head != "" { // what it stopped (-o's FIFO), then why
				return head + c.say
			}
			return c.say
		}
	}
	return msg
}

// whyStopped says in words why retrying stopped.
func whyStopped(reason string, req *http.Request, resp *http.Response, err error, f *doFlags) string {
	switch reason {
	case retryhttp.ReasonExhausted:
		flag := f.attemptsFlag()
		if f.policy.Attempts == 1 {
			if !f.retried() {
				flag = "-attempts 1"
			}
			return "not retried: " + flag + " allows no retry"
		}
		return "gave up: that is all " + flag + " allows"
	case retryhttp.ReasonMethod:
		return fmt.Sprintf("not retried: %s is not idempotent and the server may have seen it (add -idempotency-key auto to let it be retried)", req.Method)
	case retryhttp.ReasonRetryAfter:
		asked := ""
		if resp != nil && resp.Header.Get("Retry-After") != "" {
			asked = " (Retry-After: " + resp.Header.Get("Retry-After") + ")"
		}
		return fmt.Sprintf("not retried: the server asked for a longer wait%s than -max-retry-after %v", asked, f.policy.MaxRetryAfter)
	case retryhttp.ReasonDeadline:
		return fmt.Sprintf("not retried: the next wait would pass -timeout %v", time.Duration(f.timeout))
	case retryhttp.ReasonBody:
		return "not retried: the body could not be sent again (standard input is kept for retries only up to 64 KiB; give a file with -data-binary @file, which is read again)"
	case retryhttp.ReasonBudget:
		return "not retried: the retry budget refused"
	case retryhttp.ReasonPermanent:
		return "not retried: no retry fixes this error"
	case retryhttp.ReasonClassifier:
		return fmt.Sprintf("not retried: --retry-max-time %v had passed", time.Duration(f.retryMaxTime))
	case retryhttp.ReasonCanceled:
		return "stopped: interrupted"
	case retryhttp.ReasonThrottled:
		return "not sent: the host's quota is spent for longer than -max-retry-after"
	case "":
		if resp != nil && resp.StatusCode >= 400 {
			return fmt.Sprintf("not retried: %d is final (only 408, 429, 500, 502, 503, 504 and failed connections are retried)", resp.StatusCode)
		}
		if errors.Is(err, errTooManyRedirects) {
			return fmt.Sprintf("more than -max-redirects %d", f.maxRedirects)
		}
		return ""
	}
	return "stopped: " + reason
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// unwrapURLError returns the error inside http.Client's *url.Error, which
// repeats the method and URL that the message already names.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// trimPrefix drops the library's "retryhttp: " prefix from an error's
// message, which the command's own prefix would double.
func trimPrefix(err error) string {
	if err == nil {
		return ""
	}
	return strings.TrimPrefix(err.Error(), "retryhttp: ")
}

// writeOutVars are the -w variables, curl's names where curl has one.
var writeOutVars = map[string]func(r *outcome) string{
	"http_code":     func(r *outcome) string { return fmt.Sprintf("%03d", statusOf(r)) },
	"response_code": func(r *outcome) string { return fmt.Sprintf("%03d", statusOf(r)) },
	"num_attempts": func(r *outcome) string {
		n, _, _ := r.story.counts()
		return strconv.Itoa(n)
	},
	"time_total":    func(r *outcome) string { return strconv.FormatFloat(time.Since(r.start).Seconds(), 'f', 6, 64) },
	"url_effective": func(r *outcome) string { return r.url },
	"num_redirects": func(r *outcome) string {
		_, n, _ := r.story.counts()
		return strconv.Itoa(n)
	},
	"num_retries": func(r *outcome) string { // the attempts after the first of each request, redirects not counted
		n, redirects, _ := r.story.counts()
		return strconv.Itoa(max(0, n-1-redirects))
	},
	"size_download": func(r *outcome) string { return strconv.FormatInt(r.size, 10) },
	"exitcode":      func(r *outcome) string { return strconv.Itoa(r.code) },
	"reason": func(r *outcome) string {
		var rerr *retryhttp.Error
		if errors.As(r.err, &rerr) {
			return rerr.Reason
		}
		_, _, last := r.story.counts()
		return last.Reason
	},
}

func statusOf(r *outcome) int {
	if r.resp == nil {
		return r.status
	}
	return r.resp.StatusCode
}

// checkWriteOut reports an error for a -w format with an unknown variable
// or an unclosed %{.
func checkWriteOut(format string) error {
	_, err := expandWriteOut(format, nil)
	return err
}

// expandWriteOut expands a -w format: %{name} for the variables, %% for %,
// and the escapes \n, \r, \t and \\. With a nil r it only checks it.
func expandWriteOut(format string, r *outcome) (string, error) {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		switch {
		case c == '%' && strings.HasPrefix(format[i:], "%{"):
			end := strings.IndexByte(format[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("%q has an unclosed %%{", format)
			}
			name := format[i+2 : i+end]
			v, ok := writeOutVars[name]
			if !ok {
				return "", fmt.Errorf("unknown variable %%{%s} (known: http_code, response_code, num_attempts, num_retries, time_total, url_effective, num_redirects, size_download, exitcode, reason)", name)
			}
			if r != nil {
				b.WriteString(v(r))
			}
			i += end
		case c == '%' && strings.HasPrefix(format[i:], "%%"):
			b.WriteByte('%')
			i++
		case c == '\\' && i+1 < len(format):
			switch format[i+1] {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case '\\':
				b.WriteByte('\\')
			default:
				b.WriteByte(c)
				continue
			}
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// printWriteOut writes -w's line to w, after the body or in place of it.
func (f *doFlags) printWriteOut(w io.Writer, r *outcome) {
	if f.writeOut == "" {
		return
	}
	s, _ := expandWriteOut(f.writeOut, r) // checked with the flags
	_, _ = io.WriteString(w, s)
}
