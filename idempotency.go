package retryhttp

import (
	"context"
	"net/http"
)

type idempotentKey struct{}

// ContextWithIdempotent marks the request as safe to send more than once
// (an OAuth2 token request, an API whose body carries its own idempotency
// token): it is then retried like a PUT.
func ContextWithIdempotent(ctx context.Context) context.Context {
	return context.WithValue(ctx, idempotentKey{}, true)
}

// idempotent reports whether req may be sent again after the server may have
// seen it. RFC 9110 §9.2.2 makes GET, HEAD, OPTIONS, TRACE, PUT and DELETE
// idempotent. Any other method (POST, PATCH, CONNECT, extensions) is
// idempotent only when the caller says so: with an Idempotency-Key or
// X-Idempotency-Key header, the rule net/http's own transport applies to
// its internal retries (the IETF draft "The Idempotency-Key HTTP Header
// Field"; the header's presence counts, whatever its value), or with
// ContextWithIdempotent.
func idempotent(req *http.Request) bool {
	if idempotentMethod(req.Method) {
		return true
	}
	if _, ok := req.Header["Idempotency-Key"]; ok {
		return true
	}
	if _, ok := req.Header["X-Idempotency-Key"]; ok {
		return true
	}
	marked, _ := req.Context().Value(idempotentKey{}).(bool)
	return marked
}

// idempotentMethod reports whether RFC 9110 §9.2.2 makes method idempotent
// ("" is GET).
func idempotentMethod(method string) bool {
	switch method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// mayRetry reports whether a request that failed with f may be sent again as
// far as its method is concerned: an idempotent request may, and any request
// may when no connection was ever made for it, since the server then never
// saw it, or when the server said it did not process it (RFC 9110 §9.2.2:
// "...or that the original request was never applied"; RFC 9113 §8.7). A
// POST whose connection broke after it was sent is never sent again, nor one
// whose connection was made before a later dial failed.
func mayRetry(req *http.Request, f failure) bool {
	return f.unsent || f.unprocessed || idempotent(req)
}

// hasBody reports whether req carries a body that a retry must send again.
func hasBody(req *http.Request) bool {
	return req.Body != nil && req.Body != http.NoBody
}

// idempotentIndex reports whether the method numbered i by methodIndex is
// one that RFC 9110 §9.2.2 makes idempotent: GET, HEAD, PUT, DELETE,
// OPTIONS and TRACE.
func idempotentIndex(i int) bool {
	const idempotentMethods = 1<<0 | 1<<1 | 1<<3 | 1<<5 | 1<<7 | 1<<8
	return idempotentMethods&(1<<i) != 0
}

// methodIndex returns the index of req's method in methodNames.
func methodIndex(method string) int {
	switch method {
	case "", http.MethodGet:
		return 0
	case http.MethodHead:
		return 1
	case http.MethodPost:
		return 2
	case http.MethodPut:
		return 3
	case http.MethodPatch:
		return 4
	case http.MethodDelete:
		return 5
	case http.MethodConnect:
		return 6
	case http.MethodOptions:
		return 7
	case http.MethodTrace:
		return 8
	}
	return numMethods - 1
}
