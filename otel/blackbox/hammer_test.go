package blackbox_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/retryhttp/retryhttp"
	retryhttpotel "github.com/retryhttp/retryhttp/otel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
)

func TestHammerEverythingTogether(t *testing.T) {
	srv := newFuncServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch x := rand.IntN(10); {
		case x < 4:
			w.WriteHeader(200)
		case x < 6:
			w.WriteHeader(503)
		case x < 7:
			select {
			case <-time.After(60 * time.Millisecond):
			case <-r.Context().Done():
			}
			w.WriteHeader(200)
		case x < 8:
			if hj, ok := w.(http.Hijacker); ok {
				c, _, _ := hj.Hijack()
				_ = c.Close()
			}
		case x < 9:
			w.WriteHeader(404)
		default:
			w.Header().Set("Retry-After-Ms", "5")
			w.WriteHeader(503)
		}
	})
	tr := newTracing(t)
	reg, m := promAndMeter(t)
	ev := &events{}
	o := &observer{}
	rt := retryhttp.New(retryhttpotel.NewBase(nil, otelOpts(tr)...),
		retryhttp.WithPolicy(retryhttp.Policy{MaxAttempts: 4, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}),
		retryhttp.WithHedging(retryhttp.Hedging{Delay: 20 * time.Millisecond}),
		retryhttp.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		mustMetrics(t, m), retryhttpotel.WithEvents(), retryhttp.WithMetrics(promMetrics(t, reg)),
		retryhttp.WithRecorder(ev.record), retryhttp.WithObserver(o.observe))
	defer rt.CloseIdleConnections()

	const workers, each = 8, 40
	var wg sync.WaitGroup
	callers := make(chan trace.Span, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(20+rand.IntN(300))*time.Millisecond)
				ctx, span := tr.caller(ctx)
				var req *http.Request
				var err error
				switch rand.IntN(3) {
				case 0:
					req, err = http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
				case 1:
					req, err = http.NewRequestWithContext(ctx, http.MethodPut, srv.URL, strings.NewReader("put body"))
				default:
					req, err = http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, io.NopCloser(strings.NewReader("post body")))
					req.Header.Set("Idempotency-Key", fmt.Sprint(i))
				}
				if err != nil {
					panic(err)
				}
				resp, err := rt.RoundTrip(req)
				if (resp == nil) == (err == nil) {
					panic(fmt.Sprintf("resp %v err %v", resp, err))
				}
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
				cancel()
				span.End()
				callers <- span
			}
		}()
	}
	wg.Wait()
	close(callers)
	tr.waitAllEnded(t)
	requireSeriesAgree(t, reg, m)

	// Per caller: attempt spans' resend counts unique, retry events on the
	// span equal the recorder's retries for that request.
	bySpan := map[trace.SpanID][]int64{}
	for _, s := range tr.clientSpans() {
		c := int64(-1)
		if v, ok := attr(s, resendKey); ok {
			c = v.AsInt64()
		}
		bySpan[s.Parent().SpanID()] = append(bySpan[s.Parent().SpanID()], c)
	}
	retriesBySpan := map[trace.SpanID]int{}
	attemptsBySpan := map[trace.SpanID]int{}
	giveUps := map[trace.SpanID]string{}
	for _, e := range ev.get() {
		id := trace.SpanContextFromContext(e.Context).SpanID()
		switch e.Kind {
		case retryhttp.EventRetry:
			retriesBySpan[id]++
		case retryhttp.EventAttempt:
			attemptsBySpan[id]++
		case retryhttp.EventRequest:
			giveUps[id] = e.Reason
		}
	}
	var n, dupes int
	for c := range callers {
		id := c.SpanContext().SpanID()
		n++
		seen := map[int64]bool{}
		for _, x := range bySpan[id] {
			if seen[x] {
				dupes++
				t.Errorf("caller %s: resend counts %v", id, bySpan[id])
				break
			}
			seen[x] = true
		}
		assert.Equal(t, attemptsBySpan[id], len(bySpan[id]), "caller %s: one span per EventAttempt", id)
	}
	require.Equal(t, workers*each, n)
	for _, s := range tr.sr.Ended() {
		if s.Name() != "caller" {
			continue
		}
		id := s.SpanContext().SpanID()
		assert.Equal(t, retriesBySpan[id], len(eventsNamed(s, retryhttpotel.EventRetry)), "caller %s retry events", id)
		g := eventsNamed(s, retryhttpotel.EventGiveUp)
		if giveUps[id] == "" {
			assert.Empty(t, g)
		} else if assert.Len(t, g, 1) {
			r, _ := eventAttr(g[0], retryhttpotel.ReasonKey)
			assert.Equal(t, giveUps[id], r.AsString())
		}
	}
	t.Logf("%d requests, %d attempts, %d retries, %d hedges", n, len(ev.kind(retryhttp.EventAttempt)), len(ev.kind(retryhttp.EventRetry)), len(ev.kind(retryhttp.EventHedge)))
}
