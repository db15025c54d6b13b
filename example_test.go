package retryhttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/retryhttp/retryhttp"
)

// flaky starts a server that answers 503 to the first failures requests.
func flaky(failures int32) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= failures {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "hello")
	}))
	return srv, &n
}

// A Transport drops into an http.Client in one line.
func Example() {
	srv, attempts := flaky(2)
	defer srv.Close()

	client := &http.Client{Transport: retryhttp.New(nil)}

	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, string(body), "after", attempts.Load(), "attempts")
	// Output: 200 OK hello after 3 attempts
}

// When the attempts run out, the caller gets the last response as it came,
// exactly as without retries.
func Example_givingUp() {
	srv, attempts := flaky(10)
	defer srv.Close()

	client := &http.Client{Transport: retryhttp.New(nil, retryhttp.WithPolicy(retryhttp.Policy{
		MaxAttempts: 3,
		BaseDelay:   time.Millisecond,
	}))}

	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%s %q after %d attempts\n", resp.Status, body, attempts.Load())
	// Output: 503 Service Unavailable "try again\n" after 3 attempts
}

// SDK authors wrap their own transport, and choose per call with the
// request's context.
func ExampleNew_sdk() {
	srv, attempts := flaky(1)
	defer srv.Close()

	base := &http.Transport{MaxIdleConnsPerHost: 16}
	client := &http.Client{Transport: retryhttp.New(base)}

	// This call must not be repeated by the transport: the SDK retries it
	// at a higher level.
	ctx := retryhttp.ContextWithoutRetries(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, "after", attempts.Load(), "attempt")
	// Output: 503 after 1 attempt
}

// A POST is sent again only when it carries an Idempotency-Key, so that the
// server can recognize the repeat.
func ExampleTransport_idempotencyKey() {
	srv, attempts := flaky(1)
	defer srv.Close()
	client := &http.Client{Transport: retryhttp.New(nil)}

	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"amount": 10}`))
	resp, _ := client.Do(req)
	resp.Body.Close()
	fmt.Println("without key:", resp.StatusCode, "after", attempts.Load(), "attempt")

	attempts.Store(0)
	req, _ = http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"amount": 10}`))
	req.Header.Set("Idempotency-Key", "8e03978e-40d5-43e8-bc93-6894a57f9324")
	resp, _ = client.Do(req)
	resp.Body.Close()
	fmt.Println("with key:", resp.StatusCode, "after", attempts.Load(), "attempts")
	// Output:
	// without key: 503 after 1 attempt
	// with key: 200 after 2 attempts
}

// When no attempt got a response, the error counts the attempts and
// unwraps to the cause.
func ExampleError() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now

	tr := retryhttp.New(nil, retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Millisecond}))
	_, err := (&http.Client{Transport: tr}).Get("http://" + addr)

	var rerr *retryhttp.Error
	var opErr *net.OpError
	fmt.Println(errors.As(err, &rerr), rerr.Attempts)
	fmt.Println(errors.As(err, &opErr), opErr.Op)
	// Output:
	// true 3
	// true dial
}

// Policy.Delay is the backoff: here without jitter, to show its shape.
func ExamplePolicy_Delay() {
	p := retryhttp.Policy{BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second, Jitter: retryhttp.NoJitter}
	for n := range 6 {
		fmt.Print(p.Delay(n, 0, nil), " ")
	}
	fmt.Println()
	// Output: 100ms 200ms 400ms 800ms 1s 1s
}

func ExamplePolicy_Validate() {
	err := retryhttp.Policy{BaseDelay: time.Second, MaxDelay: time.Millisecond}.Validate()
	fmt.Println(err)
	// Output: retryhttp: invalid Policy.MaxDelay: 1ms is below BaseDelay 1s
}

// A hedge cuts the wait for a slow copy short. The server here holds one
// request until it is canceled and answers the others at once: the hedge,
// sent 50 ms after the first copy, wins, and the first copy is canceled.
// An observer sees both copies. Hedges are paid for from what requests
// earned in the retry budget (0.2 each by default): four requests earn 0.8
// of a hedge, too little for any of them to be hedged, and the fifth earns
// the rest as it is sent.
func ExampleWithHedging() {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 5 {
			<-r.Context().Done() // a slow server: only the cancellation ends this one
			return
		}
		_, _ = io.WriteString(w, "fast")
	}))
	defer srv.Close()

	var watching atomic.Bool
	client := &http.Client{Transport: retryhttp.New(nil,
		retryhttp.WithHedging(retryhttp.Hedging{Delay: 50 * time.Millisecond}),
		retryhttp.WithObserver(func(a retryhttp.Attempt) {
			switch {
			case !watching.Load():
			case errors.Is(a.Err, retryhttp.ErrHedgeLost):
				fmt.Printf("copy %d (hedge: %t): canceled, another copy won\n", a.Number, a.Hedge)
			case a.Err == nil:
				fmt.Printf("copy %d (hedge: %t): %s\n", a.Number, a.Hedge, a.Response.Status)
			}
		}))}

	for range 4 { // they earn 0.8 of a hedge
		resp, err := client.Get(srv.URL)
		if err != nil {
			fmt.Println(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	watching.Store(true)
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output:
	// copy 1 (hedge: false): canceled, another copy won
	// copy 2 (hedge: true): 200 OK
	// fast
}
