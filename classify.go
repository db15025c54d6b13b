package retryhttp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"syscall"
)

// classify returns why an attempt failed, from its response or its error.
func classify(resp *http.Response, err error) failure {
	if err != nil {
		return classifyError(err)
	}
	f := classifyStatus(resp.StatusCode)
	if f.kind == failNone && resp.StatusCode == http.StatusForbidden && throttled(resp) {
		f = failure{kind: failStatus, code: resp.StatusCode} // a rate limit, retried like a 429
	}
	return f
}

// throttled reports whether a response is a throttle the Transport retries
// like a 429 although its status is not one it retries: GitHub's primary
// rate limit, a 403 that says its quota is spent (X-RateLimit-Remaining: 0,
// or the drafts' RateLimit r=0 or RateLimit-Remaining: 0), with or without
// a reset. Any other 403 stays final.
func throttled(resp *http.Response) bool {
	if resp.StatusCode != http.StatusForbidden {
		return false
	}
	h := resp.Header
	if n, ok := plainInt(h, hXRateLimitRemaining); ok && n == 0 {
		return true
	}
	if n, ok := plainInt(h, hRateLimitRemaining); ok && n == 0 {
		return true
	}
	if v, ok := h[hRateLimit]; ok {
		var s signals
		s.readRateLimit(v, nil)
		return s.spent()
	}
	return false
}

// failKind says why an attempt failed, for the retry decision, logs and
// metrics.
type failKind uint8

const (
	failNone      failKind = iota // the attempt succeeded, or its status is final
	failStatus                    // a retryable status: 408, 429, 500, 502, 503, 504, or one a Classifier asked to retry
	failConnect                   // no connection: dial refused, unreachable, timed out; DNS failure
	failReset                     // the connection broke: reset, broken pipe, EOF before the response
	failTimeout                   // the attempt itself timed out (not the caller's context)
	failOther                     // an error the Transport's rules do not retry, which a Classifier asked to retry
	failPermanent                 // an error a retry cannot fix: TLS certificates, bad URL, scheme, ...
)

// failure is the classified result of one attempt.
type failure struct {
	kind   failKind
	code   int  // the status code, for failStatus
	unsent bool // the server never saw the request: no connection was made for it (see connWatch)
	// unprocessed: the server said it did not process the request (an
	// HTTP/2 stream it refused, or one above the last stream of its GOAWAY:
	// RFC 9113 §8.7), so that any request may be sent again.
	unprocessed bool
}

// retryable reports whether a retry could help.
func (f failure) retryable() bool {
	return f.kind != failNone && f.kind != failPermanent
}

// The reasons a retry happens, as logs, Attempt.Reason and the reason label
// of retryhttp_retries_total name them: the status code that caused it
// ("503"; any code from 100 to 599, since a Classifier may ask to retry
// any), "other" for a status outside that range, "connect", "reset",
// "timeout", or "error" for an error that a Classifier asked to retry.
// reasonIndex numbers them: codes first, at code-100.
const (
	reasonOther   = 500
	reasonConnect = 501
	reasonReset   = 502
	reasonTimeout = 503
	reasonError   = 504
	numReasons    = 505
)

// reason names a retryable failure; "" when it is not retryable.
func (f failure) reason() string {
	if !f.retryable() {
		return ""
	}
	return reasonLabel(f.reasonIndex())
}

// reasonIndex returns the index of a retryable failure's reason.
func (f failure) reasonIndex() int {
	switch f.kind {
	case failConnect:
		return reasonConnect
	case failReset:
		return reasonReset
	case failTimeout:
		return reasonTimeout
	case failOther:
		return reasonError
	}
	if f.code >= 100 && f.code <= 599 {
		return f.code - 100
	}
	return reasonOther
}

// reasonLabel names the reason numbered i.
func reasonLabel(i int) string {
	switch i {
	case reasonOther:
		return "other"
	case reasonConnect:
		return "connect"
	case reasonReset:
		return "reset"
	case reasonTimeout:
		return "timeout"
	case reasonError:
		return "error"
	}
	return statusLabels[i]
}

// statusLabels holds "100" to "599", so that naming a status costs nothing.
var statusLabels = func() (l [500]string) {
	for i := range l {
		l[i] = strconv.Itoa(i + 100)
	}
	return l
}()

// classifyStatus returns failStatus for the statuses worth retrying: 408
// Request Timeout, 429 Too Many Requests, 500, 502, 503 and 504. Every other
// status, 501 Not Implemented and 505 HTTP Version Not Supported included,
// is final.
func classifyStatus(code int) failure {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return failure{kind: failStatus, code: code}
	}
	return failure{}
}

// classifyError sorts a transport error by type, never by its text. It lists
// what a retry can help with; anything else, such as a malformed URL or an
// unsupported scheme, is permanent. The caller checks the request's context
// first: an error after the context ended is never retried.
func classifyError(err error) failure {
	var timeout *attemptTimeoutError
	if errors.As(err, &timeout) {
		return failure{kind: failTimeout, unsent: true} // unless a connection was assigned: see connWatch
	}
	if permanentTLS(err) {
		return failure{kind: failPermanent}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsTimeout || dnsErr.IsTemporary {
			return failure{kind: failConnect, unsent: true}
		}
		return failure{kind: failPermanent} // no such host
	}
	var addrErr *net.AddrError
	if errors.As(err, &addrErr) {
		return failure{kind: failPermanent} // a malformed address, such as port 99999
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && (opErr.Op == "dial" || opErr.Op == "proxyconnect") {
		return failure{kind: failConnect, unsent: true}
	}
	var streamErr http2StreamError
	if errors.As(err, &streamErr) {
		return classifyStreamError(streamErr)
	}
	if isHTTP2GoAway(err) {
		return failure{kind: failReset}
	}
	if unprocessedHTTP2(err) {
		return failure{kind: failReset, unprocessed: true}
	}
	// The connection broke before a whole response came: reset, broken
	// pipe, closed, or cut short: at EOF, or in the middle of a header line,
	// which net/http reports as a malformed header (textproto.ProtocolError).
	// net.ErrClosed is net/http closing the connection itself after the
	// peer reset it while the request body was still being written; the
	// caller checks that the context is live. A cut inside the status line
	// comes back as an untyped error and is not retried: it cannot be told
	// from a peer that does not speak HTTP without reading error text.
	var protocol textproto.ProtocolError
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &protocol) {
		return failure{kind: failReset}
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return failure{kind: failTimeout}
	}
	return failure{kind: failPermanent}
}

// permanentTLS reports whether err comes from a certificate the client
// rejected or from a TLS handshake the peer refused: retrying would meet the
// same certificate or the same refusal.
func permanentTLS(err error) bool {
	var (
		verify     *tls.CertificateVerificationError
		unknownCA  x509.UnknownAuthorityError
		hostname   x509.HostnameError
		invalid    x509.CertificateInvalidError
		roots      x509.SystemRootsError
		constraint x509.ConstraintViolationError
		critical   x509.UnhandledCriticalExtension
		record     tls.RecordHeaderError
		alert      tls.AlertError
	)
	return errors.As(err, &verify) || errors.As(err, &unknownCA) ||
		errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &roots) || errors.As(err, &constraint) ||
		errors.As(err, &critical) || errors.As(err, &record) ||
		errors.As(err, &alert)
}
