package retryhttpotel_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/retryhttp/retryhttp"
	retryhttpotel "github.com/retryhttp/retryhttp/otel"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// Each attempt is a CLIENT span under the caller's, the retries with their
// resend count; the caller's span tells why each retry happened.
func ExampleNewBase() {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))

	client := &http.Client{Transport: retryhttp.New(
		retryhttpotel.NewBase(nil, otelhttp.WithTracerProvider(tp)),
		retryhttpotel.WithEvents(),
		retryhttp.WithPolicy(retryhttp.Policy{BaseDelay: time.Millisecond}))}

	ctx, span := tp.Tracer("app").Start(context.Background(), "checkout")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	span.End()

	for _, s := range spans.Ended() {
		if s.SpanKind() != trace.SpanKindClient {
			continue
		}
		line := s.Name()
		for _, a := range s.Attributes() {
			switch a.Key {
			case "http.response.status_code", "http.request.resend_count":
				line += fmt.Sprintf(" %s=%s", a.Key, a.Value.Emit())
			}
		}
		fmt.Println(line)
	}
	for _, e := range span.(sdktrace.ReadOnlySpan).Events() {
		for _, a := range e.Attributes {
			if a.Key == retryhttpotel.ReasonKey {
				fmt.Println(e.Name, a.Value.Emit())
			}
		}
	}
	// Output:
	// HTTP GET http.response.status_code=503
	// HTTP GET http.request.resend_count=1 http.response.status_code=503
	// HTTP GET http.request.resend_count=2 http.response.status_code=200
	// retryhttp.retry 503
	// retryhttp.retry 503
}
