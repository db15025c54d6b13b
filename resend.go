package retryhttp

// net/http resends some requests on its own, inside one call of its
// RoundTrip, where no RoundTripper above it can see: an idempotent HTTP/1
// request whose reused connection the server closed or reset (the request
// may have been processed; net/http reasons that it is safe to send twice),
// and over HTTP/2 a request the server refused (REFUSED_STREAM) or a
// connection going away. Each such resend reaches the server as a request of
// its own, and gRPC counts the same thing as "transparent retries", apart
// from the retries its policy makes.
//
// A Transport that counts (with Metrics or recorders) counts them too, so
// that attempts plus transparent retries is what the server received: each
// attempt carries an httptrace hook, and every connection assigned to the
// attempt after its first carried the request again. The hook costs each
// attempt a context and a copy of its request (2 allocations); a Transport
// without Metrics or recorders does not pay it. A base that is not
// net/http's, or that reports no connections, shows none.

// countResends counts the resends of attempt n of a request: one for each
// connection its watch saw assigned to it after the first.
func (t *Transport) countResends(c *call, n, conns int) {
	for range conns - 1 {
		t.count(c.ctx, event{kind: EventTransparentRetry, method: c.method, attempt: n})
	}
}
