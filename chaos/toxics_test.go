package chaos

import (
	"bytes"
	"encoding/json"
	"net"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// toxic is one Toxiproxy toxic. Toxiproxy draws each toxic's toxicity once
// per connection and direction (ToxicStub.Run), so a toxicity is the share
// of new connections that get the toxic, not of attempts: an attempt on a
// reused keep-alive connection meets the toxics its connection drew when it
// was opened, and the fault toxics below all end the connection on its first
// attempt, so a reused connection is a healthy one.
type toxic struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Stream     string         `json:"stream"`
	Toxicity   float32        `json:"toxicity"`
	Attributes map[string]any `json:"attributes"`
	fault      bool           // makes the attempt fail (the others only slow or split data)
}

// toxics are added in this order; within a direction, data passes them in
// this order. The fault toxics come first, right after Toxiproxy's hidden
// noop toxic: when one of them ends a connection it stops reading its input,
// and whatever runs before it in the pipeline stays blocked for good (see
// countGoroutines); the fewer toxics before it, the less is left behind.
//
// The fault toxics are chosen so that every failure they cause happens before
// net/http hands a response to retryhttp, and so could be retried:
//   - reset_peer resets both connections on the first bytes of its
//     direction: upstream, before the request reaches the server; downstream,
//     after the server handled it (a POST without a key must then not be
//     sent again).
//   - timeout with timeout 0 drops everything and closes only when its input
//     does: only the base transport's ResponseHeaderTimeout ends such an
//     attempt. With a timeout > 0 it closes the connection once no data came
//     for that many ms.
//   - limit_data closes the connection after 24 bytes of the response, in
//     its header: for a 200, in the name of the first header line
//     ("HTTP/1.1 200 OK\r\nContent"); for a 503 or a 429, in the status
//     line. A limit past the header would cut a body that retryhttp has
//     already handed to the caller, which no RoundTripper can retry.
var toxics = []toxic{
	{Name: "reset_up", Type: "reset_peer", Stream: "upstream", Toxicity: 0.03, fault: true,
		Attributes: map[string]any{"timeout": 0}},
	{Name: "timeout_up", Type: "timeout", Stream: "upstream", Toxicity: 0.02, fault: true,
		Attributes: map[string]any{"timeout": 100}},
	{Name: "bandwidth_up", Type: "bandwidth", Stream: "upstream", Toxicity: 0.2,
		Attributes: map[string]any{"rate": 4096}}, // KB/s: 256 KiB in ~60 ms
	{Name: "slicer_up", Type: "slicer", Stream: "upstream", Toxicity: 0.2,
		Attributes: map[string]any{"average_size": 1024, "size_variation": 512, "delay": 20}},

	{Name: "reset_down", Type: "reset_peer", Stream: "downstream", Toxicity: 0.035, fault: true,
		Attributes: map[string]any{"timeout": 0}},
	{Name: "timeout_down", Type: "timeout", Stream: "downstream", Toxicity: 0.015, fault: true,
		Attributes: map[string]any{"timeout": 0}},
	{Name: "limit_down", Type: "limit_data", Stream: "downstream", Toxicity: 0.05, fault: true,
		Attributes: map[string]any{"bytes": 24}},
	{Name: "latency_down", Type: "latency", Stream: "downstream", Toxicity: 0.5,
		Attributes: map[string]any{"latency": 3, "jitter": 3}}, // 0 to 6 ms
	{Name: "slicer_down", Type: "slicer", Stream: "downstream", Toxicity: 0.25,
		Attributes: map[string]any{"average_size": 256, "size_variation": 128, "delay": 50}},
}

// connFaultRate is the share of new connections that draw at least one fault
// toxic.
func connFaultRate() float64 {
	healthy := 1.0
	for _, tx := range toxics {
		if tx.fault {
			healthy *= 1 - float64(tx.Toxicity)
		}
	}
	return 1 - healthy
}

// startProxy runs Toxiproxy in this process: a proxy on 127.0.0.1 to
// upstream, with the toxics added. No API server is started. stop ends the
// proxy and closes every connection it holds.
func startProxy(t *testing.T, upstream string, toxics []toxic) (addr string, stop func()) {
	t.Helper()
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	proxy := toxiproxy.NewProxy(api, "chaos", "127.0.0.1:0", upstream)
	require.NoError(t, api.Collection.Add(proxy, true))
	for _, tx := range toxics {
		b, err := json.Marshal(tx)
		require.NoError(t, err)
		_, err = proxy.Toxics.AddToxicJson(bytes.NewReader(b))
		require.NoError(t, err, "adding toxic %s", tx.Name)
	}
	require.Len(t, proxy.Toxics.GetToxicArray(), len(toxics))
	_, _, err := net.SplitHostPort(proxy.Listen)
	require.NoError(t, err)
	return proxy.Listen, func() { require.NoError(t, api.Collection.Clear()) }
}
