package retryhttp

import (
	"reflect"
	"strings"
)

// http2StreamError receives net/http's HTTP/2 stream errors through
// errors.As: its unexported type converts itself into any struct with
// these fields, as golang.org/x/net/http2.StreamError does (net/http's
// h2_error.go), so no error text is read.
type http2StreamError struct {
	StreamID uint32
	Code     uint32
	Cause    error
}

func (e http2StreamError) Error() string { return "http2 stream error" }

// HTTP/2 error codes (RFC 9113 §7) that end a stream the way a reset ends
// an HTTP/1 connection.
const (
	http2NoError       = 0x0
	http2InternalError = 0x2
	http2Cancel        = 0x8
)

// classifyStreamError sorts a stream reset. NO_ERROR, INTERNAL_ERROR and
// CANCEL are what a server sends when it abandons a stream (a handler that
// panicked or aborted, a proxy that lost its upstream): a reset, retried
// like one over HTTP/1, for idempotent requests only. A REFUSED_STREAM or a
// PROTOCOL_ERROR from the peer reaches the caller as this typed error only
// after net/http's own HTTP/2 client retried it (up to 7 times, over about
// a minute), so retrying again would multiply its retries; they and every
// other code (a protocol or flow-control error, a request that must use
// HTTP/1.1) are final. A refused stream that net/http could not retry
// comes back as text instead: see unprocessedHTTP2.
func classifyStreamError(e http2StreamError) failure {
	switch e.Code {
	case http2NoError, http2InternalError, http2Cancel:
		return failure{kind: failReset}
	}
	return failure{kind: failPermanent}
}

// isHTTP2GoAway reports whether err is an HTTP/2 GoAwayError: the server
// sent GOAWAY saying it would still handle the stream, then closed the
// connection before answering (a server killed during its graceful
// shutdown). It is what HTTP/1 reports as EOF before the response: a reset,
// for idempotent requests only, since the server may have processed it.
// The error is net/http's unexported http2GoAwayError (or x/net's
// GoAwayError), which has no As method as its StreamError has, so it is
// recognized by its type's identity: package and name, never its text.
func isHTTP2GoAway(err error) bool {
	for _, e := range errorTree(err) {
		if t := reflect.TypeOf(e); t != nil && t.Kind() == reflect.Struct {
			switch {
			case t.PkgPath() == "net/http" && t.Name() == "http2GoAwayError",
				t.PkgPath() == "golang.org/x/net/http2" && t.Name() == "GoAwayError":
				return true
			}
		}
	}
	return false
}

// errorTree returns err and every error it wraps, depth first, as errors.Is
// walks them.
func errorTree(err error) []error {
	var all []error
	var walk func(error)
	walk = func(e error) {
		for e != nil && len(all) < 64 { // a bound against cycles
			all = append(all, e)
			switch u := e.(type) {
			case interface{ Unwrap() error }:
				e = u.Unwrap()
			case interface{ Unwrap() []error }:
				for _, c := range u.Unwrap() {
					walk(c)
				}
				return
			default:
				return
			}
		}
	}
	walk(err)
	return all
}

// The errors of net/http's HTTP/2 client (h2_bundle.go) for a request the
// server did not process, which net/http would resend but cannot: the body
// was written and the request has no GetBody (retryhttp gives none to a
// request that is not idempotent, because net/http would also resend it
// after a PROTOCOL_ERROR reset, which the server may have processed).
// http2shouldRetryRequest flattens the cause into the text with %v, so its
// type is lost; and a GOAWAY on a connection's first stream with an error
// code is returned as text too.
const (
	h2CannotRetry       = "http2: Transport: cannot retry err ["
	h2CannotRetryEnd    = "] after Request.Body was written; define Request.GetBody to avoid this error"
	h2GracefulGoAway    = "http2: Transport received Server's graceful shutdown GOAWAY"
	h2GoAwayFirstStream = "http2: Transport received GOAWAY from server ErrCode:"
	h2StreamErrorID     = "stream error: stream ID "
	h2Refused           = "; REFUSED_STREAM"
	h2FromPeer          = "; received from peer"
)

// unprocessedHTTP2 reports whether err is net/http's word that the server
// did not process the request (RFC 9113 §8.7): a stream it refused with
// REFUSED_STREAM, or one above the last stream ID of its GOAWAY, which
// net/http could not resend. Any request, a POST included, may then be sent
// again.
//
// This is the one place where the Transport reads an error's text, because
// net/http leaves nothing else (see h2CannotRetry). Only the whole text of
// an error, exactly as net/http writes it, counts: a server cannot put
// words of its own into it, and a PROTOCOL_ERROR or any other reset, which
// the server may have processed, never matches. Tests pin the text against
// the real net/http, so that a Go release that changes it fails them
// rather than silently stopping these retries.
func unprocessedHTTP2(err error) bool {
	for _, e := range errorTree(err) {
		s := e.Error()
		if strings.HasPrefix(s, h2GoAwayFirstStream) {
			return isErrCodeName(s[len(h2GoAwayFirstStream):])
		}
		if !strings.HasPrefix(s, h2CannotRetry) || !strings.HasSuffix(s, h2CannotRetryEnd) {
			continue
		}
		cause := s[len(h2CannotRetry) : len(s)-len(h2CannotRetryEnd)]
		if cause == h2GracefulGoAway {
			return true
		}
		cause, ok := strings.CutPrefix(cause, h2StreamErrorID)
		if !ok {
			return false
		}
		i := 0
		for i < len(cause) && '0' <= cause[i] && cause[i] <= '9' {
			i++
		}
		rest := cause[i:]
		return i > 0 && (rest == h2Refused || rest == h2Refused+h2FromPeer)
	}
	return false
}

// isErrCodeName reports whether s is how net/http writes an HTTP/2 error
// code: its name in capitals (ENHANCE_YOUR_CALM), or "unknown error code
// 0x..." for one it does not know.
func isErrCodeName(s string) bool {
	if hex, ok := strings.CutPrefix(s, "unknown error code 0x"); ok {
		return hex != "" && strings.Trim(hex, "0123456789abcdef") == ""
	}
	return s != "" && strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") == ""
}
