package retryhttp

import (
	"net/http"
	"slices"
	"testing"
)

// FuzzClassify checks the retry decision's pure parts for any method,
// header and status: no panic, only the six retryable statuses retried,
// and a request that is not idempotent retried only when its connection
// was never made.
func FuzzClassify(f *testing.F) {
	f.Add("GET", "", "", 503)
	f.Add("POST", "Idempotency-Key", "k", 500)
	f.Add("POST", "X-Idempotency-Key", "", 429)
	f.Add("PATCH", "", "", 200)
	f.Add("", "Content-Type", "text/plain", 504)
	f.Add("get", "idempotency-key", "x", 408)
	f.Add("PROPFIND", "", "", -1)
	f.Add("DELETE", "", "", 1000)
	f.Fuzz(func(t *testing.T, method, header, value string, code int) {
		req := &http.Request{Method: method, Header: http.Header{}}
		if header != "" {
			req.Header[header] = []string{value}
		}
		retryableStatuses := []int{408, 429, 500, 502, 503, 504}
		st := classifyStatus(code)
		if st.retryable() != slices.Contains(retryableStatuses, code) {
			t.Fatalf("classifyStatus(%d).retryable() = %v", code, st.retryable())
		}
		if st.retryable() && st.reason() == "" {
			t.Fatalf("status %d retryable without a reason", code)
		}
		safe := slices.Contains([]string{"", "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}, method) ||
			header == "Idempotency-Key" || header == "X-Idempotency-Key"
		if idempotent(req) != safe {
			t.Fatalf("idempotent(%q with header %q) = %v", method, header, idempotent(req))
		}
		for _, f := range []failure{st, {kind: failReset}, {kind: failTimeout}} {
			if f.retryable() && mayRetry(req, f) != safe {
				t.Fatalf("mayRetry(%q, %+v) = %v, want %v", method, f, mayRetry(req, f), safe)
			}
		}
		if !mayRetry(req, failure{kind: failConnect, unsent: true}) {
			t.Fatalf("a request whose connection was never made may always be retried")
		}
		_ = methodIndex(method) // any method maps to a label without panicking
		if i := methodIndex(method); i < 0 || i >= numMethods {
			t.Fatalf("methodIndex(%q) = %d", method, i)
		}
	})
}
