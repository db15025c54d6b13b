// Package e2e is the end-to-end test of the otel module: the spans and
// metrics of a retried request, exported over OTLP to a real
// OpenTelemetry Collector on 127.0.0.1 and read back from its file
// exporter. It also draws the trace as an SVG for the README. Run it with
// otel/e2e.sh, which builds the Collector (cached) and points the test at
// it; without RETRYHTTP_OTELCOL the test is skipped.
package e2e
