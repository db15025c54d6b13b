// Package chaos is the chaos suite of retryhttp: many concurrent clients send
// requests through one retryhttp.Transport to an upstream behind an
// in-process Toxiproxy that resets, stalls, truncates, slices, throttles and
// delays connections, while the upstream answers 503 and 429 with
// Retry-After at random. The test checks on every request that the response
// belongs to it, that its body arrived byte for byte, and that a POST without
// an idempotency key never reached the upstream twice; at the end, that
// nearly every retryable request succeeded and that goroutines, file
// descriptors and memory came back down. See README.md.
//
// It is a module of its own so that the library's go.mod does not depend on
// Toxiproxy. The package holds only this comment; the suite is chaos_test.go.
package chaos
