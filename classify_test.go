package retryhttp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestClassifyStatus(t *testing.T) {
	retryable := map[int]bool{408: true, 429: true, 500: true, 502: true, 503: true, 504: true}
	for code := 100; code < 600; code++ {
		f := classifyStatus(code)
		assert.Equal(t, retryable[code], f.retryable(), "status %d", code)
		if retryable[code] {
			assert.Equal(t, fmt.Sprint(code), f.reason())
		}
	}
}

// timeoutErr is a net.Error that timed out, as http.Transport's
// ResponseHeaderTimeout and TLS handshake timeouts are.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "timeout awaiting response headers" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassifyError(t *testing.T) {
	dial := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}
	}
	read := func(err error) error {
		return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}
	}
	tests := []struct {
		name string
		err  error
		want failKind
	}{
		{"connection refused", dial(syscall.ECONNREFUSED), failConnect},
		{"host unreachable", dial(syscall.EHOSTUNREACH), failConnect},
		{"network unreachable", dial(syscall.ENETUNREACH), failConnect},
		{"dial timeout", &net.OpError{Op: "dial", Err: timeoutErr{}}, failConnect},
		{"proxy refused", &net.OpError{Op: "proxyconnect", Err: dial(syscall.ECONNREFUSED)}, failConnect},
		{"temporary DNS failure", &net.OpError{Op: "dial", Err: &net.DNSError{Err: "server misbehaving", IsTemporary: true}}, failConnect},
		{"DNS timeout", &net.OpError{Op: "dial", Err: &net.DNSError{Err: "i/o timeout", IsTimeout: true}}, failConnect},
		{"no such host", &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", IsNotFound: true}}, failPermanent},
		{"reset by peer", read(syscall.ECONNRESET), failReset},
		{"broken pipe", &net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}, failReset},
		{"wrapped reset", fmt.Errorf("net/http: HTTP/1.x transport connection broken: %w", read(syscall.ECONNRESET)), failReset},
		{"EOF before the response", io.EOF, failReset},
		{"unexpected EOF", fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), failReset},
		{"connection closed under a body write", &net.OpError{Op: "write", Err: net.ErrClosed}, failReset},
		{"response cut in a header line", fmt.Errorf("net/http: HTTP/1.x transport connection broken: %w", textproto.ProtocolError("malformed MIME header: missing colon: \"Content\"")), failReset},
		{"header timeout", timeoutErr{}, failTimeout},
		{"read timeout", &net.OpError{Op: "read", Err: timeoutErr{}}, failTimeout},
		{"unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, failPermanent},
		{"bare unknown authority", x509.UnknownAuthorityError{}, failPermanent},
		{"wrong host name", x509.HostnameError{Host: "example.com"}, failPermanent},
		{"expired", x509.CertificateInvalidError{Reason: x509.Expired}, failPermanent},
		{"no system roots", x509.SystemRootsError{}, failPermanent},
		{"constraint violation", x509.ConstraintViolationError{}, failPermanent},
		{"critical extension", x509.UnhandledCriticalExtension{}, failPermanent},
		{"plain HTTP from a TLS port", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, failPermanent},
		{"handshake alert", &net.OpError{Op: "remote error", Err: tls.AlertError(40)}, failPermanent},
		{"certificate error over a reset", fmt.Errorf("%w: %w", &tls.CertificateVerificationError{}, syscall.ECONNRESET), failPermanent},
		{"unsupported scheme", errors.New(`unsupported protocol scheme "ftp"`), failPermanent},
		{"malformed URL", &url.Error{Op: "parse", URL: "http://[::1", Err: errors.New("missing ']' in host")}, failPermanent},
		{"canceled context", context.Canceled, failPermanent},
		{"body read failure", errTestBody, failPermanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, classifyError(tt.err).kind)
		})
	}
}

func TestFailureReasons(t *testing.T) {
	assert.Equal(t, "connect", failure{kind: failConnect}.reason())
	assert.Equal(t, "reset", failure{kind: failReset}.reason())
	assert.Equal(t, "timeout", failure{kind: failTimeout}.reason())
	assert.Equal(t, "", failure{kind: failPermanent}.reason())
}
