package retryhttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/retryhttp/retryhttp"
)

// An AWS-style Classifier: S3 answers some transient failures with a status
// the Transport does not retry (400 RequestTimeout), or even with 200 and an
// error document (CopyObject's InternalError). The Classifier reads the
// error code from the first bytes of the body with PeekBody, which leaves
// the body whole for the SDK.
func ExampleClassifier_aws() {
	var n atomic.Int32
	s3 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"Code":"RequestTimeout"}`)
		case 2:
			_, _ = io.WriteString(w, `{"Code":"InternalError"}`) // a 200
		default:
			_, _ = io.WriteString(w, `{"CopyObjectResult":{"ETag":"abc"}}`)
		}
	}))
	defer s3.Close()

	transient := map[string]bool{"RequestTimeout": true, "InternalError": true, "SlowDown": true}
	awsRules := func(req *http.Request, resp *http.Response, err error) retryhttp.Decision {
		if resp == nil {
			return retryhttp.UseDefault
		}
		head, _ := retryhttp.PeekBody(resp, 1024)
		var doc struct{ Code string }
		if json.Unmarshal(head, &doc) == nil && transient[doc.Code] {
			return retryhttp.Retry
		}
		return retryhttp.UseDefault
	}
	client := &http.Client{Transport: retryhttp.New(nil,
		retryhttp.WithClassifier(awsRules),
		retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Millisecond}),
		retryhttp.WithObserver(func(a retryhttp.Attempt) {
			fmt.Printf("attempt %d: %d, retry %v (%s)\n", a.Number, a.Response.StatusCode, a.Retry, a.Reason)
		}))}

	resp, err := client.Do(mustNewRequest(http.MethodPut, s3.URL+"/bucket/copy", nil))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output:
	// attempt 1: 400, retry true (400)
	// attempt 2: 200, retry true (200)
	// attempt 3: 200, retry false ()
	// {"CopyObjectResult":{"ETag":"abc"}}
}

// GitHub answers a secondary rate limit with 403 and Retry-After. The
// Transport never retries a 403 on its own; a Classifier opts this one in,
// and the wait honors the Retry-After (capped by MaxRetryAfter).
func ExampleClassifier_githubSecondaryRateLimit() {
	var n atomic.Int32
	github := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "You have exceeded a secondary rate limit", http.StatusForbidden)
			return
		}
		_, _ = io.WriteString(w, `[{"name":"retryhttp"}]`)
	}))
	defer github.Close()

	secondaryLimit := func(req *http.Request, resp *http.Response, err error) retryhttp.Decision {
		if resp != nil && resp.StatusCode == http.StatusForbidden && resp.Header.Get("Retry-After") != "" {
			return retryhttp.Retry
		}
		return retryhttp.UseDefault
	}
	client := &http.Client{Transport: retryhttp.New(nil, retryhttp.WithClassifier(secondaryLimit))}
	resp, err := client.Get(github.URL + "/user/repos")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, "after", n.Load(), "attempts")
	// Output: 200 after 2 attempts
}

// A token that expired between the SDK's check and the request: the API
// answers 401. A Classifier makes that retryable once, and WithBeforeRetry
// puts a fresh token on the retry. The caller's request keeps its old
// header: the Transport hands the function a copy.
func ExampleWithBeforeRetry_tokenRefresh() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer token-2" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, "hello")
	}))
	defer api.Close()

	var tokens atomic.Int32
	tokens.Store(1)
	refresh := func() string { return fmt.Sprintf("token-%d", tokens.Add(1)) }

	retryOnce401 := func(req *http.Request, resp *http.Response, err error) retryhttp.Decision {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized && retryhttp.AttemptFromContext(req.Context()) == 1 {
			return retryhttp.Retry
		}
		return retryhttp.UseDefault
	}
	client := &http.Client{Transport: retryhttp.New(nil,
		retryhttp.WithClassifier(retryOnce401),
		retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Millisecond}),
		retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
			if prev.Response != nil && prev.Response.StatusCode == http.StatusUnauthorized {
				next.Header.Set("Authorization", "Bearer "+refresh())
			}
			return nil
		}))}

	req := mustNewRequest(http.MethodGet, api.URL, nil)
	req.Header.Set("Authorization", "Bearer token-1")
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body), "| caller's header:", req.Header.Get("Authorization"))
	// Output: 200 hello | caller's header: Bearer token-1
}

// Failing over: when the primary answers 503, the retry goes to a second
// host. WithBeforeRetry changes the URL of the request about to be sent
// (and its Host, which http.NewRequest set to the primary's).
func ExampleWithBeforeRetry_failover() {
	primary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "draining", http.StatusServiceUnavailable)
	}))
	defer primary.Close()
	secondary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "served %s by the secondary", r.URL.Path)
	}))
	defer secondary.Close()
	secondaryHost := strings.TrimPrefix(secondary.URL, "http://")

	client := &http.Client{Transport: retryhttp.New(nil,
		retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Millisecond}),
		retryhttp.WithBeforeRetry(func(next *http.Request, prev retryhttp.Attempt) error {
			next.URL.Host, next.Host = secondaryHost, ""
			return nil
		}))}
	resp, err := client.Get(primary.URL + "/items/7")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output: served /items/7 by the secondary
}

// A per-attempt timeout: the first attempt hangs, is cut off after 1 s and
// retried, long before the caller's 10 s deadline. Without it the hung
// attempt would have taken the whole deadline. (The retry has that second
// too for its answer: an attempt timeout that a healthy server's answer
// can come near would cut it as well.)
func ExamplePolicy_attemptTimeout() {
	var n atomic.Int32
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			select { // hang
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()

	client := &http.Client{Transport: retryhttp.New(nil, retryhttp.WithPolicy(retryhttp.Policy{
		AttemptTimeout: time.Second,
		BaseDelay:      time.Millisecond,
	}))}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body), "after", n.Load(), "attempts")
	// Output: ok after 2 attempts
}

// An OAuth2 token request is a POST, but asking twice for a token is
// harmless: ContextWithIdempotent lets the Transport retry it like a PUT.
func ExampleContextWithIdempotent() {
	srv, attempts := flaky(1)
	defer srv.Close()
	client := &http.Client{Transport: retryhttp.New(nil)}

	ctx := retryhttp.ContextWithIdempotent(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/oauth/token",
		strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, "after", attempts.Load(), "attempts")
	// Output: 200 after 2 attempts
}

// Retries belong at one layer. An SDK that retries on its own over a
// retrying Transport multiplies the attempts: a persistent failure costs
// 3 × 3 = 9 of them. Turn one layer off: here the SDK's. (The retry budget
// is off here to show the product alone: with it, this client, whose few
// requests earn no retries, would have the two its floor holds.)
func Example_oneLayerOfRetries() {
	srv, attempts := flaky(1000)
	defer srv.Close()
	client := &http.Client{Transport: retryhttp.New(nil, retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Millisecond}), retryhttp.WithBudget(nil))}

	// sdkCall stands for an SDK operation with a retryer of its own, as the
	// AWS SDK, Azure's azcore and gax-go have.
	sdkCall := func(sdkAttempts int) {
		for range sdkAttempts {
			resp, err := client.Get(srv.URL)
			if err != nil {
				return
			}
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return
			}
		}
	}
	sdkCall(3)
	fmt.Println("SDK retryer on:", attempts.Load(), "attempts")
	attempts.Store(0)
	sdkCall(1)
	fmt.Println("SDK retryer off:", attempts.Load(), "attempts")
	// Output:
	// SDK retryer on: 9 attempts
	// SDK retryer off: 3 attempts
}

// SDKs that wrap every request body (the AWS SDK's do, for signing and
// checksums) leave the Transport no GetBody: it replays a body from a
// buffer that keeps the first 64 KiB. A larger upload hit by a 503 is then
// not retried, and the observer (and the log) says why. Raise the buffer to
// the size of the bodies worth retrying; each request then holds up to that
// much memory while its body streams.
func ExampleWithReplayBuffer() {
	upload := bytes.Repeat([]byte("x"), 1<<20) // 1 MiB, without GetBody
	put := func(opts ...retryhttp.Option) {
		srv, _ := flaky(1) // 503 once, then 200
		defer srv.Close()
		opts = append(opts, retryhttp.WithObserver(func(a retryhttp.Attempt) {
			if !a.Retry {
				fmt.Printf("attempt %d: %d %s\n", a.Number, a.Response.StatusCode, a.Reason)
			}
		}))
		client := &http.Client{Transport: retryhttp.New(nil, opts...)}
		req := mustNewRequest(http.MethodPut, srv.URL, io.NopCloser(bytes.NewReader(upload)))
		resp, err := client.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
	}
	put()
	put(retryhttp.WithReplayBuffer(2 << 20))
	// Output:
	// attempt 1: 503 body
	// attempt 2: 200
}

func mustNewRequest(method, url string, body io.Reader) *http.Request {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		panic(err)
	}
	return req
}

// A server that says its quota is spent holds its whole host: a request
// that cannot wait until the quota refills (here, its deadline is sooner)
// is not sent at all, and its error says until when.
func ExampleErrThrottled() {
	var n atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Retry-After", "3600") // GitHub's primary limit, an hour ahead
		http.Error(w, "API rate limit exceeded", http.StatusTooManyRequests)
	}))
	defer api.Close()
	client := &http.Client{Transport: retryhttp.New(nil)}

	resp, err := client.Get(api.URL + "/repos")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println("first:", resp.StatusCode, "(an hour is above MaxRetryAfter: returned at once)")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, api.URL+"/user", nil)
	_, err = client.Do(req)
	var te *retryhttp.ThrottledError
	fmt.Println("second:", errors.Is(err, retryhttp.ErrThrottled), errors.As(err, &te) && te.Until.After(time.Now().Add(59*time.Minute)))
	fmt.Println("requests that reached the server:", n.Load())
	// Output:
	// first: 429 (an hour is above MaxRetryAfter: returned at once)
	// second: true true
	// requests that reached the server: 1
}

// An SDK that sends the requests of several API keys to one host, each key
// with a quota of its own, keys the holds by the credential: one key's
// spent quota holds that key's requests, not the others'.
func ExampleWithHoldKey() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer key-a" {
			w.Header().Set("Retry-After", "3600") // key a's quota is spent for an hour
			http.Error(w, "rate limited", http.StatusTooManyRequests)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	defer api.Close()
	client := &http.Client{Transport: retryhttp.New(nil,
		retryhttp.WithHoldKey(func(req *http.Request) string { return req.Header.Get("Authorization") }))}
	get := func(key string) string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, api.URL, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Sprintf("not sent (throttled: %v)", errors.Is(err, retryhttp.ErrThrottled))
		}
		resp.Body.Close()
		return resp.Status
	}
	fmt.Println("key a:", get("key-a"))
	fmt.Println("key a again:", get("key-a"))
	fmt.Println("key b:", get("key-b"))
	// Output:
	// key a: 429 Too Many Requests
	// key a again: not sent (throttled: true)
	// key b: 200 OK
}

// DynamoDB throttles with 400 and an error document
// (ThrottlingException), not a 429: a Classifier that says Throttled has
// the request retried and the host's adaptive rate slow down, as a bare
// 429 or 503 would.
func ExampleWithAdaptiveRate() {
	var n atomic.Int32
	dynamo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException"}`)
			return
		}
		_, _ = io.WriteString(w, `{"Item":{}}`)
	}))
	defer dynamo.Close()

	throttling := func(req *http.Request, resp *http.Response, err error) retryhttp.Decision {
		if resp == nil || resp.StatusCode != http.StatusBadRequest {
			return retryhttp.UseDefault
		}
		head, _ := retryhttp.PeekBody(resp, 1024)
		if strings.Contains(string(head), "#ThrottlingException") {
			return retryhttp.Throttled
		}
		return retryhttp.UseDefault
	}
	client := &http.Client{Transport: retryhttp.New(nil,
		retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{}), // the AWS SDKs' constants
		retryhttp.WithClassifier(throttling),
		retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Millisecond}),
		retryhttp.WithObserver(func(a retryhttp.Attempt) {
			fmt.Printf("attempt %d: %d, retry %v\n", a.Number, a.Response.StatusCode, a.Retry)
		}))}

	req := mustNewRequest(http.MethodPost, dynamo.URL, strings.NewReader(`{"TableName":"t"}`))
	req = req.WithContext(retryhttp.ContextWithIdempotent(req.Context())) // GetItem is safe to repeat
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output:
	// attempt 1: 400, retry true
	// attempt 2: 200, retry false
	// {"Item":{}}
}
