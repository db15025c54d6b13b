// Package bench compares the cost of retryhttp with the libraries Go users
// would pick instead, each configured as its users would: 3 retries,
// exponential backoff, over the same base transport. It is a module of its
// own so that the library's go.mod does not inherit the peers.
//
// Run everything, with benchstat, into a markdown table: ./run.sh
package bench

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/PuerkitoBio/rehttp"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/retryhttp/retryhttp"
)

// Lib names one way to send requests, and wraps a base transport with it.
type Lib struct {
	Name string
	Wrap func(base http.RoundTripper, backoff time.Duration) http.RoundTripper
}

// Happy is the first backoff step for the benchmarks where every request
// succeeds at once; Retrying is the near-zero one for those that retry.
const (
	Happy    = 100 * time.Millisecond
	Retrying = time.Microsecond
)

// retryhttpOptions configures retryhttp like the peers: 3 retries (4
// attempts), exponential backoff from backoff. With the near-zero backoff of
// the retry benchmark, where two attempts in three fail, the default retry
// budget would (rightly) refuse most retries; the peers have no budget, so
// it is off there to compare like with like. On the happy path it stays on,
// as users run it.
func retryhttpOptions(backoff time.Duration) []retryhttp.Option {
	opts := []retryhttp.Option{retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 4, BaseDelay: backoff, MaxDelay: 100 * backoff})}
	if backoff < Happy {
		opts = append(opts, retryhttp.WithBudget(nil))
	}
	return opts
}

// Libs are the rows of every benchmark, bare first.
var Libs = []Lib{
	{"bare", func(base http.RoundTripper, _ time.Duration) http.RoundTripper { return base }},
	{"retryhttp", func(base http.RoundTripper, backoff time.Duration) http.RoundTripper {
		return retryhttp.New(base, retryhttpOptions(backoff)...)
	}},
	{"retryhttp+metrics", func(base http.RoundTripper, backoff time.Duration) http.RoundTripper {
		m, err := retryhttp.NewMetrics(prometheus.NewRegistry())
		if err != nil {
			panic(err)
		}
		return retryhttp.New(base, append(retryhttpOptions(backoff), retryhttp.WithMetrics(m))...)
	}},
	{"retryhttp+seam", func(base http.RoundTripper, backoff time.Duration) http.RoundTripper {
		// What an SDK sets: an observer of every attempt and a Classifier
		// for its API's rules, which here leaves every decision to the
		// Transport's.
		var attempts int64
		return retryhttp.New(base, append(retryhttpOptions(backoff),
			retryhttp.WithObserver(func(a retryhttp.Attempt) { atomic.AddInt64(&attempts, int64(a.Number)) }),
			retryhttp.WithClassifier(func(req *http.Request, resp *http.Response, err error) retryhttp.Decision {
				if resp != nil && resp.StatusCode == http.StatusConflict {
					return retryhttp.Retry
				}
				return retryhttp.UseDefault
			}))...)
	}},
	{"retryhttp+hedging", func(base http.RoundTripper, backoff time.Duration) http.RoundTripper {
		// Hedging on, with a delay no request here reaches: what every
		// request pays when no hedge is sent.
		return retryhttp.New(base, append(retryhttpOptions(backoff), retryhttp.WithHedging(retryhttp.Hedging{Delay: time.Minute}))...)
	}},
	{"retryhttp+adaptive", func(base http.RoundTripper, backoff time.Duration) http.RoundTripper {
		// The adaptive rate on, with no host throttling: what every
		// request pays while it sleeps.
		return retryhttp.New(base, append(retryhttpOptions(backoff), retryhttp.WithAdaptiveRate(retryhttp.AdaptiveRate{}))...)
	}},
	{"retryablehttp", func(base http.RoundTripper, backoff time.Duration) http.RoundTripper {
		c := retryablehttp.NewClient()
		c.HTTPClient = &http.Client{Transport: base}
		c.RetryMax = 3
		c.RetryWaitMin = backoff
		c.RetryWaitMax = 100 * backoff
		c.Logger = nil
		return &retryablehttp.RoundTripper{Client: c}
	}},
	{"failsafehttp", func(base http.RoundTripper, backoff time.Duration) http.RoundTripper {
		policy := failsafehttp.NewRetryPolicyBuilder().
			WithMaxRetries(3).
			WithBackoff(backoff, 100*backoff).
			Build()
		return failsafehttp.NewRoundTripper(base, policy)
	}},
	{"rehttp", func(base http.RoundTripper, backoff time.Duration) http.RoundTripper {
		return rehttp.NewTransport(base,
			rehttp.RetryAll(rehttp.RetryMaxRetries(3), rehttp.RetryAny(
				rehttp.RetryTemporaryErr(),
				rehttp.RetryStatuses(http.StatusTooManyRequests, http.StatusInternalServerError,
					http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout))),
			rehttp.ExpJitterDelay(backoff, 100*backoff))
	}},
	{"promhttp-counter", func(base http.RoundTripper, _ time.Duration) http.RoundTripper {
		counter := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "client_requests_total", Help: "Requests."}, []string{"code", "method"})
		prometheus.NewRegistry().MustRegister(counter)
		return promhttp.InstrumentRoundTripperCounter(counter, base)
	}},
}

// Find returns the Lib named name.
func Find(name string) (Lib, bool) {
	for _, l := range Libs {
		if l.Name == name {
			return l, true
		}
	}
	return Lib{}, false
}
