// Package retryhttp is a drop-in http.RoundTripper that retries what is safe
// to retry, waits with exponential backoff and jitter, and honors
// Retry-After.
//
// Systems fail all the time, so clients retry; but a retry done carelessly
// sends a POST twice, corrupts an upload, sleeps past the caller's deadline,
// or brings a crowd of clients back to a struggling server in lockstep. This
// package retries the way Amazon's Builders' Library and the big cloud SDKs
// do, behind the plain http.RoundTripper interface:
//
//	client := &http.Client{Transport: retryhttp.New(nil)}
//
// What is retried: status 408, 429, 500, 502, 503 and 504, refused or
// unreachable connections, connections reset or closed before the response
// (or cut in the middle of its header), HTTP/2 streams the server reset, and
// attempts that timed out, up to Policy.MaxAttempts (3) attempts in all.
// Only idempotent requests (GET, HEAD, OPTIONS, TRACE, PUT, DELETE, or any
// request with an Idempotency-Key or X-Idempotency-Key header) are sent again
// after the server may have seen them; any request is sent again when its
// connection could not be made. What is never retried: any other status,
// TLS certificate errors, malformed URLs, unsupported schemes, and anything
// after the caller's context ended.
//
// Bodies are sent again byte for byte or not at all: through
// Request.GetBody when the request has one, or else from a bounded buffer
// (DefaultReplayBuffer, 64 KiB) filled while the body streams to the server.
// A body is never read into memory up front, and the caller's body is
// closed exactly once. A request that is not idempotent and has no GetBody
// is handed to the base transport without one, as bare net/http has none:
// net/http's HTTP/2 client would resend it through GetBody after a
// PROTOCOL_ERROR reset, when the server may have processed it.
//
// Waits follow the Policy's exponential backoff and Jitter (see
// Policy.Delay), or what the server asks for plus a little jitter:
// Retry-After, retry-after-ms, x-amz-retry-after, or the reset of a spent
// rate limit (the IETF draft's RateLimit field, GitHub's X-RateLimit-*,
// OpenAI's and Anthropic's quotas of requests and tokens). A host whose
// quota is spent is held: its other requests wait until the quota refills,
// and those that cannot wait that long are not sent (ErrThrottled). For a
// server that throttles with a bare 429 or 503, WithAdaptiveRate gives
// each host a send rate that slows down when it throttles. A wait
// that would end after the request context's deadline is not started: the
// last response or error is returned at once. Canceling the context during
// a wait returns promptly with an error that errors.Is reports as
// context.Canceled.
//
// When it gives up, a Transport returns the last response as it came, with a
// nil error, so an http.Client sees the final 503 exactly as without
// retries. When the last attempt got no response, it returns an *Error that
// counts the attempts and unwraps to the cause.
//
// Every Transport draws its retries from a retry Budget (on by default):
// each request earns 0.2 retries for 10 seconds, with a floor of two
// retries refilled at one every two minutes for clients with little
// traffic, so that during an outage retries add about 20% to the traffic
// instead of multiplying it, for one client and for a fleet of them. WithBudget shares a Budget between
// Transports, or turns it off.
//
// The zero Transport is ready to use, like New(nil).
//
// SDK authors add their API's rules with a Classifier (which may read an
// error code from a body with PeekBody), bound each attempt with
// Policy.AttemptTimeout, mark requests such as OAuth2 token POSTs as safe
// to repeat with ContextWithIdempotent, change each retry's request (a
// refreshed token, another host) with WithBeforeRetry, and see every
// attempt with WithObserver; AttemptFromContext tells a base RoundTripper
// which attempt it is sending. When the Transport gives up on a failed
// attempt, the last Attempt's Reason, one log record and the *Error say
// why.
//
// WithHedging cuts the latency tail: a slow idempotent request whose body
// can be sent twice at once gets a second copy after a fixed delay or the
// 95th percentile of its host's recent latencies, the first final answer
// wins, and the other copies are canceled. Hedges are paid for from the
// retry budget like retries.
//
// WithMetrics counts requests, attempts, retries, waits and budget refusals
// in Prometheus series (see Metrics); WithLogger writes one record per
// retry. Per request, ContextWithPolicy and ContextWithoutRetries override
// the Transport's Policy.
package retryhttp
