package retryhttpotel_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/retryhttp/retryhttp"
	retryhttpotel "github.com/retryhttp/retryhttp/otel"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace/noop"
)

// What NewBase costs over plain otelhttp, with a no-op tracer provider (the
// tracing is off: what is left is the instrumentation itself), on a base
// that answers at no cost and over loopback:
//
//	go test -run '^$' -bench . -count 10 | tee new.txt && benchstat -col /rt new.txt
type staticRT struct{}

func (staticRT) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}, nil
}

func rows(base http.RoundTripper) []struct {
	name string
	rt   http.RoundTripper
} {
	tp := otelhttp.WithTracerProvider(noop.NewTracerProvider())
	return []struct {
		name string
		rt   http.RoundTripper
	}{
		{"rt=otelhttp", otelhttp.NewTransport(base, tp)},
		{"rt=NewBase", retryhttpotel.NewBase(base, tp)},
		{"rt=retryhttp+NewBase", retryhttp.New(retryhttpotel.NewBase(base, tp), retryhttpotel.WithEvents())},
	}
}

func BenchmarkInMemoryGET(b *testing.B) {
	req, _ := http.NewRequest(http.MethodGet, "http://example.invalid/", nil)
	for _, row := range rows(staticRT{}) {
		b.Run(row.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := row.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
	}
}

func BenchmarkLoopbackGET(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "hello, world")
	}))
	b.Cleanup(srv.Close)
	base := cleanhttp.DefaultPooledTransport()
	b.Cleanup(base.CloseIdleConnections)
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	for _, row := range rows(base) {
		b.Run(row.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := row.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
